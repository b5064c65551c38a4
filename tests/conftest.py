"""Test-wide setup: every pytest worker gets its own embedded ctloop home.

Airflow reads its configuration when first imported, so the environment is set here, at import
time of the conftest, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.postgres import postgres_server  # noqa: F401

# One OpenMP (and OpenBLAS) thread per process: make test runs one pytest worker per core, and
# scikit-learn's, LightGBM's and XGBoost's threads competing for those cores made every fit and
# predict several times slower (a one-row predict took milliseconds per tree). Set before any of
# them is imported; inherited by the deployments and subprocesses the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_HOME = Path(tempfile.mkdtemp(prefix=f"ctloop-test-{_WORKER}-"))

os.environ["CTLOOP_HOME"] = str(_HOME)
os.environ["CTLOOP_PIPELINES_DIR"] = str(_HOME / "pipelines")
for _key in (
    "MLFLOW_TRACKING_URI",
    "CTLOOP_DATABASE_URL",
    "CTLOOP_STORAGE_ROOT",
    "CTLOOP_S3_ENDPOINT_URL",
    "AIRFLOW_HOME",
):
    os.environ.pop(_key, None)
(_HOME / "pipelines").mkdir(parents=True)

from ctloop.devtools.embedded_env import apply_embedded_defaults, embedded_environment  # noqa: E402
from tests.helpers import REPO  # noqa: E402,F401

# Set, not defaulted: xdist workers inherit the controller's environment, which this file has
# already pointed at the controller's home; defaults would make both workers share its databases.
os.environ.update(embedded_environment(_HOME))
apply_embedded_defaults(_HOME)
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


_MLFLOW_ENVIRONMENT = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


@pytest.fixture(autouse=True, scope="module")
def _own_mlflow_store():
    """Every module ends on this worker's own MLflow store. Tests that read another deployment's
    store (a LocalDeployment's, a tracking server's) switch the process-wide URIs, and
    ``mlflow.set_tracking_uri`` writes them into os.environ too, where later tests and their
    subprocesses would find a server that has stopped."""
    yield
    from ctloop.registry import mlflow_store as registry
    from ctloop.settings import load_settings

    for key, value in _MLFLOW_ENVIRONMENT.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    registry.client(load_settings())


@pytest.fixture(scope="session")
def ctloop_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def airflow_db(ctloop_home: Path) -> Path:
    """Airflow's metadata database for this worker, migrated once."""
    airflow = Path(sys.executable).with_name("airflow")
    migrated = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return ctloop_home / "airflow" / "airflow.db"


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("CTLOOP_KEEP_TEST_HOME"):
        shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def write_spec(ctloop_home: Path):
    """Write a spec dict (or raw text) as ``<pipelines dir>/<file_name>.yaml``; returns the path."""
    written: list[Path] = []

    def write(file_name: str, spec: dict | str) -> Path:
        path = Path(os.environ["CTLOOP_PIPELINES_DIR"]) / f"{file_name}.yaml"
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
        written.append(path)
        return path

    yield write
    for path in written:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real HTTP S3 endpoint on loopback: moto's server mode, in its own process."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def silent_endpoint(monkeypatch):
    """An S3 endpoint on loopback that accepts connections and never answers; yields its URL and
    the list of connections it accepted."""
    import socket
    import threading

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket on the loopback S3 server."""
    import uuid

    import boto3

    name = f"ctloop-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
