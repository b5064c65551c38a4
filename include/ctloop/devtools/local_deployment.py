"""The embedded default as a running deployment on loopback: api-server, ``ctloop scheduler`` and
dag-processor as separate processes on SQLite, as ``airflow standalone`` runs them.

``dag.test()`` runs one DAG inside the calling process; what couples DAGs (the scheduler starting
``__monitor`` and ``__train`` on asset events), what an external system relies on (the REST API
and its auth) and LocalExecutor task processes need the real components. The demo, the tests of
the REST alert path and the benchmarks run this stack.

Each component runs in its own session (process group) so stopping it also stops everything it
forked (executor workers, task processes, serve-logs): nothing outlives the ``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ctloop.devtools.embedded_env import embedded_environment

BIN = Path(sys.executable).parent
ADMIN = "admin"  # the simple auth manager's default user (`[core] simple_auth_manager_users`)
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"  # in AIRFLOW_HOME, written by api-server
FINISHED = ("success", "failed")
Command = list[str | Path]
COMPONENTS: dict[str, Command] = {
    "api-server": [BIN / "airflow", "api-server"],
    "scheduler": [BIN / "ctloop", "scheduler"],  # preloads the task libraries before forking tasks
    "dag-processor": [BIN / "airflow", "dag-processor"],
}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def airflow_environment(home: Path, pipelines_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    """The embedded default under ``home``, for a multi-process deployment listening on ``port``.

    Inherited AIRFLOW*, CTLOOP_* and MLFLOW_* variables are dropped so the stack never reaches into
    the caller's home (a pytest worker's, or the demo's). The components must share one JWT
    secret (each invents its own otherwise) and tasks must find the execution API.
    """
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "CTLOOP_", "MLFLOW_", "_AIRFLOW"))
    }
    return {
        **inherited,
        **embedded_environment(home),
        "CTLOOP_PIPELINES_DIR": str(pipelines_dir),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        **overrides,
    }


@dataclass
class ApiClient:
    """Airflow's REST API with a bearer token; every call returns ``(status, parsed JSON body)``."""

    base_url: str
    token: str = ""

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:  # 4xx/5xx are answers, not failures of the call
            return error.code, _json(error.read())

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, json: Any) -> tuple[int, Any]:
        return self.request("POST", path, json)

    def patch(self, path: str, json: Any) -> tuple[int, Any]:
        return self.request("PATCH", path, json)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


class LocalDeployment:
    """Start with ``with LocalDeployment(home, pipelines_dir) as stack:``; ``stack.client`` is logged in.

    Write the pipeline specs into ``pipelines_dir`` before entering, so the dag-processor's first
    parse sees them; then ``stack.wait_for_dag(dag_id)`` waits until the DAG can be triggered.
    """

    def __init__(
        self,
        home: Path,
        pipelines_dir: Path | None = None,
        *,
        startup_timeout: float = 180,
        components: dict[str, Command] | None = None,
        **env: str,
    ) -> None:
        self.home = home
        self.components = components or COMPONENTS
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = airflow_environment(home, pipelines_dir or home / "pipelines", self.port, **env)
        self.airflow_home = Path(self.env["AIRFLOW_HOME"])
        self.logs = home / "component-logs"
        self.startup_timeout = startup_timeout
        self.client = ApiClient(self.base_url)
        self.processes: dict[str, subprocess.Popen] = {}
        self._log_files: list[TextIO] = []

    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Set up both databases, start the components, wait for a healthy scheduler and log in."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        init = subprocess.run(
            [BIN / "ctloop", "init"], env=self.env, capture_output=True, text=True, timeout=300
        )
        if init.returncode != 0:
            raise RuntimeError(
                f"ctloop init failed ({init.returncode}):\n{init.stdout[-3000:]}{init.stderr[-3000:]}"
            )
        for name in self.components:
            self.start_component(name)
        self.until(self._scheduler_healthy, "the API and a healthy scheduler")
        self.client.token = self.until(self._login, "a token from /auth/token")

    def start_component(self, name: str) -> None:
        """Start (or start again) one component in its own process group, logging to its file."""
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 (the process writes to it until stop())
        self._log_files.append(log)
        self.processes[name] = subprocess.Popen(
            self.components[name], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill_component(self, name: str) -> None:
        """SIGKILL one component and everything it forked, as a crashed machine would end it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        """Stop each component with everything it forked; SIGKILL what SIGTERM did not end."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):  # stragglers in the group, e.g. a task
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()

    def admin_password(self) -> str:
        """The password the api-server generated for ``admin`` (development only)."""
        return json.loads((self.airflow_home / PASSWORD_FILE).read_text())[ADMIN]

    def wait_for_dag(self, dag_id: str, unpause: bool = True) -> dict:
        """Wait until the dag-processor has parsed ``dag_id`` (the API knows it), then unpause it."""
        dag = self.until(lambda: _ok(self.client.get(f"/api/v2/dags/{dag_id}")), f"{dag_id} to be parsed")
        if unpause and dag["is_paused"]:
            status, dag = self.client.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
            assert status == 200, (status, dag)
        return dag

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        """Start a run of ``dag_id`` now, as the UI's Trigger button does; returns the new run."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        status, run = self.client.post(f"/api/v2/dags/{dag_id}/dagRuns", body)
        if status not in (200, 201):
            raise RuntimeError(f"triggering {dag_id} answered {status}: {run}")
        return run

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of ``dag_id``, oldest first (up to 1,000)."""
        status, body = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=id&limit=1000")
        if status != 200:
            raise RuntimeError(f"listing runs of {dag_id} answered {status}: {body}")
        return body["dag_runs"]

    def wait_for_run(
        self, dag_id: str, run_id: str, states: tuple[str, ...] = FINISHED, timeout: float = 240
    ) -> dict:
        """The DAG run once its state is one of ``states``."""

        def reached() -> dict | None:
            run = _ok(self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
            return run if run and run["state"] in states else None

        return self.until(reached, f"{dag_id}/{run_id} to reach {states}", timeout, dag_id, run_id)

    def diagnose(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """What to read when something did not happen: task states, task logs, component logs."""
        parts = []
        if dag_id and run_id and self.client.token:
            _, tasks = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            if isinstance(tasks, dict):
                states = {t["task_id"]: t["state"] for t in tasks.get("task_instances", [])}
                parts.append(f"task states: {states}")
            run_logs = self.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            parts += [_tail(log) for log in sorted(run_logs.glob("**/*.log"))]
        parts += [_tail(log) for log in sorted(self.logs.glob("*.log"))]
        return "\n".join(parts)

    def _scheduler_healthy(self) -> bool:
        status, health = ApiClient(self.base_url).get("/api/v2/monitor/health")
        return status == 200 and health["scheduler"]["status"] == "healthy"

    def _login(self) -> str | None:
        if not (self.airflow_home / PASSWORD_FILE).exists():
            return None
        body = {"username": ADMIN, "password": self.admin_password()}
        status, answer = ApiClient(self.base_url).post("/auth/token", body)
        return answer["access_token"] if status == 201 else None

    def until(self, probe, what: str, timeout: float | None = None, dag_id=None, run_id=None):
        """Poll ``probe`` until it returns something truthy; fail early if a component died."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while True:
            try:
                result = probe()
            except OSError:  # not listening yet
                result = None
            if result:
                return result
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else "timed out"
                raise RuntimeError(f"waiting for {what}: {why}\n{self.diagnose(dag_id, run_id)}")
            time.sleep(0.5)


def _ok(answer: tuple[int, Any]) -> Any:
    status, body = answer
    return body if status == 200 else None


def _tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {log}\n" + "\n".join(text)
