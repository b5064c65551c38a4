"""Rolling the champion back, against a real MLflow registry and the ledger (SQLite, this test's own)."""

from __future__ import annotations

import uuid

import pytest

from ctloop.errors import RollbackRefused
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.rollback import rollback
from ctloop.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    """This worker's MLflow registry, and a ctloop database of this test's own."""
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


@pytest.fixture
def pipeline(settings, tmp_path):
    """A registered model with three versions; v1 and v2 passed their gates, v3 was rejected."""
    client = registry.client(settings)
    name = f"r{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    for gate in ("passed", "passed", "rejected"):
        version = client.create_model_version(name, source=str(tmp_path), run_id=None)
        for key, value in {
            tags.GATE: gate,
            tags.GATE_SUMMARY: f"gate {gate}",
            tags.DATA_SHA256: f"sha-of-v{version.version}",
            tags.SUITE_KEY: f"suites/v{version.version}.json",
            tags.MODEL_SHA256: f"digest-of-v{version.version}",
        }.items():
            client.set_model_version_tag(name, version.version, key, value)
    return name


def _promote(settings, name, to, expected_from):
    moved = ledger.move_alias(
        settings,
        registry.client(settings),
        name,
        to,
        expected_from=expected_from,
        action="promotion",
        reason="t",
    )
    assert moved.moved


def _champion(settings, name):
    found = registry.get_champion(registry.client(settings), name)
    return str(found.version) if found else None


def _refused(settings, name, match, **kwargs):
    """Assert the rollback is refused naming ``match``, and that it changed nothing."""
    before = (_champion(settings, name), ledger.entries(settings, name))
    with pytest.raises(RollbackRefused, match=match):
        rollback(settings, name, **{"reason": "bad model", **kwargs})
    assert _champion(settings, name) == before[0]
    assert ledger.entries(settings, name) == before[1]


def test_rolls_back_to_the_previous_champion_and_records_it(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _promote(settings, pipeline, "2", "1")
    outcome = rollback(settings, pipeline, target="previous", reason="v2 misbehaves", user="cli:alice")
    assert (outcome.action, outcome.moved, outcome.from_version, outcome.to, outcome.seq) == (
        "rollback",
        True,
        "2",
        "1",
        3,
    )
    assert outcome.evidence == {
        "reference_snapshot_sha256": "sha-of-v1",
        "expectation_suite": "suites/v1.json",
        "mlflow_run_id": "",
    }
    assert _champion(settings, pipeline) == "1"
    last = ledger.entries(settings, pipeline)[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert (last.reason, last.user, last.gate_decision) == ("v2 misbehaves", "cli:alice", "gate passed")
    assert outcome.model_dump(mode="json")["from"] == "2"  # the JSON the DAG returns keeps its keys


def test_rolls_back_to_a_named_version(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _promote(settings, pipeline, "2", "1")
    outcome = rollback(settings, pipeline, target="1", reason="back to the first")
    assert (outcome.from_version, outcome.to) == ("2", "1")
    assert _champion(settings, pipeline) == "1"


def test_refuses_a_version_that_does_not_exist(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _refused(settings, pipeline, f"{pipeline} has no version 99", target="99")
    _refused(settings, pipeline, "neither 'previous' nor a version number", target="latest")


def test_refuses_when_there_is_no_previous_champion(settings, pipeline):
    _refused(settings, pipeline, "no champion to roll back from", target="previous")
    _promote(settings, pipeline, "1", None)
    _refused(settings, pipeline, "v1 has no previous champion", target="previous")
    _refused(settings, pipeline, "v1 is already the champion", target="1")


def test_refuses_a_rollback_without_a_reason(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _promote(settings, pipeline, "2", "1")
    _refused(settings, pipeline, "a rollback needs a reason", target="previous", reason="  ")


def test_a_never_gated_target_is_refused_unless_forced(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _refused(settings, pipeline, r"v3 never passed its promotion gates \(ctloop.gate: rejected\)", target="3")
    outcome = rollback(settings, pipeline, target="3", reason="only v3 reads the new schema", force=True)
    assert (outcome.action, outcome.to) == ("override", "3")
    assert _champion(settings, pipeline) == "3"
    last = ledger.entries(settings, pipeline)[-1]
    assert last.action == "override"
    assert last.reason.startswith("only v3 reads the new schema (forced: v3 never passed")


def test_a_target_without_a_model_digest_is_refused_even_when_forced(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    registry.client(settings).delete_model_version_tag(pipeline, "2", tags.MODEL_SHA256)
    _refused(settings, pipeline, "v2: no model digest was recorded", target="2")
    _refused(settings, pipeline, "v2: no model digest was recorded", target="2", force=True)


def test_a_target_a_person_rejected_is_refused(settings, pipeline):
    _promote(settings, pipeline, "1", None)
    _promote(settings, pipeline, "2", "1")
    registry.client(settings).set_model_version_tag(pipeline, "1", tags.APPROVAL, "rejected")
    _refused(settings, pipeline, "v1 passed its gates but its approval was rejected", target="previous")
