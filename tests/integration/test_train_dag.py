"""The training DAG end to end, through Airflow's ``dag.test()`` and a real MLflow registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.integration.conftest import Pipeline, champion_version, mlflow_run, run_dag, task_states, versions

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("train_dag")]


@pytest.fixture(scope="module")
def champion_pipeline(tmp_path_factory, airflow_db):
    """A pipeline whose first run made v1 champion; tests add bad input and must leave it so."""
    pipeline = Pipeline(tmp_path_factory.mktemp("champion"))
    pipeline.add_batches(3)
    first = run_dag(pipeline.dag_id, reason="first training", note="integration test")
    yield pipeline, first
    pipeline.remove()


def test_first_run_promotes_v1_with_its_evidence(champion_pipeline):
    pipeline, dag_run = champion_pipeline
    assert str(dag_run.state) in ("success", "DagRunState.SUCCESS")
    assert set(task_states(dag_run).values()) == {"success"}
    assert champion_version(pipeline.name) == "1"

    (version,) = versions(pipeline.name)
    run = mlflow_run(pipeline.name, dag_run)
    snapshot = Path(run.data.tags["ctloop.data_uri"])
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == run.data.tags["ctloop.data_sha256"]
    for tag in ("ctloop.data_sha256", "ctloop.holdout_digest", "ctloop.code_version", "ctloop.dag_run_id"):
        assert version.tags[tag] == run.data.tags[tag], tag
    assert version.tags["ctloop.validation"] == "passed"
    assert version.tags["ctloop.reason"] == "first training"
    assert version.tags["ctloop.gate"] == "passed"
    assert version.tags["ctloop.previous_champion"] == "none"
    (move,) = ledger.entries(load_settings(), pipeline.name)
    assert (move.user, move.automatic, move.reason) == ("dag_test", False, "first training")  # its person
    assert run.data.params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert run.data.params["estimator.max_iter"] == "60"
    assert run.data.metrics["holdout_roc_auc"] > 0.7
    assert run.data.tags["ctloop.note"] == "integration test"

    client = registry.client(load_settings())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "validation")}
    assert artifacts == {"validation/result.json", "validation/summary.html"}
    decision = json.loads(Path(client.download_artifacts(run.info.run_id, "gate/decision.json")).read_text())
    assert decision["passed"]
    assert decision["champion_version"] is None
    by_rule = {r["rule"]: r["passed"] for r in decision["rules"] if r["rule"] in ("threshold", "relative")}
    assert by_rule == {"threshold": True, "relative": None}  # nothing to be relative to yet
    model_version = client.get_model_version(pipeline.name, "1")
    assert model_version.tags[registry.MODEL_SHA_TAG]
    loaded = registry.load_model(
        load_settings(), f"models:/{pipeline.name}@champion", model_version.tags[registry.MODEL_SHA_TAG]
    )
    assert hasattr(loaded, "predict_proba")


def test_no_better_candidate_is_registered_rejected_and_v1_stays(champion_pipeline):
    pipeline, _ = champion_pipeline
    dag_run = run_dag(pipeline.dag_id, reason="no change")
    states = task_states(dag_run)
    assert states["gate"] == "success"
    assert states["register"] == "success"
    assert states["promote"] == "skipped"
    assert champion_version(pipeline.name) == "1"
    rejected = registry.client(load_settings()).get_model_version(pipeline.name, "2")
    assert rejected.tags["ctloop.gate"] == "rejected"
    assert "roc_auc min_improvement" in rejected.tags["ctloop.gate_summary"]
    assert "against champion v1" in rejected.tags["ctloop.gate_summary"]
    run = mlflow_run(pipeline.name, dag_run)
    assert run.data.tags["ctloop.promotion"] == "not_promoted"
    assert run.data.metrics["champion_holdout_roc_auc"] == pytest.approx(
        run.data.metrics["holdout_roc_auc"], abs=0.01
    )
    client = registry.client(load_settings())
    importance = json.loads(
        Path(client.download_artifacts(run.info.run_id, "explanations/importance.json")).read_text()
    )
    assert set(importance["candidate"]) == set(importance["champion"])
    assert "tenure_months" in importance["candidate"]
    assert importance["large_shifts"] == []  # the same data and estimator: the same reliance
    assert "ctloop.importance_shift" not in run.data.tags
    card = Path(client.download_artifacts(run.info.run_id, "model_card.html")).read_text()
    assert "champion (version 1)" in card[card.index("<h2>Feature importance</h2>") :]


BAD_BATCHES = [
    # (fault, what the error must name)
    ("missing_column", ["batch-", "monthly_charges"]),
    ("extra_column", ["batch-", "unexpected_score"]),
    ("nulls", ["tenure_months", "expect_column_values_to_not_be_null"]),
    ("wrong_type", ["batch-", "monthly_charges", "is object here"]),
    ("out_of_range", ["age", "expect_column_values_to_be_between"]),
    ("empty", ["batch-", "file is empty"]),
]


@pytest.mark.parametrize(("fault", "named"), BAD_BATCHES, ids=[f for f, _ in BAD_BATCHES])
def test_bad_batch_stops_the_run_and_v1_stays(champion_pipeline, capsys, fault, named):
    pipeline, first = champion_pipeline
    snapshot = Path(mlflow_run(pipeline.name, first).data.tags["ctloop.data_uri"])
    before = len(versions(pipeline.name))
    (bad,) = pipeline.add_batches(1, fault=fault)
    try:
        dag_run = run_dag(pipeline.dag_id, reason=f"bad input: {fault}")
    finally:
        bad.unlink()
    output = capsys.readouterr().out
    assert "failed" in task_states(dag_run).values()
    for fragment in named:
        assert fragment in output, f"{fragment!r} not in the task's error"
    assert champion_version(pipeline.name) == "1"
    assert len(versions(pipeline.name)) == before
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == snapshot.stem


def test_a_manual_run_without_a_reason_is_refused_at_snapshot_and_v1_stays(champion_pipeline, capsys):
    pipeline, _ = champion_pipeline
    before = len(versions(pipeline.name))
    dag_run = run_dag(pipeline.dag_id)  # the trigger form requires it; the REST API does not
    assert task_states(dag_run)["snapshot"] == "failed"
    assert "Param 'reason' is required for a manual run" in capsys.readouterr().out
    assert champion_version(pipeline.name) == "1"
    assert len(versions(pipeline.name)) == before


def test_unreadable_file_is_named_and_v1_stays(champion_pipeline, capsys):
    pipeline, _ = champion_pipeline
    bad = pipeline.data / "batch-9999.csv"
    bad.write_bytes(b"customer_id,age\n\xff\xfe\x00\x81,1\n")
    try:
        dag_run = run_dag(pipeline.dag_id, reason="unreadable")
    finally:
        bad.unlink()
    assert task_states(dag_run)["snapshot"] == "failed"
    assert "batch-9999.csv: cannot read as csv" in capsys.readouterr().out
    assert champion_version(pipeline.name) == "1"


def test_unknown_estimator_stops_training_and_v1_stays(champion_pipeline, capsys):
    pipeline, _ = champion_pipeline
    original = dict(pipeline.spec["estimator"])
    pipeline.spec["estimator"] = {"class_path": "sklearn.ensemble.NoSuchForest", "params": {}}
    pipeline.write(pipeline.spec)
    try:
        dag_run = run_dag(pipeline.dag_id, reason="unknown estimator")
    finally:
        pipeline.spec["estimator"] = original
        pipeline.write(pipeline.spec)
    assert task_states(dag_run)["train"] == "failed"
    assert "estimator.class_path: cannot import 'sklearn.ensemble.NoSuchForest'" in capsys.readouterr().out
    assert champion_version(pipeline.name) == "1"


@pytest.mark.parametrize(
    ("break_spec", "named"),
    [
        (lambda text: text.replace("target: churned", "target: [churned"), "not valid YAML"),
        (lambda text: text.replace("metric: roc_auc", "metric: auroc"), "gates.rules.0.metric: 'auroc'"),
    ],
    ids=["invalid_yaml", "unknown_gate_metric"],
)
def test_invalid_spec_removes_only_its_dag_and_names_the_field(champion_pipeline, break_spec, named):
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import REPO

    pipeline, _ = champion_pipeline
    good = pipeline.path.read_text()
    pipeline.write(break_spec(good))
    try:
        bag = DagBag(str(REPO / "dags"))
    finally:
        pipeline.write(good)
    assert pipeline.dag_id not in bag.dag_ids
    message = "\n".join(bag.import_errors.values())
    assert pipeline.path.name in message
    assert named in message
    assert champion_version(pipeline.name) == "1"
