"""The MLflow server as docker-compose runs it: MLflow's basic-auth app with deploy/mlflow-basic-auth.ini,
ctloop's user made by deploy/mlflow-users-init.py, and a model logged, registered and loaded by
ctloop through the server only (artifacts proxied, every file checked against its digest)."""

from __future__ import annotations

import configparser
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.devtools.local_deployment import BIN, free_port
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import features, fit
from tests.helpers import REPO, example_spec

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("mlflow_auth")]

DEPLOY = REPO / "deploy"


def _environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CTLOOP_", "MLFLOW_"))}
    return {**clean, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The server with the compose file's auth configuration; its user store in a temporary folder."""
    workdir = tmp_path_factory.mktemp("mlflow-auth")
    config = configparser.ConfigParser()
    config.read(DEPLOY / "mlflow-basic-auth.ini")
    config["mlflow"]["database_uri"] = f"sqlite:///{workdir / 'auth.db'}"
    ini = workdir / "basic_auth.ini"
    with ini.open("w") as handle:
        config.write(handle)
    port, admin = free_port(), secrets.token_hex(16)
    env = _environment(
        MLFLOW_AUTH_CONFIG_PATH=str(ini),
        MLFLOW_AUTH_ADMIN_PASSWORD=admin,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),
    )
    log = open(workdir / "server.log", "w")  # noqa: SIM115 (the server writes to it)
    process = subprocess.Popen(
        [BIN / "mlflow", "server", "--app-name=basic-auth", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--serve-artifacts", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--artifacts-destination", str(workdir / "artifacts")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()  # open without a user
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not start: {(workdir / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield {"url": url, "admin": admin, "ctloop": secrets.token_hex(16)}
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _users_init(server: dict[str, str]) -> subprocess.CompletedProcess:
    env = _environment(
        MLFLOW_TRACKING_URI=server["url"],
        MLFLOW_TRACKING_USERNAME="admin",
        MLFLOW_TRACKING_PASSWORD=server["admin"],
        MLFLOW_CTLOOP_PASSWORD=server["ctloop"],
    )
    return subprocess.run(
        [sys.executable, str(DEPLOY / "mlflow-users-init.py")], env=env, capture_output=True, text=True
    )


def _status(url: str, user: str | None = None, password: str = "") -> int:
    import base64

    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")
    if user:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_server_refuses_requests_without_a_user(server):
    assert _status(server["url"]) == 401
    assert _status(server["url"], "admin", "wrong") == 401
    assert _status(server["url"], "admin", server["admin"]) == 200


def test_ctloops_user_is_made_once_and_its_password_follows_env(server):
    first = _users_init(server)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert _status(server["url"], "ctloop", server["ctloop"]) == 200
    server["ctloop"] = secrets.token_hex(16)  # .env regenerated: the next `compose up` resets it
    again = _users_init(server)
    assert again.returncode == 0, again.stderr
    assert _status(server["url"], "ctloop", server["ctloop"]) == 200


def test_ctloop_logs_registers_and_loads_a_model_through_the_server(server, monkeypatch):
    assert _users_init(server).returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ctloop")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server["ctloop"])
    # As in compose: the server chooses where artifacts go, and clients reach them through it.
    settings = load_settings().model_copy(
        update={"mlflow_tracking_uri": server["url"], "mlflow_artifact_root": None}
    )
    client = registry.client(settings)
    spec = PipelineSpec.model_validate(example_spec("t", "data"))
    frame = generate_batch(300, seed=11)
    name = f"auth_{uuid.uuid4().hex[:8]}"
    experiment = registry.ensure_experiment(client, name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(client, experiment, "dag/auth", {})
    logged = registry.log_model(fit(spec, frame), features(frame, spec), run_id)
    version = registry.register_version(client, name, logged, run_id, "dag/auth", {})
    model = registry.load_version(settings, version)  # models:/ download: MLflow adds its note file
    assert model.predict(features(frame, spec)).shape == (300,)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(Exception, match="401|[Uu]nauthori[sz]ed|not authenticated"):
        registry.load_version(settings, version)
