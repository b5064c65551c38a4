"""The MLflow tracking server goes away at register and at promote, then comes back.

A real ``mlflow server`` on loopback (SQLite store, proxied artifacts) is stopped and started again
on the same port and store between the training steps, which run as the train DAG's tasks call them
(ctloop.training.steps). While it is down a step fails with an error naming the server; after it
is back the retried step completes, and the registry, the ledger and the version tags agree: one
version, one completed ledger row, the alias on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.devtools.local_deployment import BIN, free_port
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training import steps
from tests.helpers import example_spec

pytestmark = pytest.mark.integration


class Server:
    """One ``mlflow server`` whose process can be stopped and started again on the same store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "server.log").open("a")
        self.process = subprocess.Popen(
            [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--serve-artifacts", "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
             "--artifacts-destination", str(self.workdir / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(
            f"mlflow server did not start: {(self.workdir / 'server.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        """Kill the server and its workers (its own process group), as a crashed host would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path)
    started.start()
    yield started
    if started.process is not None and started.process.poll() is None:
        started.stop()


@pytest.fixture
def settings(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # bounded waits for the test: MLflow's client otherwise retries a refused connection for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return load_settings().model_copy(
        update={
            "mlflow_tracking_uri": server.url,
            "mlflow_artifact_root": None,
            "database_url": f"sqlite:///{tmp_path / 'ctloop.db'}",
        }
    )


def test_register_and_promote_fail_clearly_while_mlflow_is_down_and_complete_once_it_is_back(
    server: Server, settings: Settings, tmp_path: Path
) -> None:
    name = f"o{uuid.uuid4().hex[:10]}"
    write_batches(tmp_path / "data", range(2), rows=600)
    raw = example_spec(name, str(tmp_path / "data"))
    raw["gates"] = {"rules": [{"metric": "roc_auc", "at_least": 0.6}]}
    spec = PipelineSpec.model_validate(raw)
    ctx = steps.RunContext(
        dag_id=f"{name}__train", run_id="manual__outage", reason="outage", trigger="manual"
    )
    started = steps.start(spec, settings, ctx)
    validated = steps.validate(spec, settings, ctx, started)
    trained = steps.train(spec, settings, ctx, started)
    evaluation = steps.evaluate_models(spec, settings, ctx, trained)

    server.stop()
    with pytest.raises(Exception, match=f"127.0.0.1:{server.port}") as down:
        steps.register(spec, settings, ctx, started, trained, validated)
    assert "onnection" in str(down.value)  # refused: said, not hung
    server.start()
    version = steps.register(spec, settings, ctx, started, trained, validated)
    assert steps.register(spec, settings, ctx, started, trained, validated) == version  # a retry: the same
    client = registry.client(settings)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == [version]
    decision = steps.gate(spec, settings, evaluation, version)
    assert decision.promote

    server.stop()
    with pytest.raises(Exception, match=f"127.0.0.1:{server.port}"):
        steps.promote_candidate(spec, settings, ctx, started, evaluation, decision, version, None)
    server.start()
    assert registry.get_champion(client, name) is None  # nothing moved while it was down
    outcome = steps.promote_candidate(spec, settings, ctx, started, evaluation, decision, version, None)

    assert outcome.promoted
    champion = registry.get_champion(client, name)
    assert champion is not None
    assert str(champion.version) == version
    rows = ledger.entries(settings, name, every_state=True)
    assert [(r.state, r.to_version) for r in rows if r.state != "abandoned"] == [("done", version)]
    assert champion.tags[tags.LEDGER_SEQ] == str(rows[-1].seq)
    assert champion.tags[tags.PROMOTION].startswith("promot")
