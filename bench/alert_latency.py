"""(f) Alert-to-champion latency: from the monitor deciding to retrain to the new champion, through a
running scheduler, versus the same training done by the library in one plain process.

The Airflow side runs the demo's story (ctloop.devtools.demo) on a fresh home with the example data, with
a gate that promotes any sound candidate (``roc_auc at_least 0.6``) and a retrain policy that acts
on the first alerting window, so the measured path is: monitor run ends its ``request_retrain``
task (the asset event) -> the scheduler starts ``churn__train`` -> snapshot, validation, training,
evaluation, gate, registration -> ``promote`` moves the alias. Both ends are read from Airflow's
task records. The baseline is ``ctloop.training.steps`` run in sequence in a fresh interpreter on the
same data (imports included), as in (d): the ratio is what the asset hop, the scheduler and the
task processes add to a retraining.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from bench.common import report
from bench.scheduler_overhead import PLAIN

REPO = Path(__file__).resolve().parent.parent
ROWS_PER_BATCH = 5000


def _spec(pipelines: Path) -> Path:
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec["gates"]["rules"] = [{"metric": "roc_auc", "at_least": 0.6}]
    spec["retrain"] = {"k_of_n": {"k": 1, "n": 1}, "cooldown_minutes": 0}
    pipelines.mkdir(parents=True, exist_ok=True)
    path = pipelines / "churn.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _task_end(db: Path, dag_id: str, task_id: str, state: str = "success") -> list[datetime]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select end_date from task_instance where dag_id = ? and task_id = ? and state = ?"
            " order by end_date",
            (dag_id, task_id, state),
        ).fetchall()
    return [datetime.fromisoformat(row[0]) for row in rows]


def through_airflow(home: Path) -> tuple[float, dict]:
    """Seconds from the retrain asset event to the promotion, and the demo's timeline."""
    from ctloop.devtools.demo import Demo, format_timeline
    from ctloop.devtools.local_deployment import LocalDeployment
    from ctloop.settings import load_settings
    from ctloop.spec.loading import load_spec

    pipelines = home / "pipelines"
    spec = load_spec(_spec(pipelines))
    with LocalDeployment(home, pipelines) as stack:
        settings = load_settings(stack.env)
        demo = Demo(stack, settings, spec, ROWS_PER_BATCH)
        demo.run()
        db = stack.airflow_home / "airflow.db"
        requested = _task_end(db, "churn__monitor", "request_retrain")
        promoted = _task_end(db, "churn__train", "promote")
    retrained = [p for p in promoted if requested and p > requested[0]]
    if not requested or not retrained:
        raise RuntimeError(f"no alert-driven promotion happened:\n{format_timeline(demo.timeline)}")
    return (retrained[0] - requested[0]).total_seconds(), {"timeline": "\n" + format_timeline(demo.timeline)}


def plain(home: Path) -> float:
    """The same training steps on the same example data in one fresh interpreter."""
    from ctloop.devtools.example_data import write_batches
    from ctloop.devtools.local_deployment import airflow_environment

    spec_path = _spec(home / "pipelines")
    write_batches(home / "data" / "churn" / "training", range(4), rows=ROWS_PER_BATCH)
    env = airflow_environment(home, spec_path.parent, port=0)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PLAIN, str(spec_path)], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="ctloop-bench-latency-"))
    try:
        baseline = plain(home / "plain")
        latency, details = through_airflow(home / "airflow")
        return report("alert_to_champion", latency, baseline, 2.0, rows_per_batch=ROWS_PER_BATCH, **details)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
