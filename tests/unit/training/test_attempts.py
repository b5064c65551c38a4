"""Attempts of a training run against a real MLflow store: a retry reuses, a re-run on other data
supersedes, and no version is left pending once its run is gone."""

from __future__ import annotations

import uuid

import pytest

from ctloop.errors import RunSuperseded
from ctloop.registry import challenger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training import attempts
from ctloop.training.steps import RunContext, finish
from tests.helpers import example_spec


class Store:
    """A fresh pipeline's experiment and registered model, and helpers to make attempts."""

    def __init__(self) -> None:
        self.name = f"att_{uuid.uuid4().hex[:8]}"
        self.settings = load_settings()
        self.client = registry.client(self.settings)
        self.experiment = registry.ensure_experiment(
            self.client, self.name, self.settings.mlflow_artifact_root
        )
        self.client.create_registered_model(self.name)
        self.run_key = f"{self.name}__train/manual__1"

    def attempt(self, data: str, spec: str = "spec-a") -> attempts.Attempt:
        run_tags = {tags.PIPELINE: self.name, tags.DATA_SHA256: data, tags.SPEC_SHA256: spec}
        return attempts.open_attempt(self.settings, self.client, self.experiment, self.run_key, run_tags)

    def register(self, run_id: str, gate: str = attempts.PENDING) -> str:
        created = self.client.create_model_version(
            self.name, source="/nowhere", run_id=run_id, tags={tags.RUN_KEY: self.run_key, tags.GATE: gate}
        )
        return str(created.version)

    def version_tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(self.name, version).tags


@pytest.fixture
def store() -> Store:
    return Store()


def test_a_retry_on_the_same_data_and_spec_reuses_the_run_and_its_version(store):
    first = store.attempt("sha-1")
    version = store.register(first.run_id)
    store.client.set_terminated(first.run_id, "FAILED")
    again = store.attempt("sha-1")
    assert (again.run_id, again.number, again.replaced) == (first.run_id, 1, None)
    assert store.client.get_run(first.run_id).info.status == "RUNNING"
    assert registry.version_of_run(store.client, store.name, store.run_key, again.run_id) == version


@pytest.mark.parametrize(
    ("data", "spec", "changed"), [("sha-2", "spec-a", "data_sha256"), ("sha-1", "spec-b", "spec_sha256")]
)
def test_a_rerun_on_other_data_or_spec_supersedes_and_abandons_the_pending_version(
    store, data, spec, changed
):
    first = store.attempt("sha-1")
    old = store.register(first.run_id)
    challenger.mark(store.settings, store.name, old)
    second = store.attempt(data, spec)
    assert (second.number, second.replaced) == (2, first.run_id)
    assert second.run_id != first.run_id
    earlier = store.client.get_run(first.run_id)
    assert earlier.info.status == "KILLED"
    assert (
        f"superseded by attempt 2 of the same Airflow run {store.run_key}"
        in earlier.data.tags[tags.SUPERSEDED_BY]
    )
    assert changed in earlier.data.tags[tags.SUPERSEDED_BY]
    new_run = store.client.get_run(second.run_id)
    assert new_run.data.tags[tags.ATTEMPT] == "2"
    assert new_run.data.tags[tags.RUN_KEY] == store.run_key
    old_tags = store.version_tags(old)
    assert old_tags[tags.GATE] == attempts.ABANDONED
    assert old_tags[tags.ABANDONED].startswith("abandoned: superseded by attempt 2")
    assert registry.get_alias(store.client, store.name, registry.CHALLENGER) is None
    assert registry.version_of_run(store.client, store.name, store.run_key, second.run_id) is None
    assert registry.version_of_run(store.client, store.name, store.run_key, first.run_id) == old
    with pytest.raises(
        RunSuperseded, match=f"v{old} will not be judged or promoted: superseded by attempt 2"
    ):
        attempts.take_up(store.client, store.name, old)
    assert store.attempt(data, spec).run_id == second.run_id  # and a retry of attempt 2 stays in it


def test_a_decided_attempt_keeps_its_verdict_when_superseded(store):
    first = store.attempt("sha-1")
    old = store.register(first.run_id, gate="rejected")
    store.client.set_tag(first.run_id, tags.PROMOTION, "not_promoted")
    store.client.set_terminated(first.run_id, "FINISHED")
    store.attempt("sha-2")
    assert store.client.get_run(first.run_id).info.status == "FINISHED"
    old_tags = store.version_tags(old)
    assert old_tags[tags.GATE] == "rejected"
    assert tags.ABANDONED not in old_tags
    assert "superseded by attempt 2" in old_tags[tags.SUPERSEDED_BY]


def test_the_champion_is_never_abandoned(store):
    first = store.attempt("sha-1")
    version = store.register(first.run_id)
    store.client.set_registered_model_alias(store.name, registry.CHAMPION, version)
    assert not attempts.abandon(store.settings, store.client, store.name, version, "abandoned: test")
    assert store.version_tags(version)[tags.GATE] == attempts.PENDING


def test_a_deleted_attempt_is_not_reused_and_numbering_goes_on(store):
    first = store.attempt("sha-1")
    store.client.delete_run(first.run_id)
    second = store.attempt("sha-1")
    assert second.run_id != first.run_id
    assert (second.number, second.replaced) == (2, None)


def test_orphans_are_abandoned_only_when_their_run_is_gone_or_ended(store):
    waiting = {}
    for status in ("RUNNING", "FINISHED", "FAILED", "KILLED", "deleted"):
        store.run_key = f"{store.name}__train/{status}"
        run_id = store.attempt("sha").run_id
        waiting[status] = store.register(run_id)
        if status == "deleted":
            store.client.delete_run(run_id)
        elif status != "RUNNING":
            store.client.set_terminated(run_id, status)
    assert set(attempts.settle_orphans(store.settings, store.client, store.name)) == {
        waiting["FAILED"],
        waiting["KILLED"],
        waiting["deleted"],
    }
    assert store.version_tags(waiting["deleted"])[tags.ABANDONED].endswith(
        "was deleted before its gate judged it"
    )
    assert "was killed before" in store.version_tags(waiting["KILLED"])[tags.ABANDONED]
    for status in ("RUNNING", "FINISHED"):
        assert store.version_tags(waiting[status])[tags.GATE] == attempts.PENDING


def test_take_up_lifts_an_abandonment_for_an_ended_run(store):
    version = store.register(store.attempt("sha-1").run_id)
    attempts.abandon(store.settings, store.client, store.name, version, "abandoned: its run failed")
    attempts.take_up(store.client, store.name, version)
    assert tags.ABANDONED not in store.version_tags(version)


def test_finish_of_a_run_that_failed_after_register_leaves_nothing_pending(store):
    spec = PipelineSpec.model_validate(example_spec(store.name, "data"))
    attempt = store.attempt("sha-1")
    version = store.register(attempt.run_id)
    dag_id, run_id = store.run_key.split("/")
    finish(
        spec, store.settings, RunContext(dag_id=dag_id, run_id=run_id, reason="test"), {"register": version}
    )
    assert store.client.get_run(attempt.run_id).info.status == "FAILED"
    version_tags = store.version_tags(version)
    assert version_tags[tags.GATE] == attempts.ABANDONED
    assert (
        f"its training run {store.run_key} failed before its gate judged it" in version_tags[tags.ABANDONED]
    )
