"""Training on the right data, through the real train DAG: after a concept change, a run an alert
started (with no ``retrain.data`` in the spec) fits a candidate on all history and on the last
labeled batches, keeps the one best on the recent holdout, records every alternative, and the
promoted model serves the present well; a manual run trains on the spec's window as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.integration.conftest import champion_version, mlflow_run, run_dag
from tests.integration.test_train_recent_holdout import _decision, concept_changed

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("window_selection")]


@pytest.fixture(scope="module")
def alerted(tmp_path_factory, airflow_db):
    """After the concept change, an external alert's run (v2) with the spec's default window."""
    pipeline = concept_changed(tmp_path_factory.mktemp("window"))
    assert "data" not in pipeline.spec["retrain"]
    dag_run = run_dag(pipeline.dag_id, reason="quality dropped", alert_id="ext-7")
    assert dag_run.state == "success"
    yield pipeline, dag_run
    pipeline.remove()


def test_an_alert_run_after_a_concept_change_trains_on_a_short_window_and_records_the_alternatives(alerted):
    pipeline, dag_run = alerted
    client = registry.client(load_settings())
    run = mlflow_run(pipeline.name, dag_run)
    choice = json.loads(run.data.tags["ctloop.window_selection"])
    artifact = Path(client.download_artifacts(run.info.run_id, "training/window_selection.json"))
    assert json.loads(artifact.read_text()) == choice
    tried = {c["window"]: c for c in choice["candidates"]}
    assert list(tried) == ["all", "batches:1", "batches:2"]
    # the labeled batches trained on are 10, 11 and the half of 12 that is not the recent holdout
    assert choice["chosen"] in ("batches:1", "batches:2")
    # v1 served only changed batches: it never served well, so there is no change point to train since
    assert choice["change_point"].startswith("no change point: champion v1's roc_auc per served batch")
    assert choice["change_point"].endswith("no batch before was above it")
    assert run.data.tags["ctloop.data_window"] == choice["chosen"]
    assert tried[choice["chosen"]]["status"] == "chosen"
    assert tried["all"]["status"] == "scored"
    assert tried[choice["chosen"]]["score"] > tried["all"]["score"] + 0.1  # 6,000 old rows outvote 1,900 new
    held = int(run.data.params["recent_holdout_rows"])
    assert (choice["metric"], choice["recent_rows"]) == ("roc_auc", held)
    assert 400 < held < 800  # about half of batch 12 (gates.recent_holdout.fraction 0.5)
    assert choice["why"].startswith(f"{choice['chosen']} scored roc_auc ")
    assert run.data.params["train_rows"] == str(tried[choice["chosen"]]["rows"])

    assert champion_version(pipeline.name) == "2"
    version = client.get_model_version(pipeline.name, "2")
    assert version.tags["ctloop.data_window"] == choice["chosen"]
    assert json.loads(version.tags["ctloop.window_selection"]) == choice
    metrics = run.data.metrics
    assert metrics["recent_roc_auc"] == pytest.approx(tried[choice["chosen"]]["score"])
    # the new champion serves the present well: 0.74 here (the generator's labels are noisy), where
    # v1 serves 0.45 and the candidate of all history would have served 0.55
    assert metrics["recent_roc_auc"] > 0.7
    assert metrics["recent_roc_auc"] > metrics["champion_recent_roc_auc"] + 0.2
    assert _decision(pipeline, dag_run)["relative_on"] == "recent_holdout"


def test_a_manual_run_trains_on_the_spec_window_and_chooses_nothing(alerted):
    pipeline, _ = alerted
    manual = run_dag(pipeline.dag_id, reason="a person asked", gate_mode="dry_run")
    run = mlflow_run(pipeline.name, manual)
    assert run.data.tags["ctloop.data_window"] == "all"
    assert "ctloop.window_selection" not in run.data.tags
    held = int(run.data.params["recent_holdout_rows"])
    assert int(run.data.params["train_rows"]) + int(run.data.params["holdout_rows"]) == 6000 + 3 * 1200 - held
    version = registry.client(load_settings()).get_model_version(pipeline.name, "3")
    assert version.tags["ctloop.data_window"] == "all"
    assert "ctloop.window_selection" not in version.tags
