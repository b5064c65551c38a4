"""An external monitoring system starts a retraining, once per alert id.

Two ways in: Airflow's REST API (``POST /api/v2/dags/<p>__train/dagRuns`` with ``dag_run_id =
alert__<alert id>``: a repeated run id is refused by Airflow itself, a repeated alert id under
another run id by the run's snapshot task), and ctloop's endpoint
(``POST /ctloop/api/pipelines/<p>/alerts``: 201, 400 for a malformed id, 409 naming the run that
received it). The training's MLflow run records why it ran and which alert asked for it. This runs
the real components as processes (api-server, scheduler, dag-processor), because ``dag.test()``
bypasses the API and its auth.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ctloop.devtools.local_deployment import FINISHED, LocalDeployment
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.helpers import served_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("rest_alert")]

REASON = "drift on monthly_charges (PSI 0.31)"


@dataclass
class Stack:
    """The running deployment and the one pipeline it serves."""

    server: LocalDeployment
    pipeline: str

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline}__train"

    def alert(self, alert_id: str, reason: str = REASON) -> tuple[int, Any]:
        """What the monitoring system sends: the alert id is the run id, which makes it idempotent."""
        body = {
            "dag_run_id": f"alert__{alert_id}",
            "logical_date": None,
            "conf": {"reason": reason, "alert_id": alert_id},
        }
        return self.server.client.post(f"/api/v2/dags/{self.dag_id}/dagRuns", body)

    def runs(self) -> list[dict]:
        status, body = self.server.client.get(f"/api/v2/dags/{self.dag_id}/dagRuns")
        assert status == 200, body
        return body["dag_runs"]


@dataclass
class FirstAlert:
    """What happened to one alert sent twice, recorded once so each test asserts one thing."""

    alert_id: str
    first: tuple[int, Any]
    repeat: tuple[int, Any]
    runs_after_repeat: list[dict]
    final: dict


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A pipeline with small data, its spec in the pipelines folder the dag-processor reads, served."""
    home = tmp_path_factory.mktemp("airflow-server")
    # only alerts start runs here (no cron tick on unpause); every sane candidate passes
    name, _, pipelines = served_pipeline(
        home, batches=3, rows=600, gates={"rules": [{"metric": "roc_auc", "at_least": 0.6}]}
    )
    with LocalDeployment(home, pipelines) as server:
        server.wait_for_dag(f"{name}__train")
        yield Stack(server, name)


@pytest.fixture(scope="module")
def first_alert(stack: Stack) -> FirstAlert:
    alert_id = f"drift-{uuid.uuid4().hex[:8]}"
    first = stack.alert(alert_id)
    repeat = stack.alert(alert_id, reason="the same alert, delivered again")
    runs_after_repeat = stack.runs()
    final = {}
    if first[0] in (200, 201):
        final = stack.server.wait_for_run(stack.dag_id, f"alert__{alert_id}", timeout=240)
    return FirstAlert(alert_id, first, repeat, runs_after_repeat, final)


def test_an_alert_starts_a_training_run_named_after_it(first_alert: FirstAlert) -> None:
    status, run = first_alert.first
    assert status in (200, 201), run
    assert run["dag_run_id"] == f"alert__{first_alert.alert_id}"
    assert run["conf"] == {"reason": REASON, "alert_id": first_alert.alert_id}


def test_a_repeated_alert_is_refused_and_starts_nothing(first_alert: FirstAlert) -> None:
    status, body = first_alert.repeat
    assert status == 409, body
    same = [r for r in first_alert.runs_after_repeat if r["dag_run_id"] == f"alert__{first_alert.alert_id}"]
    assert len(same) == 1, first_alert.runs_after_repeat
    assert len(first_alert.runs_after_repeat) == 1
    assert same[0]["conf"]["reason"] == REASON  # the first delivery's, not overwritten


def test_the_alert_run_succeeds_and_its_mlflow_run_records_the_alert(
    stack: Stack, first_alert: FirstAlert
) -> None:
    run_id = f"alert__{first_alert.alert_id}"
    assert first_alert.final.get("state") == "success", stack.server.diagnose(stack.dag_id, run_id)
    settings = load_settings(stack.server.env)  # the server's MLflow store, not this worker's
    client = registry.client(settings)  # tests/conftest.py gives this worker its own store back
    experiment = client.get_experiment_by_name(stack.pipeline)
    (mlflow_run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{stack.dag_id}/{run_id}'"
    )
    assert mlflow_run.data.tags["ctloop.reason"] == REASON
    assert mlflow_run.data.tags.get("ctloop.alert_id") == first_alert.alert_id


def _ctloop_alert(stack: Stack, alert_id: str, reason: str = REASON) -> tuple[int, Any]:
    """ctloop's own alert endpoint, on the same api-server (the plugin, mounted at /ctloop)."""
    path = f"/ctloop/api/pipelines/{stack.pipeline}/alerts"
    return stack.server.client.post(path, {"alert_id": alert_id, "reason": reason})


