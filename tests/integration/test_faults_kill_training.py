"""A training run killed (``kill -9``) at the boundaries of register and gate, then retried; and two
trainings of one pipeline as two real processes at once.

Each run calls the steps the train DAG's tasks call (ctloop.training.steps), from register on in a
subprocess that ``CTLOOP_FAULT`` kills at one point, against this worker's MLflow store and SQLite
ledger. Like Airflow, a step's result is kept once the step succeeded (here a JSON file per task,
XCom's part), so the retry runs the killed step again with the same inputs and run key. After it,
the registry, the ledger and the version tags must agree: one version for the run key with every
tag, nothing pending once the run finished, and the next normal promotion recorded from the right
champion.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.registry import faults, ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training import attempts, steps
from tests.forked import Forked
from tests.helpers import example_spec

pytestmark = pytest.mark.integration


def run_steps(spec_file: Path, run_id: str, state: Path, through: str = "finish") -> dict[str, Any]:
    """Run one training from its start to the task ``through``, each step skipped when ``state``
    holds its result (what Airflow keeps of the tasks that succeeded); returns every step's result
    by task id."""
    spec = PipelineSpec.model_validate_json(spec_file.read_text())
    settings = load_settings()
    ctx = steps.RunContext(dag_id=f"{spec.name}__train", run_id=run_id, reason=run_id)
    state.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    tasks: dict[str, Callable[[], Any]] = {
        "snapshot": lambda: steps.start(spec, settings, ctx),
        "validate": lambda: steps.validate(spec, settings, ctx, results["snapshot"]),
        "train": lambda: steps.train(spec, settings, ctx, results["snapshot"]),
        "evaluate": lambda: steps.evaluate_models(spec, settings, ctx, results["train"]),
        "register": lambda: steps.register(
            spec, settings, ctx, results["snapshot"], results["train"], results["validate"]
        ),
        "gate": lambda: steps.gate(spec, settings, results["evaluate"], results["register"]),
        "promote": lambda: steps.promote_candidate(
            spec,
            settings,
            ctx,
            results["snapshot"],
            results["evaluate"],
            results["gate"],
            results["register"],
            None,
        ),
        "finish": lambda: steps.finish(spec, settings, ctx, dict(results)),
    }
    for task_id, call in tasks.items():
        saved = state / f"{task_id}.json"
        if not saved.exists():
            result = call()
            saved.write_text(
                json.dumps(result.model_dump(mode="json") if hasattr(result, "model_dump") else result)
            )
        results[task_id] = json.loads(saved.read_text())
        if task_id == through:
            break
    return results


def _start(spec_file: Path, run_id: str, state: Path, fault: str | None) -> Forked:
    """One training run in its own process, to be killed at ``fault``."""
    environ = {key: value for key, value in os.environ.items() if key != faults.ENV}
    if fault:
        environ[faults.ENV] = fault
    return Forked(run_steps, spec_file, run_id, state, environ=environ)


def small_pipeline(root: Path, *rules: dict[str, Any]) -> tuple[Path, str]:
    """A new pipeline on a few hundred example rows judged by ``rules``: (spec file, name)."""
    name = f"k{uuid.uuid4().hex[:10]}"
    write_batches(root / "data", range(2), rows=300)
    raw = example_spec(name, str(root / "data"))
    raw["gates"] = {"rules": [{"metric": "roc_auc", "at_least": 0.6}, *rules]}
    spec_file = root / "spec.json"
    spec_file.write_text(PipelineSpec.model_validate(raw).model_dump_json())
    return spec_file, name


def _versions(name: str) -> list[Any]:
    return registry.client(load_settings()).search_model_versions(f"name = '{name}'")


def moves_of(name: str) -> list[tuple[str, str | None, str]]:
    """Every ledger row of ``name`` in any state: (state, from, to)."""
    return [
        (r.state, r.from_version, r.to_version)
        for r in ledger.entries(load_settings(), name, every_state=True)
    ]


def champion_of(name: str) -> str | None:
    found = registry.get_champion(registry.client(load_settings()), name)
    return str(found.version) if found else None


def assert_settled(name: str, run_keys: list[str]) -> None:
    """One version per run key, and none still waiting for a gate."""
    found = _versions(name)
    assert sorted(v.tags[tags.RUN_KEY] for v in found) == sorted(run_keys)
    assert [v.version for v in found if v.tags.get(tags.GATE) == attempts.PENDING] == []


POINTS = [
    "register.before_version",
    "register.after_version",
    "gate.after_decision_logged",
]


@pytest.mark.parametrize("point", POINTS)
def test_a_training_killed_at_register_or_gate_is_completed_by_its_retry(tmp_path: Path, point: str) -> None:
    spec_file, name = small_pipeline(tmp_path)
    run_key = f"{name}__train/manual__killed"
    # the tasks before register succeeded (in Airflow each is a process of its own); the run's
    # process is killed from register on
    run_steps(spec_file, "manual__killed", tmp_path / "killed", through="evaluate")
    killed = _start(spec_file, "manual__killed", tmp_path / "killed", point)
    stdout, stderr = killed.communicate(timeout=300)
    assert killed.returncode == faults.KILLED_EXIT_CODE, stderr[-3000:]
    left = _versions(name)
    assert len(left) == (0 if point == "register.before_version" else 1)
    if left:  # created with all its evidence in one call, or not at all
        assert left[0].tags[tags.GATE] == attempts.PENDING
        assert left[0].tags[tags.DATA_SHA256]
    assert moves_of(name) == []
    assert champion_of(name) is None

    retried = run_steps(spec_file, "manual__killed", tmp_path / "killed")  # same run key, same inputs
    (version,) = _versions(name)
    assert str(version.version) == retried["register"]
    written = version.tags
    assert written[tags.RUN_KEY] == run_key
    assert written[tags.MODEL_SHA256] == retried["train"]["model"]["sha256"]
    assert written[tags.DATA_SHA256] == retried["snapshot"]["snapshot"]["sha256"]
    assert written[tags.VALIDATION] == "passed"
    assert (written[tags.GATE], written[tags.GATE_SUMMARY]) == ("passed", retried["gate"]["summary"])
    assert f"{tags.VERSION_METRIC_PREFIX}{tags.HOLDOUT_METRIC_PREFIX}roc_auc" in written
    assert written[tags.PROMOTION].startswith("promot")
    assert retried["promote"]["action"] == "promoted"
    assert retried["finish"]["outcome"] == "promoted"
    assert moves_of(name) == [("done", None, retried["register"])]
    assert champion_of(name) == retried["register"]
    assert_settled(name, [run_key])

    following = run_steps(spec_file, "manual__next", tmp_path / "next")
    assert (following["promote"]["action"], following["promote"]["previous"]) == (
        "promoted",
        retried["register"],
    )
    assert moves_of(name) == [
        ("done", None, retried["register"]),
        ("done", retried["register"], following["register"]),
    ]
    assert champion_of(name) == following["register"]
    assert_settled(name, [run_key, f"{name}__train/manual__next"])


def test_two_trainings_of_one_pipeline_at_once_move_the_champion_once(tmp_path: Path) -> None:
    """Same data, same model: whichever promotes first, the other does not beat it, on its gate
    (the champion was there when it evaluated) or on the re-evaluation at promotion."""
    spec_file, name = small_pipeline(tmp_path, {"metric": "roc_auc", "min_improvement": 0.002})
    racing = {who: _start(spec_file, f"manual__{who}", tmp_path / who, None) for who in "ab"}
    for process in racing.values():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    results = {
        who: {p.stem: json.loads(p.read_text()) for p in (tmp_path / who).glob("*.json")} for who in racing
    }
    (winner,) = [r for r in results.values() if r["promote"]["action"] == "promoted"]
    (loser,) = [r for r in results.values() if r is not winner]
    assert loser["promote"]["action"] in ("not_promoted", "rejected_after_reevaluation"), loser["promote"]
    assert loser["finish"]["outcome"] == "rejected"
    assert champion_of(name) == winner["register"] != loser["register"]
    assert moves_of(name) == [("done", None, winner["register"])]
    client = registry.client(load_settings())
    run = client.get_run(loser["snapshot"]["mlflow_run_id"])
    assert run.data.tags[tags.PROMOTION] == loser["promote"]["action"]
    assert_settled(name, [f"{name}__train/manual__{who}" for who in racing])
