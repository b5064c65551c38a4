"""What a reviewer's answer (or silence) means for the record, and the evidence they are shown."""

from __future__ import annotations

from ctloop.gating.approval import evidence_markdown, outcome
from ctloop.gating.decision import GateDecision
from ctloop.training.contracts import Evaluation, HoldoutRef, HoldoutScores

ADMIN = {"id": "1", "name": "admin"}


def test_answers_become_approved_rejected_or_timed_out():
    approve = {"chosen_options": ["Approve"], "responded_by_user": ADMIN, "params_input": {"comment": "ok"}}
    reject = {"chosen_options": ["Reject"], "responded_by_user": ADMIN, "params_input": {"comment": "no"}}
    silence = {"chosen_options": ["Reject"], "responded_by_user": None, "timedout": True}
    assert outcome(approve, True).model_dump() | {"at": None} == {
        "required": True, "outcome": "approved", "by": "admin", "at": None, "comment": "ok",
    }  # fmt: skip
    assert (outcome(reject, True).outcome, outcome(reject, True).comment) == ("rejected", "no")
    assert (outcome(silence, True).outcome, outcome(silence, True).by) == ("timed_out", None)
    assert outcome(None, True).outcome == "pending"
    assert outcome(approve, False).outcome == "not_required"


def _verdict(rule: str, metric: str, kind: str, passed: bool, note: str) -> dict:
    return {
        "rule": rule,
        "metric": metric,
        "kind": kind,
        "value": 0.0,
        "bound": 0.0,
        "passed": passed,
        "note": note,
    }


def test_evidence_shows_metrics_verdicts_slices_and_links():
    two_year = {"slice": "contract=two_year", "definition": "contract", "column": "contract", "rows": 120}
    decision = GateDecision.model_validate(
        {
            "mode": "enabled",
            "passed": False,
            "promote": False,
            "champion_version": "3",
            "failed": [],
            "rules": [
                _verdict("threshold", "roc_auc", "at_least", True, "0.81 must be >= 0.70"),
                _verdict("latency", "single_p95_ms", "at_most", False, "12 ms must be <= 5"),
            ],
            "slices": [
                {
                    **two_year,
                    "candidate": {"roc_auc": 0.7},
                    "champion": None,
                    "judged": True,
                    "why_not_judged": None,
                }
            ],
            "slice_metric": "roc_auc",
            "relative_on": "recent_holdout",
            "relative_on_why": "an alert started this run",
            "alert_metrics": ["accuracy"],
            "alert_metrics_why": "started by the monitor's alert on accuracy",
        }
    )
    evaluation = Evaluation(
        mlflow_run_id="run",
        candidate={"roc_auc": 0.81},
        champion={"roc_auc": 0.79},
        champion_version="3",
        holdout_digest="d" * 64,
        holdout_key="holdouts/p/d.parquet",
        predictions_key="runs/p/r/holdout_predictions.parquet",
        recent=HoldoutScores(
            holdout=HoldoutRef(key="holdouts/p/r.parquet", digest="r" * 64, rows=1200),
            candidate={"roc_auc": 0.66},
            champion={"roc_auc": 0.91},
            predictions_key="runs/p/r/recent_predictions.parquet",
        ),
        recent_note="the last 1 labeled batch(es) hold 1200 rows",
        trigger="asset",
    )
    text = evidence_markdown(
        decision, evaluation, {"ctloop.reason": "drift"}, "4", {"report": "s3://b/r.html"}
    )
    assert "Candidate v4** against champion v3" in text
    assert "| roc_auc | 0.8100 | 0.7900 |" in text
    assert "On the recent holdout (1200 rows, rrrrrrrrrrrr):" in text
    assert "| roc_auc | 0.6600 | 0.9100 |" in text
    assert "judged on the recent holdout: an alert started this run." in text
    assert "Judged on the alert's accuracy: started by the monitor's alert on accuracy." in text
    assert "**FAIL**" in text
    assert "contract=two_year" in text
    assert "s3://b/r.html" in text
