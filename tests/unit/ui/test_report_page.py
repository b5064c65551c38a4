"""The drift report page: ctloop's decision is the headline, the Evidently report the evidence
under it, and one line says why the report's numbers differ when it saw other rows."""

from __future__ import annotations

from ctloop.spec.models import PipelineSpec
from ctloop.ui import pages
from ctloop.ui.links import Urls
from ctloop.ui.reports import evidence_note
from tests.helpers import example_spec

HOSTILE = '<script>alert("x")</script>'
SPEC = PipelineSpec.model_validate(example_spec("churn", "data"))
URLS = Urls.of("/ctloop", mlflow="http://127.0.0.1:5000")


def _summary(*, sampled: int = 20_000, skipped: dict | None = None, why: str = "confirmed alert") -> dict:
    """A monitor summary: 50,000 rows a side, ctloop's share 0.381, Evidently's 0.348 on the sample."""
    counts = {"rows": 50_000, "sampled": sampled}
    return {
        "at": "2026-01-02T03:05:00+00:00",
        "champion_version": "3",
        "window": {"batches": ["b1", "b2"], "rows": 50_000},
        "drift": {"share": 0.381, "drifted_columns": [{"column": "tenure_months"}]},
        "quality": {"metric": "roc_auc", "value": 0.8, "champion_value": 0.82, "labeled_rows": 900},
        "decision": {"action": "retrain", "alert": True, "why": why},
        "evidently": {
            "sample": {"seed": 0, "sample_rows": 20_000, "reference": counts, "current": counts},
            "drift": {
                "drifted_columns": {"count": 8, "share": 0.348, "threshold": 0.3, "dataset_drift": True},
                "skipped": skipped or {},
            },
        },
    }


def test_the_decision_is_the_headline_above_the_report() -> None:
    html = pages.report(URLS, SPEC, "r1", _summary(why="drift share 0.38 >= 0.30; retraining"))

    decision = html.index('id="decision"')
    assert decision < html.index("Evidence: the Evidently report") < html.index('<iframe class="report"')
    headline = html[decision : html.index("</div>", decision)]
    assert '<span class="badge' in headline
    assert '<span class="badge bad">alert · retrain</span>' in headline
    assert "drift share 0.38 &gt;= 0.30; retraining" in headline
    assert "0.381 of the features" in headline
    assert "0.348" not in html[: html.index("Evidence: the Evidently report")]


def test_the_headline_shows_every_quality_rule_with_its_verdict_and_why() -> None:
    summary = _summary()
    summary["quality"]["rules"] = [
        {"metric": "roc_auc", "verdict": "ok", "value": 0.8, "reference": 0.82, "interval": [0.78, 0.82],
         "why": "0.8000 on 900 labeled rows is 0.0200 worse than the champion's holdout 0.8200"},
        {"metric": "accuracy", "verdict": "alert", "value": 0.7, "reference": 0.85, "interval": [0.67, 0.73],
         "why": f"0.7000 on 900 labeled rows is 0.1500 worse {HOSTILE}"},
    ]  # fmt: skip
    html = pages.report(URLS, SPEC, "r1", summary)

    headline = html[html.index('id="decision"') : html.index("</div>", html.index('id="decision"'))]
    assert "<dt>roc_auc</dt>" in headline
    assert '<span class="badge good">ok</span></span> 0.8000 on 900 labeled rows' in headline
    assert "<dt>accuracy</dt>" in headline
    assert (
        '<span class="badge bad">alert</span></span> 0.7000 on 900 labeled rows is 0.1500 worse' in headline
    )
    assert HOSTILE not in html
    assert "champion's holdout 0.8200</dd>" not in headline  # the one-metric line of older summaries


def test_a_summary_from_before_the_rules_keeps_its_one_metric_line() -> None:
    headline = pages.report(URLS, SPEC, "r1", _summary())
    assert "<dt>roc_auc</dt><dd>0.8000 on 900 labeled rows; champion's holdout 0.8200</dd>" in headline


def test_a_sampled_report_says_in_one_line_why_its_share_differs() -> None:
    html = pages.report(URLS, SPEC, "r1", _summary())

    note = html.split('<p class="small" id="report-note">', 1)[1].split("</p>", 1)[0]
    assert "\n" not in note
    assert note == (
        "Evidently&#39;s share 0.348 comes from a seeded sample of 20,000 of 50,000 reference and"
        " 20,000 of 50,000 current rows (monitoring.report_sample_rows 20,000); the decision&#39;s"
        " 0.381 from every row."
    )


def test_a_report_on_every_row_needs_no_note() -> None:
    html = pages.report(URLS, SPEC, "r1", _summary(sampled=50_000))

    assert 'id="report-note"' not in html
    assert 'id="decision"' in html


def test_the_note_names_a_column_the_sample_left_untested() -> None:
    note = evidence_note(_summary(sampled=50_000, skipped={"age": "no value in the current sample"}))

    assert note is not None
    assert "; age had no value in it and went untested;" in note


def test_a_summary_without_evidently_has_no_note() -> None:
    assert evidence_note({"drift": {"share": 0.4}}) is None


def test_a_report_from_before_the_pipelines_rules_says_so() -> None:
    summary = _summary()
    summary["evidently"]["drift"]["drifted_columns"] = {"count": 8, "share": 0.348}

    note = evidence_note(summary)

    assert note is not None
    assert "Evidently's default threshold 0.5" in note


def test_a_run_without_summary_shows_no_decision_and_values_are_escaped() -> None:
    assert 'id="decision"' not in pages.report(URLS, SPEC, "r1", None)
    html = pages.report(URLS, SPEC, "r1", _summary(why=HOSTILE))
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
