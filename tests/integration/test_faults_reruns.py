"""Re-runs of a training run (Airflow's "clear": the same run id, so the same run key) after it
died or failed, through ``dag.test()`` and a real MLflow registry: each either completes as a new
attempt or is judged and closed, and no version is left pending.

A task is killed by making its step raise (the task fails at once, as a killed worker's task is
failed); a kill of the whole run also makes the last task, which would record the outcome, die.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ctloop.errors import CtloopError, RollbackRefused, RunSuperseded
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.rollback import rollback
from ctloop.settings import load_settings
from ctloop.training import attempts, steps
from tests.helpers import REPO
from tests.integration.conftest import champion_version, run_dag, task_states

pytestmark = pytest.mark.integration


class Killed(CtloopError):
    """The fault injected into a step: a CtloopError, so Airflow fails the task without retries."""


def run_as(dag_id: str, when: datetime, **conf):
    """Run ``dag_id`` as the Airflow run of ``when``: calling it again with the same ``when`` clears
    and re-runs that run under the same run id, as Airflow's "clear" does."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert dag_id in bag.dags, bag.import_errors
    return bag.dags[dag_id].test(logical_date=when, run_after=when, run_conf=conf or None)


def kill(monkeypatch, *step_names: str) -> None:
    """Make each named training step die when its task runs."""
    for step_name in step_names:

        def die(*args, _name=step_name, **kwargs):
            raise Killed(f"fault injected: {_name} killed")

        monkeypatch.setattr(steps, step_name, die)


def client():
    return registry.client(load_settings())


def runs_of(pipeline, dag_run) -> list:
    """Every MLflow run (attempt) of an Airflow run, oldest attempt first."""
    from mlflow.entities import ViewType

    experiment = client().get_experiment_by_name(pipeline.name)
    key = f"{dag_run.dag_id}/{dag_run.run_id}"
    found = client().search_runs(
        [experiment.experiment_id], f"tags.`{tags.RUN_KEY}` = '{key}'", run_view_type=ViewType.ALL
    )
    return sorted(found, key=attempts.number)


def version_tags(pipeline, version: str) -> dict[str, str]:
    return client().get_model_version(pipeline.name, version).tags


def request_of(pipeline, dag_run) -> dict:
    key = f"{dag_run.dag_id}/{dag_run.run_id}"
    requests = retrain_requests.all_requests(home_storage(load_settings()), pipeline.name)
    (mine,) = [r for r in requests if r["claimed_by"] == key]
    return mine


def assert_nothing_pending(pipeline) -> None:
    for version in client().search_model_versions(f"name = '{pipeline.name}'"):
        assert version.tags[tags.GATE] != attempts.PENDING, f"v{version.version} is still pending"


def test_killed_after_register_and_rerun_on_new_data_completes_as_a_new_attempt(pipeline, monkeypatch):
    pipeline.add_batches(3)
    when = datetime.now(UTC).replace(microsecond=0)
    with monkeypatch.context() as faults:
        kill(faults, "gate", "finish")  # the whole run dies once its version is registered
        first = run_as(pipeline.dag_id, when, reason="first attempt")
    assert task_states(first)["register"] == "success"
    assert version_tags(pipeline, "1")[tags.GATE] == attempts.PENDING

    pipeline.add_batches(1)  # new data arrives; then the operator clears the run
    again = run_as(pipeline.dag_id, when, reason="first attempt")
    assert again.run_id == first.run_id
    assert set(task_states(again).values()) == {"success"}

    (old_run, new_run) = runs_of(pipeline, again)
    assert (attempts.number(old_run), attempts.number(new_run)) == (1, 2)
    assert old_run.info.status == "KILLED"
    superseded = old_run.data.tags[tags.SUPERSEDED_BY]
    assert f"superseded by attempt 2 of the same Airflow run {pipeline.dag_id}/{first.run_id}" in superseded
    assert "data_sha256" in superseded
    assert new_run.data.tags[tags.DATA_SHA256] != old_run.data.tags[tags.DATA_SHA256]
    assert int(new_run.data.params["train_rows"]) > int(old_run.data.params["train_rows"])
    assert new_run.data.tags[tags.PROMOTION] == "promoted"

    assert champion_version(pipeline.name) == "2"
    old = version_tags(pipeline, "1")
    assert old[tags.GATE] == attempts.ABANDONED
    assert old[tags.ABANDONED].startswith("abandoned: superseded by attempt 2")
    assert version_tags(pipeline, "2")[tags.ATTEMPT] == "2"
    assert_nothing_pending(pipeline)
    with pytest.raises(RollbackRefused, match="never passed its promotion gates"):
        rollback(load_settings(), pipeline.name, target="1", reason="try the abandoned one")
    with pytest.raises(RunSuperseded, match="will not be judged or promoted"):
        attempts.take_up(client(), pipeline.name, "1")
    moves = ledger.entries(load_settings(), pipeline.name)
    assert [(m.from_version, m.to_version) for m in moves] == [(None, "2")]
    closed = request_of(pipeline, again)
    assert (closed["state"], closed["outcome"], closed["version"]) == ("closed", "promoted", "2")


