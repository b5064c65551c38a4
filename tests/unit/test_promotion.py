"""Compare-and-set promotion against a real MLflow registry (SQLite, this worker's home)."""

from __future__ import annotations

import uuid

import pytest

from ctloop import registry
from ctloop.datagen import generate_batch
from ctloop.promotion import promote
from ctloop.settings import load_settings
from ctloop.spec import PipelineSpec
from ctloop.training import features, fit
from tests.helpers import example_spec


@pytest.fixture(scope="module")
def logged_model():
    settings = load_settings()
    client = registry.client(settings)
    spec = PipelineSpec.model_validate(example_spec("t", "data"))
    frame = generate_batch(500, seed=5)
    model = fit(spec, frame)
    experiment = registry.ensure_experiment(
        client, f"exp_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, "dag/run", {})
    return {
        "run_id": run_id,
        "model": registry.log_model(model, features(frame, spec), run_id),
        "frame": frame,
    }


@pytest.fixture
def name():
    return f"model_{uuid.uuid4().hex[:8]}"


def _register(name, logged, run_key):
    return registry.register_version(
        registry.client(load_settings()),
        name,
        logged["model"],
        logged["run_id"],
        run_key,
        {"ctloop.gate": "passed"},
    ).version


def test_run_and_version_are_created_once_per_run_key(logged_model, name):
    client = registry.client(load_settings())
    run = client.get_run(logged_model["run_id"])
    assert registry.ensure_run(client, run.info.experiment_id, "dag/run", {}) == logged_model["run_id"]
    first = _register(name, logged_model, "dag/run-1")
    assert _register(name, logged_model, "dag/run-1") == first
    assert _register(name, logged_model, "dag/run-2") != first
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_logged_model_loads_and_refuses_a_changed_checksum(logged_model):
    model = registry.load_model(
        load_settings(), logged_model["model"]["model_uri"], logged_model["model"]["sha256"]
    )
    assert model.predict_proba(logged_model["frame"]).shape[0] == 500
    with pytest.raises(Exception, match="checksum differs"):
        registry.load_model(load_settings(), logged_model["model"]["model_uri"], "0" * 64)


def _decision(promote_ok=True, against=None):
    return {
        "promote": promote_ok,
        "passed": promote_ok,
        "champion_version": against,
        "failed": [] if promote_ok else ["roc_auc worse"],
    }


def test_promotes_when_the_champion_is_as_evaluated(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1 = _register(name, logged_model, "r1")
    outcome = promote(
        client,
        settings,
        name,
        str(v1),
        _decision(),
        reevaluate=lambda champion: pytest.fail("no re-evaluation"),
    )
    assert outcome["action"] == "promoted"
    assert str(registry.get_champion(client, name).version) == str(v1)
    # a retried promote task is a no-op
    assert (
        promote(client, settings, name, str(v1), _decision(), lambda c: pytest.fail())["action"]
        == "already_champion"
    )


def test_reevaluates_when_the_champion_moved_and_keeps_the_better(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1, v2, v3 = (str(_register(name, logged_model, f"r{i}")) for i in range(3))
    promote(client, settings, name, v1, _decision(), lambda c: pytest.fail())
    # v2 and v3 were both evaluated against v1; v2 is promoted first
    assert (
        promote(client, settings, name, v2, _decision(against=v1), lambda c: pytest.fail())["action"]
        == "promoted"
    )
    seen = []

    def reevaluate(champion):
        seen.append(str(champion.version))
        return _decision(promote_ok=False, against=str(champion.version))

    outcome = promote(client, settings, name, v3, _decision(against=v1), reevaluate)
    assert seen == [v2]
    assert outcome["action"] == "rejected_after_reevaluation"
    assert f"champion moved from {v1} to {v2}" in outcome["why"]
    assert str(registry.get_champion(client, name).version) == v2
    assert client.get_model_version(name, v2).tags["ctloop.previous_champion"] == v1
