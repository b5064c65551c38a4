"""What a finished training leaves on its version: approval tags, the model card, a rejection notice."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ctloop import notifications
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.registry.model_card import ARTIFACT_PATH
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.contracts import TrainResults
from ctloop.training.record import record_version
from tests.helpers import example_spec, started_payload

ADMIN = {"id": "1", "name": "admin"}
REJECTED_GATE = {
    "mode": "enabled",
    "passed": False,
    "promote": False,
    "champion_version": "1",
    "rules": [
        {
            "rule": "relative",
            "metric": "roc_auc",
            "kind": "min_improvement",
            "value": -0.01,
            "bound": 0.002,
            "passed": False,
            "note": "improvement -0.0100 must be >= +0.0020: failed",
        }
    ],
    "failed": ["roc_auc min_improvement: improvement -0.0100 must be >= +0.0020: failed"],
    "summary": "gate rejected: roc_auc min_improvement (against champion v1)",
}


@pytest.fixture
def emitted(monkeypatch) -> list[tuple[str, str, dict]]:
    """Every notification the record emits, instead of sending it."""
    sent: list[tuple[str, str, dict]] = []

    def emit(event, pipeline, conn_id, fields=None, context=None, **kwargs):
        sent.append((event, pipeline, dict(fields or {})))
        return notifications.LOGGED

    monkeypatch.setattr(notifications, "emit", emit)
    return sent


@pytest.fixture
def version():
    """A registered version of a fresh pipeline whose spec requires approval, and its MLflow run."""
    name = f"rec_{uuid.uuid4().hex[:8]}"
    raw = example_spec(name, "data")
    raw["gates"]["approval"] = "required"
    spec = PipelineSpec.model_validate(raw)
    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(
        client, experiment, f"{name}/r1", {tags.REASON: "drift in tenure_months", tags.TRIGGER: "asset"}
    )
    client.create_registered_model(name)
    created = client.create_model_version(name, source="/nowhere", run_id=run_id)
    return spec, settings, client, str(created.version), run_id


def _card(client, run_id: str) -> str:
    return Path(client.download_artifacts(run_id, ARTIFACT_PATH)).read_text()


def test_a_rejected_approval_is_tagged_carded_and_notified(version, emitted):
    spec, settings, client, number, run_id = version
    answer = {
        "chosen_options": ["Reject"],
        "responded_by_user": ADMIN,
        "params_input": {"comment": "too risky"},
    }
    approval = record_version(
        spec, settings, client, number, TrainResults.model_validate({"approve": answer})
    )
    assert (approval.outcome, approval.by) == ("rejected", "admin")
    version_tags = client.get_model_version(spec.name, number).tags
    assert version_tags[tags.APPROVAL] == "rejected"
    assert version_tags[tags.APPROVED_BY] == "admin"
    assert version_tags[tags.APPROVAL_COMMENT] == "too risky"
    card = _card(client, run_id)
    assert "too risky" in card
    assert "drift in tenure_months" in card
    assert emitted == [
        (notifications.REJECTION, spec.name, {"version": number, "why": "approval rejected", "by": "admin"})
    ]


def test_a_gate_rejection_is_carded_and_notified_with_the_gate_summary(version, emitted):
    spec, settings, client, number, run_id = version
    results = TrainResults.model_validate({"gate": REJECTED_GATE, "register": number})
    approval = record_version(spec, settings, client, number, results)
    assert approval.outcome == "not_asked"  # the gate said no first, and the run is over
    assert client.get_model_version(spec.name, number).tags[tags.APPROVAL] == "not_asked"
    assert "roc_auc min_improvement" in _card(client, run_id)
    ((event, pipeline, fields),) = emitted
    assert (event, pipeline) == (notifications.REJECTION, spec.name)
    assert fields["why"] == REJECTED_GATE["summary"]


def test_an_approved_promotion_is_carded_and_not_notified_as_a_rejection(version, emitted):
    spec, settings, client, number, run_id = version
    answer = {"chosen_options": ["Approve"], "responded_by_user": ADMIN, "params_input": {"comment": "ok"}}
    promotion = {"action": "promoted", "version": number, "previous": None, "why": "as decided", "seq": 1}
    results = TrainResults.model_validate({"approve": answer, "promote": promotion})
    assert record_version(spec, settings, client, number, results).outcome == "approved"
    assert client.get_model_version(spec.name, number).tags[tags.APPROVAL] == "approved"
    assert "promoted" in _card(client, run_id)
    assert emitted == []


EVALUATION = {
    "mlflow_run_id": "r",
    "candidate": {"roc_auc": 0.8},
    "champion": {"roc_auc": 0.79},
    "champion_version": "1",
    "holdout_digest": "d",
    "holdout_key": "k",
    "predictions_key": "p",
    "recent": None,
    "recent_note": "none",
    "trigger": "manual",
    "importance": {
        "metric": "log_loss",
        "rows": 500,
        "repeats": 3,
        "seed": 0,
        "shift_threshold": 0.15,
        "candidate": {"tenure_months": {"mean": 0.09, "std": 0.01}, "region": {"mean": 0.0, "std": 0.0}},
        "champion": {"tenure_months": {"mean": 0.001, "std": 0.0}, "region": {"mean": 0.05, "std": 0.01}},
        "shares": [
            {"feature": "tenure_months", "candidate": 1.0, "champion": 0.02, "change": 0.98},
            {"feature": "region", "candidate": 0.0, "champion": 0.98, "change": -0.98},
        ],
        "large_shifts": ["tenure_months", "region"],
        "summary": "2 feature(s) moved by more than 0.15 of the importance",
    },
    "per_class": {
        "candidate": {"gold": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 40.0}},
        "champion": {"gold": {"precision": 0.7, "recall": 0.6, "f1": 0.6462, "support": 40.0}},
    },
}


def test_the_card_shows_the_code_lineage_tuning_feature_importance_and_per_class_metrics(version, emitted):
    spec, settings, client, number, run_id = version
    client.log_param(run_id, tags.ESTIMATOR, "lightgbm.LGBMClassifier")
    code = {
        tags.FEATURES_CODE: "features.churn.make_features",
        tags.FEATURES_SHA256: "e" * 64,
        tags.TRAIN_FUNCTION: "features.churn.train",
        tags.TRAIN_FUNCTION_SHA256: "f" * 64,
        tags.TUNING: '{"tuned_params":{"num_leaves":63},"best_value":0.8411,"metric":"roc_auc",'
        '"direction":"maximize","trials_completed":12,"trials_failed":0,"new_field":1}',
    }
    for key, value in code.items():
        client.set_tag(run_id, key, value)
    results = TrainResults.model_validate({"evaluate": EVALUATION, "register": number})
    record_version(spec, settings, client, number, results)
    card = _card(client, run_id)
    for expected in [*code.values()][:4] + [
        "lightgbm.LGBMClassifier",
        "num_leaves",
        "0.8411",
        "12 completed",
    ]:
        assert expected in card
    importance = card[card.index("<h2>Feature importance</h2>") :]
    assert importance.index("tenure_months") < importance.index("region")
    assert importance.count('<tr class="warn">') == 2
    per_class = card[card.index("<h2>Per-class metrics on the shared holdout</h2>") :]
    assert '<tr><td>gold</td><td class="num">40</td>' in per_class
    assert "0.7000 · +0.2000" in per_class


def test_an_unreadable_tuning_tag_leaves_tuning_off_the_card(version, emitted):
    spec, settings, client, number, run_id = version
    client.set_tag(run_id, tags.TUNING, '{"tuned_params": {"num_leaves": 6')  # cut short
    record_version(spec, settings, client, number, TrainResults.model_validate({"register": number}))
    card = _card(client, run_id)
    tuning = card[card.index("<h2>Tuning</h2>") :]
    assert tuning[: tuning.index("</section>")].count("not recorded") == 1
    code = card[card.index("<h2>Model code</h2>") :]
    assert code[: code.index("</section>")].count("not recorded") == 3  # no estimator param, no user code


def test_the_card_names_storage_locations_relative_to_ctloops_storage_not_by_server_path(version, emitted):
    spec, settings, client, number, run_id = version
    root = Path(settings.storage_root)
    snapshot_key, result_key = f"snapshots/{spec.name}/{'a' * 64}.parquet", "validation/r1/result.json"
    report = str(root / "monitor" / spec.name / "run1" / "report.html")
    client.set_tag(run_id, tags.TRIGGER_REPORTS, f"{report} s3://elsewhere/r.html")
    started = started_payload(run_id, root, snapshot_key, "a" * 64)
    validated = {"suite": "s", "suite_path": "s.json", "rows": 900, "schema_failures": []}
    validated |= {"expectation_failures": [], "statistics": {}, "success": True, "suite_key": "k"}
    validated |= {"result_uri": str(root / result_key), "html_uri": str(root / "validation/r1/result.html")}
    results = TrainResults.model_validate({"snapshot": started, "validate": validated, "register": number})
    record_version(spec, settings, client, number, results)
    card = _card(client, run_id)
    for shown in (
        f"storage://{snapshot_key}",
        f"storage://{result_key}",
        f"storage://monitor/{spec.name}/run1/",
    ):
        assert shown in card
    assert "s3://elsewhere/r.html" in card
    assert str(settings.home) not in card