def test_failed_after_register_leaves_no_pending_version_and_a_retry_takes_it_up(
    pipeline, monkeypatch, capsys
):
    pipeline.add_batches(3)
    when = datetime.now(UTC).replace(microsecond=0)
    with monkeypatch.context() as faults:
        kill(faults, "gate")  # the gate task fails; the run's last task still closes it
        first = run_as(pipeline.dag_id, when, reason="gate fails once")
    states = task_states(first)
    assert (states["gate"], states["record_outcome"]) == ("failed", "failed")
    assert "fault injected: gate killed" in capsys.readouterr().out
    (run,) = runs_of(pipeline, first)
    assert run.info.status == "FAILED"
    abandoned = version_tags(pipeline, "1")
    assert abandoned[tags.GATE] == attempts.ABANDONED
    assert "failed before its gate judged it; clear the run's failed tasks" in abandoned[tags.ABANDONED]
    assert request_of(pipeline, first)["outcome"] == "failed"

    again = run_as(pipeline.dag_id, when, reason="gate fails once")  # same data: a plain retry
    assert set(task_states(again).values()) == {"success"}
    (rerun,) = runs_of(pipeline, again)
    assert rerun.info.run_id == run.info.run_id
    taken_up = version_tags(pipeline, "1")
    assert taken_up[tags.GATE] == "passed"
    assert tags.ABANDONED not in taken_up
    assert champion_version(pipeline.name) == "1"
    assert len(client().search_model_versions(f"name = '{pipeline.name}'")) == 1
    assert request_of(pipeline, again)["outcome"] == "promoted"


def test_old_run_rerun_after_a_newer_champion_is_judged_against_that_champion(pipeline, monkeypatch):
    """Chosen behaviour: a re-run on the same data goes on in its own MLflow run and version, and its
    evaluation and gate compare it with the champion of the moment, naming it; it never replaces a
    newer champion without beating it."""
    pipeline.add_batches(3)
    old_when = datetime.now(UTC).replace(microsecond=0)
    with monkeypatch.context() as faults:
        kill(faults, "gate", "finish")
        old = run_as(pipeline.dag_id, old_when, reason="old run")
    assert version_tags(pipeline, "1")[tags.GATE] == attempts.PENDING

    newer = run_dag(pipeline.dag_id, reason="newer run")
    assert champion_version(pipeline.name) == "2"
    assert version_tags(pipeline, "1")[tags.GATE] == attempts.PENDING  # its run is not over: left alone

    again = run_as(pipeline.dag_id, old_when, reason="old run")
    assert again.run_id == old.run_id != newer.run_id
    states = task_states(again)
    assert (states["gate"], states["promote"], states["record_outcome"]) == ("success", "skipped", "success")
    assert champion_version(pipeline.name) == "2"
    judged = version_tags(pipeline, "1")
    assert judged[tags.GATE] == "rejected"
    assert "against champion v2" in judged[tags.GATE_SUMMARY]
    (run,) = runs_of(pipeline, again)
    assert run.data.tags[tags.PROMOTION] == "not_promoted"
    assert_nothing_pending(pipeline)
    assert request_of(pipeline, again)["outcome"] == "rejected"
    assert [m.to_version for m in ledger.entries(load_settings(), pipeline.name)] == ["2"]


def test_two_trainings_of_one_pipeline_at_once_leave_registry_ledger_and_requests_agreeing(pipeline):
    """Two runs interleaved step by step (the steps the train DAG's tasks call, in one process):
    the second one's start and finish leave the first one's waiting version alone, the later
    promotion is judged again against the champion the other made, and everything agrees after."""
    from ctloop.spec.models import PipelineSpec

    pipeline.add_batches(3)
    spec, settings = PipelineSpec.model_validate(pipeline.spec), load_settings()
    a, b = (steps.RunContext(dag_id=pipeline.dag_id, run_id=f"manual__{who}", reason=who) for who in "ab")
    started_a, started_b = steps.start(spec, settings, a), steps.start(spec, settings, b)

    def up_to_register(ctx, started):
        validated = steps.validate(spec, settings, ctx, started)
        trained = steps.train(spec, settings, ctx, started)
        evaluation = steps.evaluate_models(spec, settings, ctx, trained)
        return evaluation, steps.register(spec, settings, ctx, started, trained, validated)

    def decide(ctx, started, evaluation, version):
        decision = steps.gate(spec, settings, evaluation, version)
        outcome = steps.promote_candidate(spec, settings, ctx, started, evaluation, decision, version, None)
        results = {"snapshot": started, "register": version, "gate": decision}
        return outcome, steps.finish(spec, settings, ctx, {**results, "promote": outcome})

    evaluation_a, version_a = up_to_register(a, started_a)
    evaluation_b, version_b = up_to_register(b, started_b)
    assert (evaluation_a.champion_version, evaluation_b.champion_version) == (None, None)
    outcome_b, closed_b = decide(b, started_b, evaluation_b, version_b)
    assert outcome_b.action == "promoted"
    assert version_tags(pipeline, version_a)[tags.GATE] == attempts.PENDING  # a is still working
    outcome_a, closed_a = decide(a, started_a, evaluation_a, version_a)

    # same data, same model: a does not beat the champion b made meanwhile, and is told so
    assert outcome_a.action == "rejected_after_reevaluation"
    assert f"champion moved from none to v{version_b}; re-decided: roc_auc min_improvement" in outcome_a.why
    assert champion_version(pipeline.name) == version_b
    assert [(m.from_version, m.to_version) for m in ledger.entries(settings, pipeline.name)] == [
        (None, version_b)
    ]
    assert (closed_a.outcome, closed_a.version) == ("rejected", version_a)
    assert (closed_b.outcome, closed_b.version) == ("promoted", version_b)
    assert_nothing_pending(pipeline)
