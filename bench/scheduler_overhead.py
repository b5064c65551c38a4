"""(d) The training DAG through a real scheduler (LocalExecutor) versus the same library
functions called in one plain Python process, on 100k and 1M rows. Target <= 1.5x at 1M rows.

Both sides start a fresh Python and do a first training (no champion) of the same data; the
Airflow side runs api-server, scheduler and dag-processor on a fresh SQLite home, triggers the
DAG and waits for the run to finish, so its figure holds every task process's imports and the
scheduling latency between tasks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import report

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PLAIN = """
import sys
from pathlib import Path
from ctloop import train_steps as steps
from ctloop.settings import load_settings
from ctloop.spec import load_spec
spec = load_spec(Path(sys.argv[1]))
settings = load_settings()
ctx = steps.RunContext(f"{spec.name}__train", "plain", "benchmark")
started = steps.start(spec, settings, ctx)
steps.validate(spec, settings, ctx, started)
trained = steps.train(spec, settings, ctx, started)
evaluation = steps.evaluate_models(spec, settings, trained)
decision = steps.gate(spec.gates, spec.task, settings, evaluation)
version = steps.register(spec, settings, ctx, started, trained, decision)
steps.promote_candidate(spec, settings, evaluation, decision, version, trained["holdout"]["key"])
"""


def _environment(home: Path, pipelines: Path, port: int) -> dict[str, str]:
    from ctloop.localenv import embedded_environment

    return {
        **os.environ,
        **embedded_environment(home),
        "CTLOOP_PIPELINES_DIR": str(pipelines),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def _write_data_and_spec(home: Path, name: str, rows: int) -> Path:
    from ctloop.datagen import write_batches

    data = home / "data" / name
    write_batches(data, range(10), rows=rows // 10, fmt="parquet")
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec.update(name=name, data={"uri": str(data), "format": "parquet"})
    spec["schedule"] = {"train": None}
    path = home / "pipelines" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_run(db: Path, dag_id: str, timeout: float) -> tuple[str, float | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            row = connection.execute(
                "select state, (julianday(end_date) - julianday(start_date)) * 86400"
                " from dag_run where dag_id = ?",
                (dag_id,),
            ).fetchone()
        if row and row[0] in ("success", "failed"):
            return row[0], row[1]
        time.sleep(0.25)
    return "timeout", None


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
    env = _environment(home, spec_path.parent, _free_port())
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    commands = {
        "api-server": [BIN / "airflow", "api-server"],
        "scheduler": [BIN / "ctloop", "scheduler"],  # preloads the task libraries before forking
        "dag-processor": [BIN / "airflow", "dag-processor"],
    }
    processes = [
        subprocess.Popen(
            command,
            env=env,
            stdout=open(logs / f"{name}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so _stop can end each component with all it forked
        )
        for name, command in commands.items()
    ]
    try:
        db = home / "airflow" / "airflow.db"
        deadline = time.monotonic() + 180
        while True:  # the DAG must be parsed before it can be triggered
            with sqlite3.connect(db) as connection:
                if connection.execute("select 1 from dag where dag_id = ?", (dag_id,)).fetchone():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_id} was not parsed:\n" + _tails(logs))
            time.sleep(0.5)
        time.sleep(3)  # let the api-server and scheduler finish starting before the clock starts
        start = time.perf_counter()
        subprocess.run(
            [BIN / "airflow", "dags", "trigger", dag_id, "--conf", '{"reason": "benchmark"}'],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        state, recorded = _wait_for_run(db, dag_id, timeout)
        elapsed = time.perf_counter() - start
        if state != "success":
            raise RuntimeError(f"{dag_id} ended {state}:\n" + _tails(logs))
        return elapsed, recorded, _task_timings(db, dag_id)
    finally:
        _stop(processes)


def _tails(logs: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]) for log in logs.glob("*.log")
    )


def _stop(processes: list[subprocess.Popen]) -> None:
    """Stop each component with everything it forked (executor workers, serve-logs)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def _plain(home: Path, spec_path: Path) -> float:
    env = _environment(home, spec_path.parent, 0)
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
