"""The step contracts survive the trip through XCom's JSON, and a wrong shape is named."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from ctloop.gating.decision import GateDecision
from ctloop.registry.ledger import LedgerMove
from ctloop.registry.promotion import PromotionResult
from ctloop.training.contracts import Evaluation, Finished, Started, Trained, TrainResults, Validated

STARTED = {
    "mlflow_run_id": "abc",
    "snapshot": {
        "key": "snapshots/p/f00.parquet",
        "uri": "/home/snapshots/p/f00.parquet",
        "sha256": "f00",
        "rows": 1200,
        "sources": ["/data/batch-0001.csv", "/home/labeled/p/batch_id=b11/part-0.parquet"],
        "source_rows": [800, 400],
        "labeled_sources": 1,
        "created": True,
        "sample": {
            "rows_before": 2000,
            "rows_after": 1200,
            "max_rows": 1200,
            "seed": 0,
            "stratified_by": "churned",
            "strata": {"0": [1500, 900], "1": [500, 300]},
        },
    },
    "recent_holdout": {
        "holdout": {"key": "holdouts/p/r.parquet", "digest": "r", "rows": 1200},
        "sources": ["/home/labeled/p/batch_id=b12/part-0.parquet"],
        "note": "the last 1 labeled batch(es) hold 1200 rows, set aside from training: b12",
    },
    "provenance": {
        "ctloop.reason": "drift in tenure_months",
        "ctloop.trigger": "asset",
        "ctloop.started_by": "monitor",
        "ctloop.alert_id": "",
        "ctloop.request_id": "20260101T000000Z-ab12cd34",
        "ctloop.trigger_reports": "s3://b/report.html",
    },
}
VALIDATED = {
    "suite": "churn",
    "suite_path": "/x/churn.json",
    "rows": 1200,
    "schema_failures": [],
    "expectation_failures": [
        {"check": "expect_column_values_to_not_be_null", "column": "age", "detail": "3"}
    ],
    "statistics": {"evaluated_expectations": 12, "success_percent": 91.7},
    "success": False,
    "result_uri": "/r/validation.json",
    "html_uri": "/r/validation.html",
    "suite_key": "suites/churn/abc.json",
}
TRAINED = {
    "mlflow_run_id": "abc",
    "model": {"model_uri": "models:/m-1", "model_id": "m-1", "sha256": "beef"},
    "holdout": {"key": "holdouts/p/d.parquet", "digest": "d", "rows": 300},
    "recent_holdout": {"holdout": None, "sources": [], "note": "not used: no labeled production batch yet"},
    "train_rows": 900,
    "data_window": "batches:1",
    "window_selection": {
        "metric": "roc_auc",
        "higher_is_better": True,
        "recent_rows": 1200,
        "chosen": "batches:1",
        "why": "batches:1 scored roc_auc 0.9700 on the recent holdout against all 0.6100",
        "budget_seconds": 300.0,
        "seconds": 1.5,
        "candidates": [
            {"window": "all", "rows": 900, "score": 0.61, "status": "scored", "note": ""},
            {"window": "batches:1", "rows": 300, "score": 0.97, "status": "chosen", "note": ""},
            {"window": "batches:2", "rows": 0, "score": None, "status": "skipped", "note": "only 1"},
        ],
        "change_point": "no change point: champion v1's roc_auc per served batch",
    },
}
EVALUATION = {
    "mlflow_run_id": "abc",
    "candidate": {"roc_auc": 0.81},
    "champion": None,
    "champion_version": None,
    "holdout_digest": "d",
    "holdout_key": "holdouts/p/d.parquet",
    "predictions_key": "runs/p/r/holdout_predictions.parquet",
    "recent": {
        "holdout": {"key": "holdouts/p/r.parquet", "digest": "r", "rows": 1200},
        "candidate": {"roc_auc": 0.74},
        "champion": {"roc_auc": 0.79},
        "predictions_key": "runs/p/r/recent_predictions.parquet",
    },
    "recent_note": "the last 1 labeled batch(es) hold 1200 rows, set aside from training: b12",
    "trigger": "asset",
    "alert_metrics": ["accuracy"],
    "importance": {
        "metric": "log_loss",
        "rows": 2000,
        "repeats": 3,
        "seed": 0,
        "shift_threshold": 0.15,
        "candidate": {"tenure_months": {"mean": 0.09, "std": 0.01}, "region": {"mean": 0.0, "std": 0.0}},
        "champion": None,
        "shares": [],
        "large_shifts": [],
        "summary": "most important: tenure_months (100%), region (0%); no champion to compare with",
    },
    "per_class": {
        "candidate": {"low": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 120.0}},
        "champion": {"low": {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 120.0}},
    },
}
VERDICT = {
    "rule": "bootstrap",
    "metric": "roc_auc",
    "kind": "ci_lower_bound",
    "value": 0.01,
    "bound": 0.0,
    "passed": True,
    "note": "ok",
    "interval": [0.01, 0.04],
}
DECISION = {
    "mode": "enabled",
    "passed": True,
    "promote": True,
    "champion_version": "1",
    "rules": [VERDICT],
    "failed": [],
    "relative_on": "recent_holdout",
    "relative_on_why": "gates.recent_holdout.judge_relative is 'alert' and this run's trigger is 'asset'",
    "alert_metrics": ["accuracy"],
    "alert_metrics_why": "started by the monitor's alert on accuracy",
    "summary": "gate passed (against champion v1; relative rules on the recent holdout; judged on the alert's"
    " accuracy)",
    "slices": None,
    "slice_metric": None,
    "latency": {
        "single_ms": {"p50": 1.0, "p95": 2.0},
        "batch_ms": {"p50": 5.0, "p95": 6.0},
        "batch_rows": 100,
        "repeats": 5,
    },
    "evidence_md": None,
    "primary": None,
}
PROMOTION = {
    "action": "promoted",
    "version": "2",
    "previous": "1",
    "decision": DECISION,
    "why": "as decided",
    "seq": 2,
}
MOVE = {
    "action": "rollback",
    "moved": True,
    "from": "2",
    "to": "1",
    "seq": 3,
    "why": "champion was v2 as decided",
}
FINISHED = {
    "id": "r1",
    "pipeline": "p",
    "state": "closed",
    "outcome": "promoted",
    "version": "2",
    "reasons": [],
}

CASES = [
    (Started, STARTED),
    (Validated, VALIDATED),
    (Trained, TRAINED),
    (Evaluation, EVALUATION),
    (GateDecision, DECISION),
    (PromotionResult, PROMOTION),
    (LedgerMove, MOVE),
    (Finished, FINISHED),
]


@pytest.mark.parametrize(("model", "payload"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_a_contract_round_trips_through_json_with_the_same_keys(model: type[BaseModel], payload: dict):
    parsed = model.model_validate(json.loads(json.dumps(payload)))
    assert json.loads(json.dumps(parsed.model_dump(mode="json"))) == payload
    assert model.model_validate(parsed.model_dump(mode="json")) == parsed


@pytest.mark.parametrize(
    ("model", "payload", "field"),
    [
        (Started, {**STARTED, "snapshot": {**STARTED["snapshot"], "rows": "many"}}, "snapshot.rows"),
        (Started, {k: v for k, v in STARTED.items() if k != "provenance"}, "provenance"),
        (Trained, {**TRAINED, "model": {"model_uri": "models:/m-1"}}, "model.model_id"),
        (Evaluation, {**EVALUATION, "candidate": {"roc_auc": "high"}}, "candidate.roc_auc"),
        (GateDecision, {**DECISION, "rules": [{**VERDICT, "passed": "yes"}]}, "rules.0.passed"),
        (GateDecision, {**DECISION, "mode": "maybe"}, "mode"),
        (GateDecision, {**DECISION, "relative_on": "yesterday"}, "relative_on"),
        (Evaluation, {**EVALUATION, "recent": {**EVALUATION["recent"], "holdout": None}}, "recent.holdout"),
        (Started, {k: v for k, v in STARTED.items() if k != "recent_holdout"}, "recent_holdout"),
        (PromotionResult, {**PROMOTION, "action": "crowned"}, "action"),
        (Validated, {**VALIDATED, "unexpected": 1}, "unexpected"),
    ],
)
def test_a_wrong_shape_raises_naming_the_field(model: type[BaseModel], payload: dict, field: str):
    with pytest.raises(ValidationError) as raised:
        model.model_validate(payload)
    located = {".".join(str(part) for part in error["loc"]) for error in raised.value.errors()}
    assert any(loc == field or loc.startswith(f"{field}.") for loc in located), located


def test_results_by_task_id_read_xcom_json_and_tolerate_tasks_that_never_ran():
    results = TrainResults.model_validate(
        {"snapshot": STARTED, "validate": VALIDATED, "gate": DECISION, "register": "2", "promote": None}
    )
    assert results.validation is not None
    assert results.validation.suite_key == "suites/churn/abc.json"
    assert results.snapshot is not None
    assert results.snapshot.provenance.reason == "drift in tenure_months"
    assert (results.train, results.promote, results.approve) == (None, None, None)
    with pytest.raises(ValidationError, match="gate.rules"):
        TrainResults.model_validate({"gate": {**DECISION, "rules": [{"rule": "x"}]}})
