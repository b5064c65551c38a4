"""Compare-and-set promotion against a real MLflow registry and the ledger (SQLite, this worker's home)."""

from __future__ import annotations

import uuid

import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.gating.decision import GateDecision
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.registry.promotion import PromotionResult, primary_comparison, promote
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import features, fit
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
        load_settings(), logged_model["model"].model_uri, logged_model["model"].sha256
    )
    assert model.predict_proba(logged_model["frame"]).shape[0] == 500
    with pytest.raises(Exception, match="checksum differs"):
        registry.load_model(load_settings(), logged_model["model"].model_uri, "0" * 64)


def _decision(promote_ok=True, against=None, primary=None) -> GateDecision:
    """A gate decision as ``promote`` reads it; ``primary`` as a re-evaluation returns it."""
    decision = {
        "mode": "enabled",
        "rules": [],
        "promote": promote_ok,
        "passed": promote_ok,
        "champion_version": against,
        "failed": [] if promote_ok else ["roc_auc worse"],
        "summary": "gate passed" if promote_ok else "gate rejected: roc_auc worse",
    }
    return GateDecision.model_validate(decision if primary is None else {**decision, "primary": primary})


def test_promotes_when_the_champion_is_as_evaluated_and_records_it(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1 = str(_register(name, logged_model, "r1"))
    outcome = promote(
        client,
        settings,
        name,
        v1,
        _decision(),
        reevaluate=lambda champion: pytest.fail("no re-evaluation"),
        reason="schedule",
        run_key="p__train/r1",
        mlflow_run_id=logged_model["run_id"],
        evidence={"holdout": "runs/r1/holdout.parquet"},
    )
    assert (outcome.action, outcome.previous, outcome.seq) == ("promoted", None, 1)
    assert str(registry.get_champion(client, name).version) == v1
    tags = client.get_model_version(name, v1).tags
    assert (
        tags["ctloop.promotion"],
        tags["ctloop.previous_champion"],
        tags["ctloop.ledger_seq"],
    ) == (
        "promoted",
        "none",
        "1",
    )
    (entry,) = ledger.entries(settings, name)
    assert (entry.action, entry.from_version, entry.to_version) == ("promotion", None, v1)
    assert (entry.reason, entry.run_key, entry.mlflow_run_id) == (
        "schedule",
        "p__train/r1",
        logged_model["run_id"],
    )
    assert (entry.gate_decision, entry.evidence) == ("gate passed", {"holdout": "runs/r1/holdout.parquet"})
    # a retried promote task is a no-op, in the registry and in the ledger
    again = promote(client, settings, name, v1, _decision(), lambda c: pytest.fail("must not re-evaluate"))
    assert (again.action, again.seq) == ("already_champion", None)
    assert len(ledger.entries(settings, name)) == 1


def test_reevaluates_when_the_champion_moved_and_keeps_the_better(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1, v2, v3 = (str(_register(name, logged_model, f"r{i}")) for i in range(3))
    promote(client, settings, name, v1, _decision(), lambda c: pytest.fail("must not re-evaluate"))
    # v2 and v3 were both evaluated against v1; v2 is promoted first
    assert (
        promote(
            client, settings, name, v2, _decision(against=v1), lambda c: pytest.fail("must not re-evaluate")
        ).action
        == "promoted"
    )
    seen = []

    def reevaluate(champion):
        seen.append(str(champion.version))
        return _decision(promote_ok=False, against=str(champion.version))

    outcome = promote(client, settings, name, v3, _decision(against=v1), reevaluate)
    assert seen == [v2]
    assert outcome.action == "rejected_after_reevaluation"
    assert outcome.decision.champion_version == v2
    assert f"champion moved from v{v1} to v{v2}" in outcome.why
    assert "roc_auc worse" in outcome.why
    assert str(registry.get_champion(client, name).version) == v2
    assert client.get_model_version(name, v2).tags["ctloop.previous_champion"] == v1
    assert [(e.from_version, e.to_version) for e in ledger.entries(settings, name)] == [(None, v1), (v1, v2)]


@pytest.mark.parametrize(
    ("task", "metric", "good", "better"),
    [("classification", "roc_auc", 0.75, 0.80), ("regression", "rmse", 10.0, 8.0)],
)
@pytest.mark.parametrize("better_first", [True, False])
def test_the_better_of_two_passing_candidates_wins_in_either_order(
    logged_model, name, task, metric, good, better, better_first
):
    """Both pass gates without any relative rule, against v1 and again against each other: only
    the primary metric tells them apart, so the worse one must not replace the better one."""
    settings, client = load_settings(), registry.client(load_settings())
    v1, v_good, v_better = (str(_register(name, logged_model, f"r{i}")) for i in range(3))
    value = {v1: 0.70 if metric == "roc_auc" else 12.0, v_good: good, v_better: better}
    promote(client, settings, name, v1, _decision(), lambda c: pytest.fail("must not re-evaluate"))

    def candidate(version):
        def reevaluate(champion):
            champion_metrics = {metric: value[str(champion.version)]}
            primary = primary_comparison(task, metric, {metric: value[version]}, champion_metrics)
            return _decision(against=str(champion.version), primary=primary)

        return promote(client, settings, name, version, _decision(against=v1), reevaluate)

    order = [v_better, v_good] if better_first else [v_good, v_better]
    first, second = (candidate(v) for v in order)
    assert first.action == "promoted"
    if better_first:
        assert second.action == "rejected_after_reevaluation"
        assert f"{metric} {good:.4f} does not beat the champion's {better:.4f}" in second.why
    else:
        assert second.action == "promoted_after_reevaluation"
        assert second.previous == v_good
    assert str(registry.get_champion(client, name).version) == v_better
    moves = [(e.from_version, e.to_version) for e in ledger.entries(settings, name)]
    assert moves[-1] == ((v_good if not better_first else v1), v_better)


def test_a_tie_keeps_the_new_champion(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1, v2, v3 = (str(_register(name, logged_model, f"r{i}")) for i in range(3))
    promote(client, settings, name, v1, _decision(), lambda c: pytest.fail("must not re-evaluate"))
    promote(client, settings, name, v2, _decision(against=v1), lambda c: pytest.fail("must not re-evaluate"))
    tie = primary_comparison("classification", "roc_auc", {"roc_auc": 0.8}, {"roc_auc": 0.8})
    outcome = promote(
        client, settings, name, v3, _decision(against=v1), lambda c: _decision(against=v2, primary=tie)
    )
    assert outcome.action == "rejected_after_reevaluation"
    assert str(registry.get_champion(client, name).version) == v2


def test_a_reevaluation_without_the_primary_comparison_is_an_error(logged_model, name):
    settings, client = load_settings(), registry.client(load_settings())
    v1, v2, v3 = (str(_register(name, logged_model, f"r{i}")) for i in range(3))
    promote(client, settings, name, v1, _decision(), lambda c: pytest.fail("must not re-evaluate"))
    promote(client, settings, name, v2, _decision(against=v1), lambda c: pytest.fail("must not re-evaluate"))
    with pytest.raises(ValueError, match="reevaluate must return 'primary'"):
        promote(client, settings, name, v3, _decision(against=v1), lambda c: _decision(against=v2))
    assert str(registry.get_champion(client, name).version) == v2
    assert len(ledger.entries(settings, name)) == 2


@pytest.mark.parametrize(
    ("action", "turned_down"),
    [
        ("promoted", False),
        ("promoted_after_reevaluation", False),
        ("already_champion", False),
        ("not_promoted", True),
        ("rejected_after_reevaluation", True),
    ],
)
def test_turned_down_names_the_actions_the_promote_task_skips(action, turned_down):
    assert PromotionResult(action=action, version="3", why="").turned_down is turned_down
