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


def _label_shift() -> dict:
    """A binary label-shift block as ctloop.monitoring.label_shift.measure writes it: the label
    rate fired, the predicted rate did not."""
    rate = {
        "name": "label_rate",
        "value": 0.54,
        "reference": 0.65,
        "threshold": 0.05,
        "shift": 0.11,
        "interval": [-0.13, -0.09],
        "p_value": 2e-12,
        "verdict": "alert",
        "why": "label shift: label_rate: the rate of class 1 is 0.540 against 0.650 on the training data"
        f" on 3,000 labels (alert: shift 0.110 > 0.05, p=2e-12 < 0.01) {HOSTILE}",
    }
    gap = {
        "name": "predicted_rate",
        "value": 0.02,
        "reference": 0.01,
        "threshold": 0.05,
        "shift": 0.01,
        "interval": [-0.01, 0.03],
        "p_value": 0.4,
        "verdict": "ok",
        "why": "label shift: predicted_rate: the predicted minus observed rate of class 1 is 0.020",
    }
    return {"enabled": True, "verdict": "alert", "signals": [rate, gap], "why": "..."}


def _estimate(decides: bool = False) -> dict:
    """An estimate block: accuracy judged and within max_drop, precision reported only."""

    def signal(name: str, judged: bool) -> dict:
        why = f"estimate {name}: 0.8800 expected on the window's 3,000 rows against 0.8900 on the champion's"
        why += " holdout, a drop of 0.0100 within max_drop 0.05; 95% interval [0.8680, 0.8920]"
        return {
            "name": name,
            "value": 0.88,
            "reference": 0.89,
            "drop": 0.01,
            "threshold": 0.05,
            "interval": [0.868, 0.892],
            "judged": judged,
            "verdict": "ok",
            "why": why if judged else f"{why} (reported, not judged)",
        }

    signals = [signal("accuracy", True), signal("precision", False)]
    return {"enabled": True, "decides": decides, "verdict": "ok", "signals": signals, "why": "..."}


def _headline(summary: dict) -> str:
    html = pages.report(URLS, SPEC, "r1", summary)
    start = html.index('id="decision"')
    return html[start : html.index("</div>", start)]


def test_the_headline_shows_each_label_shift_signal_and_estimated_metric() -> None:
    headline = _headline(_summary() | {"label_shift": _label_shift(), "estimate": _estimate()})

    assert (
        '<dt>label shift: label_rate</dt><dd><span title="0.5400 against 0.6500, shift 0.110 (max 0.050),'
        ' p=2e-12"><span class="badge bad">alert</span></span> the rate of class 1 is 0.540 against 0.650'
        " on the training data on 3,000 labels (alert: shift 0.110 &gt; 0.05, p=2e-12 &lt; 0.01)"
    ) in headline
    assert '<dt>label shift: predicted_rate</dt><dd><span title="0.0200 against 0.0100' in headline
    assert (
        '<dt>estimate accuracy</dt><dd><span title="0.8800 against 0.8900, interval [0.8680, 0.8920]">'
        '<span class="badge good">ok</span></span> <span class="small muted">informs only</span> 0.8800'
        " expected on the window&#39;s 3,000 rows"
    ) in headline
    assert '<span class="small muted">not judged</span> 0.8800 expected' in headline  # precision
    assert HOSTILE not in headline
    assert headline.index("<dt>roc_auc</dt>") < headline.index("<dt>label shift: label_rate</dt>")
    assert headline.index("<dt>label shift: predicted_rate</dt>") < headline.index(
        "<dt>estimate accuracy</dt>"
    )


def test_an_estimate_that_decides_says_so() -> None:
    headline = _headline(_summary() | {"estimate": _estimate(decides=True)})

    assert '</span></span> <span class="small muted">decides</span> 0.8800 expected' in headline
    assert "informs only" not in headline


def test_a_summary_from_before_label_shift_and_the_estimate_shows_neither() -> None:
    headline = _headline(_summary())

    assert "label shift" not in headline
    assert "estimate" not in headline


def test_label_shift_or_an_estimate_turned_off_or_without_signals_says_so() -> None:
    off = {"enabled": False, "verdict": "ok", "signals": [], "why": "monitoring.label_shift.enabled is false"}
    regression = {
        "enabled": True,
        "decides": False,
        "verdict": "ok",
        "signals": [],
        "why": "not estimated for regression: the method needs class probabilities",
    }
    headline = _headline(_summary() | {"label_shift": off, "estimate": regression})

    assert (
        '<dt>label shift</dt><dd><span class="muted">off</span> monitoring.label_shift.enabled is false</dd>'
        in (headline)
    )
    assert '<dt>estimate</dt><dd><span class="muted">off</span> not estimated for regression' in headline

    no_holdout = regression | {
        "verdict": "undecided",
        "why": "estimate: the champion has no stored holdout to calibrate its scores on",
    }
    headline = _headline(_summary() | {"estimate": no_holdout})
    assert (
        '<dt>estimate</dt><dd><span><span class="badge ">undecided</span></span> the champion has no stored'
        " holdout to calibrate its scores on</dd>"
    ) in headline


def test_a_class_mix_shows_class_by_class_in_the_tooltip() -> None:
    mix = _label_shift()
    mix["signals"][0] |= {"value": {"high": 0.2, "low": 0.5}, "reference": {"high": 0.3, "low": 0.4}}

    headline = _headline(_summary() | {"label_shift": mix})

    assert '<span title="high 0.200, low 0.500 against high 0.300, low 0.400, shift 0.110' in headline
