"""The README's first command, end to end, in a fresh CTLOOP_HOME (smaller batches for speed).

It starts the real Airflow components (api-server, scheduler, dag-processor), so the retrainings
are started by the scheduler on the monitor's asset events, not by the test. The recovery from
concept drift is checked on what the loop recorded (monitor history, MLflow tags, the ledger, the
prediction log), not only on the printed timeline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]


def _rows(out: str, marker: str) -> list[str]:
    return [line for line in out.splitlines() if marker in line]


def _history(settings) -> list[dict]:
    from ctloop.io.storage import home_storage
    from ctloop.monitoring.monitor_run import history_prefix

    storage = home_storage(settings)
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix("churn"))]


def _scored_by(settings, batch_id: str) -> str:
    from ctloop.scoring.prediction_log import PREDICTIONS, read_partitions

    (version,) = (
        read_partitions(PREDICTIONS, "churn", [batch_id], settings)["model_version"].astype(str).unique()
    )
    return version


@dataclass(frozen=True)
class DemoRun:
    out: str
    env: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    """One demo for the module's tests: it takes minutes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "CTLOOP"))}
    home = tmp_path_factory.mktemp("demo") / "home"
    env["CTLOOP_HOME"] = str(home)
    ctloop = Path(sys.executable).with_name("ctloop")
    result = subprocess.run(
        [str(ctloop), "demo", "--rows", "1500"], env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return DemoRun(result.stdout, env, home)


def test_demo_runs_the_whole_loop_and_retrains_on_drift_by_itself(demo):
    out, home = demo.out, demo.home

    first = _rows(out, "(started when the DAG appeared)") or _rows(out, "first training ")
    assert len(first) == 1, out
    assert " v1 " in first[0], out
    assert "promoted: gate passed" in first[0], out
    stable = _rows(out, "(stable)")
    assert len(stable) == 3, stable
    assert all("hold: no trigger crossed" in row for row in stable), stable
    assert all(" 0.00 " in row for row in stable)  # no feature drifted on stable data
    shifted = _rows(out, "(shifted)")
    assert "hold: 1 of the last 3 windows alerted; retrain.k_of_n needs 2 of 3" in shifted[0]
    assert "retrain: confirmed alert" in shifted[1]
    lines = out.splitlines()
    retrain = next(
        i for i, line in enumerate(lines) if "retrain (started by the monitor's asset event)" in line
    )
    assert re.search(r"trains on (\S+): \1 scored roc_auc", lines[retrain]), lines[retrain]  # its window
    gate = lines[retrain + 1]
    assert "gate and promotion (relative rules on the recent holdout)" in gate, gate
    assert re.search(r"(promoted|not_promoted): gate (passed|rejected)", gate), gate
    assert len(shifted) == 3, "the demo shows one more shifted batch after the retrain"
    assert all(re.search(r"\s0\.\d{3}\s+v\d+\s", row) for row in stable + shifted)  # served, scored by

    # The retraining's MLflow run records the monitor's reason and the report that asked for it.
    retrain_record = out.split("churn__train / asset_triggered__")[1]
    assert "reason      drift share" in retrain_record
    report = Path(re.search(r"reports\s+(\S+report\.html)", retrain_record).group(1))
    assert report.is_file()
    assert "evidently" in report.read_text().lower()
    assert (report.parent / "summary.json").is_file()
    assert "make airflow" in out
    assert "make mlflow-ui" in out
    assert (home / "mlflow.db").exists()
    assert (home / "airflow" / "airflow.db").exists()


def _concept_phase(demo: DemoRun):
    """The concept batches' ids, the settings of the demo's home and its spec."""
    from ctloop.settings import load_settings
    from ctloop.spec.loading import load_spec

    settings = load_settings(demo.env)
    concept = [row.split()[0] for row in _rows(demo.out, "(concept drift)")]
    assert len(concept) >= 3, demo.out
    return concept, settings, load_spec(settings.pipelines_dir / "churn.yaml")


def _concept_runs(demo: DemoRun, settings) -> list:
    """The MLflow runs of the retrains the quality drop started, in order."""
    from ctloop.devtools.demo import training_run
    from ctloop.registry import tags as names

    run_ids = re.findall(r"churn__train / (asset_triggered__\S+)", demo.out)
    runs = [training_run(settings, run_id) for run_id in run_ids]
    dropped = "worse than the champion's holdout"  # the quality trigger's words (drift may ride along)
    concept_runs = [r for r in runs if dropped in r.data.tags[names.REASON]]
    assert concept_runs, [r.data.tags[names.REASON] for r in runs]
    return concept_runs


def test_concept_drift_retrains_at_once_on_a_chosen_window_judged_on_the_recent_holdout(demo):
    """The first labels of a changed batch make the monitor retrain at once (severe drop: no k-of-n,
    no cooldown), and every retrain it starts chooses its window and is judged on the recent holdout."""
    from ctloop.devtools.demo import served
    from ctloop.registry import tags as names

    concept, settings, spec = _concept_phase(demo)
    before = served(spec, settings, concept[0])
    assert before is not None
    assert before["accuracy"] < 0.6, before  # the champion on the new concept
    # the monitor run after the first changed batch's labels arrived (the second one scored)
    confirmed = next(e for e in _history(settings) if e["batches"][-1] == concept[1])
    assert confirmed["action"] == "retrain", confirmed
    assert confirmed["why"].startswith("severe quality drop: roc_auc "), confirmed
    assert confirmed["why"].endswith("k-of-n and cooldown bypassed"), confirmed
    for run in _concept_runs(demo, settings):
        assert run.data.tags[names.TRIGGER] == "asset"
        choice = json.loads(run.data.tags[names.WINDOW_SELECTION])
        assert {c["window"] for c in choice["candidates"]} >= {"all", "batches:1", "batches:2"}, choice
        assert run.data.tags[names.DATA_WINDOW] == choice["chosen"]
        assert run.data.tags[names.GATE_RELATIVE_ON] == "recent_holdout", run.data.tags
        assert f"trains on {choice['chosen']}: {choice['why']}" in demo.out


def test_concept_drift_recovers_the_served_accuracy(demo):
    """A concept retrain is promoted through the ledger and the next batch is served better."""
    from ctloop.devtools.demo import served
    from ctloop.registry import ledger
    from ctloop.registry import mlflow_store as registry
    from ctloop.registry import tags as names

    concept, settings, spec = _concept_phase(demo)
    concept_runs = _concept_runs(demo, settings)
    promoted = [r for r in concept_runs if r.data.tags[names.PROMOTION].startswith("promoted")]
    assert len(promoted) == 1, [r.data.tags[names.GATE_SUMMARY] for r in concept_runs]
    (winner,) = promoted
    assert json.loads(winner.data.tags[names.WINDOW_SELECTION])["chosen"] != "all", winner.data.tags
    champion = registry.get_champion(registry.client(settings), "churn")
    assert champion.run_id == winner.info.run_id
    last_move = [e for e in ledger.entries(settings, "churn") if e.alias == "champion"][-1]
    assert (last_move.action, last_move.to_version) == ("promotion", str(champion.version)), last_move
    assert last_move.mlflow_run_id == winner.info.run_id

    # Served accuracy: the old champion on the changed batches, the new one on the next batch.
    old, new = _scored_by(settings, concept[0]), str(champion.version)
    before = [served(spec, settings, b)["accuracy"] for b in concept if _scored_by(settings, b) == old]
    after_batch = next(b for b in concept if _scored_by(settings, b) == new)
    after = served(spec, settings, after_batch)
    assert after is not None, f"the labels of {after_batch} never arrived"
    assert after["accuracy"] > max(before) + 0.1, (before, after)
    row = rf"{after_batch} \(concept drift\)\s+\S+\s+\S+\s+{after['accuracy']:.3f}\s+v{new}"
    assert re.search(row, demo.out), demo.out
