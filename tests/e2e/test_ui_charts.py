"""The pipeline page's charts as Chromium draws them: every label visible, inside its chart and clear
of every other label and point, charts as wide as the page, at a readable size. No Airflow: the
charts' markup, in a page of its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ctloop.ui.chart import pipeline_charts
from tests.e2e.chart_checks import MEASURE, label_problems
from tests.unit.ui.test_chart import T0, dense_moves, history, move

VIEWPORT = {"width": 1400, "height": 900}
PAGE = """<!doctype html><html><head><meta charset="utf-8"></head>
<body style="margin:0;font-family:system-ui,sans-serif">
<main style="padding:16px 24px">{}</main></body></html>"""


@pytest.mark.parametrize(
    ("name", "decisions", "moves", "charts"),
    [
        (
            "dense",
            history(200, 40, timedelta(hours=1)),
            dense_moves(T0 + timedelta(hours=60)),
            ["history", "feature-drift", "served-quality"],
        ),
        # three runs two days apart: no comparison had labels yet, so no served-quality chart
        (
            "sparse",
            history(3, 40, timedelta(days=2)),
            [move(1, T0 - timedelta(hours=5))],
            ["history", "feature-drift"],
        ),
    ],
)
def test_every_chart_label_is_visible_and_clear_of_the_others(
    browser: Any, artifacts: Path, name: str, decisions: list[dict], moves: list, charts: list[str]
) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_content(PAGE.format(pipeline_charts(decisions, moves, threshold=0.3, metric="roc_auc")))
    svgs = page.evaluate(MEASURE)
    page.screenshot(path=artifacts / f"charts-{name}.png", full_page=True)
    page.close()

    assert [svg["cls"] for svg in svgs] == charts
    for svg in svgs:
        assert svg["width"] == pytest.approx(svg["container"], abs=1)  # the page's full width
        assert svg["width"] > 1300
        scale = svg["width"] / svg["view"]["width"]
        assert min(t["size"] for t in svg["texts"]) * scale >= 11  # 11 px or more on this screen
        assert len(svg["texts"]) > 10
        assert label_problems(svg) == []
