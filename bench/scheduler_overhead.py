"""(d) The training DAG through a real scheduler (LocalExecutor) versus the same library
functions called in one plain Python process, on 100k and 1M rows. Target <= 1.5x at 1M rows.

Both sides start a fresh Python and do a first training (no champion) of the same data; the
Airflow side runs api-server, scheduler and dag-processor on a fresh SQLite home, triggers the
DAG and waits for the run to finish, so its figure holds every task process's imports and the
scheduling latency between tasks.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import report

REPO = Path(__file__).resolve().parent.parent

PLAIN = """
import sys
from pathlib import Path
from ctloop.training import steps
from ctloop.settings import load_settings
from ctloop.spec.loading import load_spec
spec = load_spec(Path(sys.argv[1]))
settings = load_settings()
ctx = steps.RunContext(f"{spec.name}__train", "plain", "benchmark")
started = steps.start(spec, settings, ctx)
validation = steps.validate(spec, settings, ctx, started)
trained = steps.train(spec, settings, ctx, started)
evaluation = steps.evaluate_models(spec, settings, ctx, trained)
version = steps.register(spec, settings, ctx, started, trained, validation)
decision = steps.gate(spec, settings, evaluation, version)
promotion = steps.promote_candidate(spec, settings, ctx, started, evaluation, decision, version, None)
results = {"snapshot": started, "validate": validation, "train": trained, "evaluate": evaluation,
           "register": version, "gate": decision, "promote": promotion}
steps.finish(spec, settings, ctx, results)
"""


def _write_data_and_spec(home: Path, name: str, rows: int) -> Path:
    from ctloop.devtools.example_data import write_batches

    data = home / "data" / name
    write_batches(data, range(10), rows=rows // 10, fmt="parquet")
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec.update(name=name, data={"uri": str(data), "format": "parquet"})
    spec["schedule"] = {"train": None}
    path = home / "pipelines" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def _task_timings(db: Path, dag_id: str) -> dict[str, str]:
    """Per task: seconds from queued to running, and running time, as Airflow recorded them."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select task_id, (julianday(start_date) - julianday(queued_dttm)) * 86400,"
            " (julianday(end_date) - julianday(start_date)) * 86400 from task_instance"
            " where dag_id = ? order by start_date",
            (dag_id,),
        ).fetchall()
    return {task: f"wait {wait or 0:.1f}s, run {run or 0:.1f}s" for task, wait, run in rows}


def _through_airflow(
    home: Path, spec_path: Path, dag_id: str, timeout: float
) -> tuple[float, float | None, dict]:
    from ctloop.devtools.local_deployment import LocalDeployment

    with LocalDeployment(home, spec_path.parent) as stack:
        stack.wait_for_dag(dag_id)
        time.sleep(3)  # let the api-server and scheduler finish starting before the clock starts
        start = time.perf_counter()
        run = stack.trigger(dag_id, {"reason": "benchmark"})
        finished = stack.wait_for_run(dag_id, run["dag_run_id"], timeout=timeout)
        elapsed = time.perf_counter() - start
        if finished["state"] != "success":
            raise RuntimeError(
                f"{dag_id} ended {finished['state']}:\n" + stack.diagnose(dag_id, run["dag_run_id"])
            )
        return elapsed, finished.get("duration"), _task_timings(stack.airflow_home / "airflow.db", dag_id)


def _plain(home: Path, spec_path: Path) -> float:
    from ctloop.devtools.local_deployment import airflow_environment

    env = airflow_environment(home, spec_path.parent, port=0)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PLAIN, str(spec_path)], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> list[dict]:
    results = []
    for rows in sizes:
        home = Path(tempfile.mkdtemp(prefix="ctloop-bench-"))
        try:
            plain_spec = _write_data_and_spec(home / "plain", "bench_plain", rows)
            dag_spec = _write_data_and_spec(home / "dag", "bench_dag", rows)
            plain_seconds = _plain(home / "plain", plain_spec)
            dag_seconds, recorded, tasks = _through_airflow(
                home / "dag", dag_spec, "bench_dag__train", timeout=1800
            )
            results.append(
                report(
                    f"scheduler_overhead_{rows}",
                    dag_seconds,
                    plain_seconds,
                    1.5,
                    rows=rows,
                    dag_run_duration_recorded_by_airflow=recorded,
                    tasks=tasks,
                )
            )
        finally:
            if not os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 keeps homes and task logs to study
                shutil.rmtree(home, ignore_errors=True)
    return results


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (100_000, 1_000_000))