def test_the_same_alert_id_under_another_run_id_trains_nothing(stack: Stack, first_alert: FirstAlert) -> None:
    """Airflow accepts the run (its id is new); its snapshot task refuses the alert id ctloop has
    already seen, so no second MLflow run or version exists."""
    run_id = f"resent__{uuid.uuid4().hex[:8]}"
    body = {
        "dag_run_id": run_id,
        "logical_date": None,
        "conf": {"reason": "resent", "alert_id": first_alert.alert_id},
    }
    status, run = stack.server.client.post(f"/api/v2/dags/{stack.dag_id}/dagRuns", body)
    assert status in (200, 201), run
    _fails_at_snapshot_training_nothing(stack, run_id)


def _fails_at_snapshot_training_nothing(stack: Stack, run_id: str) -> None:
    """The run ends failed at its snapshot task, with no MLflow run (so no version) made for it."""
    finished = stack.server.wait_for_run(stack.dag_id, run_id, timeout=240)
    assert finished["state"] == "failed"
    status, tasks = stack.server.client.get(f"/api/v2/dags/{stack.dag_id}/dagRuns/{run_id}/taskInstances")
    states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    assert states["snapshot"] == "failed", states
    assert states["train"] == "upstream_failed", states
    client = registry.client(load_settings(stack.server.env))
    experiment = client.get_experiment_by_name(stack.pipeline)
    made = client.search_runs(
        [experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{stack.dag_id}/{run_id}'"
    )
    assert made == []


def test_an_alert_with_another_id_starts_another_run(stack: Stack, first_alert: FirstAlert) -> None:
    other = f"decay-{uuid.uuid4().hex[:8]}"
    before = {r["dag_run_id"] for r in stack.runs()}
    assert f"alert__{first_alert.alert_id}" in before
    status, run = stack.alert(other, reason="accuracy decay on late labels")
    assert status in (200, 201), run
    run_ids = {r["dag_run_id"] for r in stack.runs()}
    assert run_ids == before | {f"alert__{other}"}
    started = stack.server.wait_for_run(stack.dag_id, f"alert__{other}", ("running", *FINISHED), timeout=60)
    assert started["state"] in ("running", "success"), stack.server.diagnose(stack.dag_id, f"alert__{other}")
    assert started["conf"]["alert_id"] == other


def test_ctloop_alert_endpoint_starts_once_and_answers_409_with_who_received_it(stack: Stack) -> None:
    alert_id = f"PD-{uuid.uuid4().hex[:8]}"
    status, created = _ctloop_alert(stack, alert_id)
    assert status == 201, created
    assert created == {"alert_id": alert_id, "dag_id": stack.dag_id, "dag_run_id": f"alert__{alert_id}"}
    status, run = stack.server.client.get(f"/api/v2/dags/{stack.dag_id}/dagRuns/alert__{alert_id}")
    assert status == 200, run
    assert run["conf"]["alert_id"] == alert_id

    status, refused = _ctloop_alert(stack, alert_id, reason="delivered again")
    assert status == 409, refused
    assert refused["received_by"] == f"{stack.dag_id}/alert__{alert_id}"
    assert refused["detail"].startswith(
        f"alert '{alert_id}' was already received by {stack.dag_id}/alert__{alert_id} at "
    )
    assert refused["detail"].endswith("; nothing started")
    assert len([r for r in stack.runs() if alert_id in r["dag_run_id"]]) == 1


@pytest.mark.parametrize("alert_id", ["<img src=x onerror=alert(1)>" + "x" * 4970, "PD 1"])
def test_a_malformed_alert_id_is_refused_by_ctloop_and_by_the_training_run(
    stack: Stack, alert_id: str
) -> None:
    before = len(stack.runs())
    status, refused = _ctloop_alert(stack, alert_id)
    assert status == 400, refused
    assert refused["detail"].startswith("alert_id refused: ")
    assert "<" not in refused["detail"]
    assert len(stack.runs()) == before
    # straight to Airflow's REST API (the alert id is no Param: people never see it in the trigger
    # form): Airflow accepts the run, its first task refuses the id, nothing is trained
    run_id = f"bad__{uuid.uuid4().hex[:8]}"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": {"reason": "bad id", "alert_id": alert_id}}
    for _ in range(5):  # as a monitoring system's client would: the embedded deployment's SQLite
        status, airflow = stack.server.client.post(f"/api/v2/dags/{stack.dag_id}/dagRuns", body)
        if status != 500:  # metadata database can be locked by the scheduler for a moment (a 500)
            break
        time.sleep(1)
    assert status in (200, 201), airflow
    _fails_at_snapshot_training_nothing(stack, run_id)
