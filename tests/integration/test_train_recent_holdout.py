"""Judging on the present, through the real train DAG: after a concept change the frozen holdout
(mostly old rows) would promote a model trained on all history; the recent holdout (the newest
labeled batch, which no candidate trains on) shows it is worse than the champion, and an
alert-started run is judged there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctloop.registry import mlflow_store as registry
from ctloop.scoring.prediction_log import LABELED, batch_ids
from ctloop.settings import load_settings
from tests.integration.conftest import Pipeline, champion_version, mlflow_run, run_dag, task_states

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("recent_holdout")]

CHANGED = range(10, 13)  # production batches after the concept change, 1200 labeled rows each


def _decision(pipeline: Pipeline, dag_run) -> dict:
    client = registry.client(load_settings())
    run = mlflow_run(pipeline.name, dag_run)
    return json.loads(Path(client.download_artifacts(run.info.run_id, "gate/decision.json")).read_text())


def _relative(decision: dict) -> dict:
    (rule,) = [r for r in decision["rules"] if r["rule"] == "relative"]
    return rule


def concept_changed(root: Path) -> Pipeline:
    """A pipeline whose champion v1 was trained on 6,000 old-concept rows, after which three
    production batches of a changed concept were scored and labeled."""
    pipeline = Pipeline(root)
    pipeline.spec["gates"] |= {"slices": [], "slice_rules": None}  # the holdouts are what is judged here
    pipeline.write(pipeline.spec)
    pipeline.add_batches(3, rows=2000)
    assert run_dag(pipeline.dag_id, reason="v1").state == "success"
    pipeline.deliver(CHANGED, concept_drift=True)
    assert run_dag(f"{pipeline.name}__score").state == "success"
    for index in CHANGED:
        pipeline.label(index, concept_drift=True)
    assert run_dag(f"{pipeline.name}__score").state == "success"  # joins the labels
    assert batch_ids(LABELED, pipeline.name, load_settings()) == [f"batch-{i:04d}" for i in CHANGED]
    return pipeline


@pytest.fixture(scope="module")
def changed(tmp_path_factory, airflow_db):
    """After the concept change (:func:`concept_changed`), v2 trained on the first two changed
    batches (the third is the recent holdout) and promoted."""
    pipeline = concept_changed(tmp_path_factory.mktemp("recent"))
    v2 = run_dag(pipeline.dag_id, reason="the new concept", data_window="batches", data_last=2)
    assert v2.state == "success"
    yield pipeline, v2
    pipeline.remove()


def test_the_newest_labeled_batch_is_set_aside_scored_and_recorded(changed):
    pipeline, dag_run = changed
    assert champion_version(pipeline.name) == "2"
    run = mlflow_run(pipeline.name, dag_run)
    # about half of batch 12 is the recent holdout (gates.recent_holdout.fraction 0.5); the window
    # of two is batch 11 and the rest of batch 12
    held = int(run.data.params["recent_holdout_rows"])
    assert 400 < held < 800
    assert int(run.data.params["train_rows"]) + int(run.data.params["holdout_rows"]) == 1200 + 1200 - held
    note = run.data.tags["ctloop.recent_holdout"]
    assert note == (
        f"{held} of the 1200 rows of the last 1 labeled batch(es) (gates.recent_holdout.fraction 0.5),"
        " set aside from training: batch-0012; the rest is trained on"
    )
    metrics = run.data.metrics
    assert metrics["recent_roc_auc"] > metrics["champion_recent_roc_auc"] + 0.1  # v1 misses the new concept
    assert {"holdout_roc_auc", "champion_holdout_roc_auc", "recent_log_loss"} <= set(metrics)

    version = registry.client(load_settings()).get_model_version(pipeline.name, "2")
    for name in ("holdout_roc_auc", "champion_holdout_roc_auc", "recent_roc_auc", "champion_recent_roc_auc"):
        assert float(version.tags[f"ctloop.metric.{name}"]) == pytest.approx(metrics[name], rel=1e-5), name
    assert version.tags["ctloop.recent_holdout"] == note
    assert version.tags["ctloop.recent_holdout_digest"] == run.data.tags["ctloop.recent_holdout_digest"]
    assert version.tags["ctloop.gate_relative_on"] == "frozen_holdout"

    decision = _decision(pipeline, dag_run)
    assert decision["relative_on"] == "frozen_holdout"  # a manual run: today's behaviour
    assert "this run's trigger is 'manual', not an alert" in decision["relative_on_why"]


def test_an_alert_run_is_judged_on_the_recent_holdout_and_the_candidate_of_the_past_is_rejected(changed):
    pipeline, _ = changed
    # The same candidate twice (all history: 6,000 old rows and 2,400 new), judged as a manual
    # dry run and as an external alert's run.
    manual = run_dag(pipeline.dag_id, reason="all history", data_window="all", gate_mode="dry_run")
    alert = run_dag(pipeline.dag_id, reason="all history", data_window="all", alert_id="ext-42")
    assert task_states(alert)["promote"] == "skipped"
    assert champion_version(pipeline.name) == "2"

    on_frozen, on_recent = _decision(pipeline, manual), _decision(pipeline, alert)
    assert on_frozen["passed"]  # the frozen holdout, mostly old rows, would have promoted it
    assert on_frozen["relative_on"] == "frozen_holdout"
    assert _relative(on_frozen)["passed"] is True
    assert next(r for r in on_frozen["rules"] if r["rule"] == "bootstrap")["passed"] is True

    assert not on_recent["passed"]
    assert on_recent["relative_on"] == "recent_holdout"
    assert "this run's trigger is 'alert'" in on_recent["relative_on_why"]
    held = mlflow_run(pipeline.name, alert).data.params["recent_holdout_rows"]
    assert f"judged on the {held} most recent labeled rows" in on_recent["relative_on_why"]
    relative = _relative(on_recent)
    assert relative["passed"] is False
    assert relative["candidate"] < relative["champion"]
    bootstrap = next(r for r in on_recent["rules"] if r["rule"] == "bootstrap")
    assert bootstrap["passed"] is False
    assert bootstrap["interval"][1] < 0  # worse than the champion on the present, with confidence
    threshold = next(r for r in on_recent["rules"] if r["rule"] == "threshold")
    assert threshold["passed"] is True  # absolute rules still on the frozen holdout

    metrics = mlflow_run(pipeline.name, alert).data.metrics
    assert metrics["holdout_roc_auc"] > metrics["champion_holdout_roc_auc"] + 0.002
    assert metrics["recent_roc_auc"] < metrics["champion_recent_roc_auc"]
    assert relative["candidate"] == pytest.approx(metrics["recent_roc_auc"])
    assert threshold["value"] == pytest.approx(metrics["holdout_roc_auc"])

    version = registry.client(load_settings()).get_model_version(pipeline.name, "4")
    assert version.tags["ctloop.gate"] == "rejected"
    assert version.tags["ctloop.gate_relative_on"] == "recent_holdout"
    assert "relative rules on the recent holdout" in version.tags["ctloop.gate_summary"]
    assert version.tags["ctloop.trigger"] == "alert"
