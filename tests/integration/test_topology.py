"""The production-shaped topology as real processes on loopback, since no container engine runs here.

docker-compose.yaml runs Postgres, Redis, MinIO, an MLflow server and Airflow's api-server,
scheduler, dag-processor, triggerer and Celery worker. This suite starts the same services as
processes: Debian's ``postgresql`` (Airflow metadata, MLflow backend and ctloop's ledger in
separate databases) and ``redis-server`` (Celery broker), moto's S3 server standing in for MinIO
(ctloop's storage and MLflow's artifacts), ``mlflow server`` on Postgres with S3 artifacts, and
Airflow on Postgres with the CeleryExecutor. Only configuration differs from the embedded
default: the same DAGs and YAML run the loop, then a Celery worker is killed in the middle of a
training task and the task is retried to success with one model version and one champion move,
and a batch fanned out across both workers is scored once although one of them is killed.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ctloop.devtools.example_data import COVARIATE_SHIFT, write_batches, write_labels
from ctloop.devtools.local_deployment import BIN, LocalDeployment, free_port
from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.scoring import scored_batches
from ctloop.scoring.prediction_log import PREDICTIONS, batch_ids, partition_key
from ctloop.settings import load_settings
from tests.helpers import served_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("topology")]

BUCKET = "ctloop"
ROWS = 700
LARGE_ROWS = 60_000  # the fanned-out batch: 6 chunks of 10,000 rows in 3 parts
SCORING = {"chunk_rows": 10_000, "fan_out_rows": 20_000}
WORKERS = ("worker-1", "worker-2")
HOSTNAME = "airflow_local_settings.worker_hostname"  # a worker's tasks record its name (_quick_retries)
CELERY_COMPONENTS = {
    "api-server": [BIN / "airflow", "api-server"],
    "scheduler": [BIN / "airflow", "scheduler"],
    "dag-processor": [BIN / "airflow", "dag-processor"],
    "triggerer": [BIN / "airflow", "triggerer"],
}


def _workers(home: Path) -> dict[str, list]:
    """Two Celery workers of one task slot each, as two hosts: each its own Celery node name, pid
    file and task hostname (``worker_hostname`` below), no log server (they would share its port)."""
    return {
        name: ["env", f"TOPOLOGY_WORKER={name}", f"AIRFLOW__CORE__HOSTNAME_CALLABLE={HOSTNAME}",
               BIN / "airflow", "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@%h",
               "--pid", str(home / f"{name}.pid"), "--skip-serve-logs"]
        for name in WORKERS
    }  # fmt: skip


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """Redis as the Celery broker, password-protected as in docker-compose."""
    port, password = free_port(), secrets.token_hex(12)
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, server, "redis-server")
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def mlflow_server(postgres_server, s3_endpoint, tmp_path_factory) -> Iterator[str]:
    """``mlflow server`` with its backend on Postgres and artifacts proxied to S3."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=BUCKET)
    backend = postgres_server.create_database(f"mlflow_{uuid.uuid4().hex[:6]}")
    port = free_port()
    env = {**_clean_environment(), "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    log = open(tmp_path_factory.mktemp("mlflow") / "server.log", "w")  # noqa: SIM115 (the server writes to it)
    server = subprocess.Popen(
        [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend, "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_port(port, server, "mlflow server", timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _clean_environment() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CTLOOP_", "MLFLOW_"))}


@dataclass
class Topology:
    stack: LocalDeployment
    pipeline: str
    data: Path

    @property
    def settings(self):
        return load_settings(self.stack.env)

    def dag(self, kind: str) -> str:
        return f"{self.pipeline}__{kind}"

    def run(self, kind: str, conf: dict | None = None) -> dict:
        started = self.stack.trigger(self.dag(kind), conf)
        return self.stack.wait_for_run(self.dag(kind), started["dag_run_id"], timeout=600)

    def deliver(self, index: int, shift: dict | None) -> None:
        write_batches(
            self.data / "incoming", range(index, index + 1), rows=ROWS, with_target=False, shift=shift
        )
        write_labels(self.data / "labels", index, rows=ROWS, shift=shift)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and start it again, as its container would restart."""
        self.stack.kill_component(name)
        self.stack.start_component(name)

    def champion(self) -> str | None:
        found = registry.get_champion(registry.client(self.settings), self.pipeline)
        return str(found.version) if found else None


def _quick_retries(airflow_home: Path) -> None:
    """A cluster policy (Airflow's ``airflow_local_settings``, read from ``AIRFLOW_HOME/config``)
    that retries a failed task after 2 s instead of the DAGs' 30 s: the drills below wait for
    retries, and only how long they wait differs. Beside it, the hostname a worker's tasks record
    (``[core] hostname_callable``): its component name, as two hosts would differ."""
    config = airflow_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "airflow_local_settings.py").write_text(
        "import os\n"
        "from datetime import timedelta\n\n\n"
        "def task_policy(task):\n"
        "    task.retry_delay = timedelta(seconds=2)\n\n\n"
        "def worker_hostname():\n"
        "    return os.environ['TOPOLOGY_WORKER']\n"
    )


@pytest.fixture(scope="module")
def topology(tmp_path_factory, postgres_server, redis_url, s3_endpoint, mlflow_server) -> Iterator[Topology]:
    home = tmp_path_factory.mktemp("topology")
    name, data, pipelines = served_pipeline(
        home,
        batches=3,
        rows=ROWS,
        gates={"rules": [{"metric": "roc_auc", "at_least": 0.6}]},  # every sane candidate serves
        schedule={"train": None, "score": None, "monitor": None},
        monitoring={"window_batches": 1, "min_rows": 500, "report_sample_rows": 2000,
                    "drift": {"share": 0.3}, "quality": {"min_labels": 400}},
        retrain={"k_of_n": {"k": 1, "n": 1}, "cooldown_minutes": 0},
        scoring=SCORING,  # data/<name>/incoming and labels under CTLOOP_HOME, where deliver() writes
    )  # fmt: skip
    airflow_db = postgres_server.create_database(f"airflow_{uuid.uuid4().hex[:6]}")
    env = {
        # Airflow on Postgres with Celery workers, as in docker-compose.yaml
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db,  # SQLAlchemy 2.1: name the driver
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        # ctloop on S3, the MLflow server and a Postgres ledger: configuration only
        "CTLOOP_STORAGE_ROOT": f"s3://{BUCKET}/storage",
        "CTLOOP_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "CTLOOP_MLFLOW_ARTIFACT_ROOT": "",
        "CTLOOP_DATABASE_URL": postgres_server.create_database(f"ctloop_{uuid.uuid4().hex[:6]}"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    components = {**CELERY_COMPONENTS, **_workers(home)}
    deployment = LocalDeployment(home, pipelines, components=components, startup_timeout=300, **env)
    _quick_retries(deployment.airflow_home)
    with deployment as stack:
        for kind in ("train", "score", "monitor"):
            stack.wait_for_dag(f"{name}__{kind}")
        yield Topology(stack, name, data)


@pytest.fixture(scope="module")
def loop(topology: Topology) -> dict:
    """The example's loop through the topology: train v1, a stable batch, then shifted batches
    until the monitor asks for a retrain, which the scheduler starts from the asset event."""
    stack, train = topology.stack, topology.dag("train")
    first = topology.run("train", {"reason": "first training"})
    assert first["state"] == "success", stack.diagnose(train, first["dag_run_id"])
    monitors = []
    for index, shift in enumerate([None, COVARIATE_SHIFT, COVARIATE_SHIFT]):
        known = len(stack.runs(topology.dag("monitor")))
        topology.deliver(10 + index, shift)  # ids differ from the training batches' (0-2)
        scored = topology.run("score")
        assert scored["state"] == "success", stack.diagnose(topology.dag("score"), scored["dag_run_id"])
        started = stack.until(lambda k=known: stack.runs(topology.dag("monitor"))[k:], "a monitor run", 300)[
            0
        ]
        monitor = stack.wait_for_run(topology.dag("monitor"), started["dag_run_id"], timeout=600)
        monitors.append(monitor)
        run_path = f"/api/v2/dags/{topology.dag('monitor')}/dagRuns/{monitor['dag_run_id']}"
        if stack.client.get(f"{run_path}/taskInstances/request_retrain")[1].get("state") == "success":
            break
    retrain = stack.until(lambda: stack.runs(train)[1:], "the asset-triggered training", 120)[0]
    retrain = stack.wait_for_run(train, retrain["dag_run_id"], timeout=900)
    return {"first": first, "monitors": monitors, "trainings": stack.runs(train), "retrain": retrain}


def test_the_loop_runs_on_postgres_celery_s3_and_an_mlflow_server(topology: Topology, loop: dict) -> None:
    assert all(m["state"] == "success" for m in loop["monitors"]), loop["monitors"]
    assert [t["run_type"] for t in loop["trainings"]] == ["manual", "asset_triggered"]
    assert loop["retrain"]["state"] == "success"
    assert topology.champion() == "2"
    client = registry.client(topology.settings)
    version = client.get_model_version(topology.pipeline, "2")
    assert "drift" in version.tags["ctloop.reason"] or "key feature" in version.tags["ctloop.reason"]
    assert version.source.startswith(("models:/", "mlflow-artifacts:/"))
    assert version.tags["ctloop.trigger_reports"].startswith(f"s3://{BUCKET}/storage/runs/")
    moves = ledger.entries(topology.settings, topology.pipeline)
    assert [(m.from_version, m.to_version) for m in moves] == [(None, "1"), ("1", "2")]


def test_a_killed_celery_worker_mid_training_is_retried_to_one_version_and_one_move(
    topology: Topology, loop: dict
) -> None:
    write_batches(topology.data / "training", range(20, 24), rows=15_000)  # a training long enough to kill
    versions_before = len(
        registry.client(topology.settings).search_model_versions(f"name = '{topology.pipeline}'")
    )
    run_id = topology.stack.trigger(topology.dag("train"), {"reason": "worker crash drill"})["dag_run_id"]
    task_path = f"/api/v2/dags/{topology.dag('train')}/dagRuns/{run_id}/taskInstances/train"
    topology.stack.until(
        lambda: topology.stack.client.get(task_path)[1].get("state") == "running", "train to run", 600
    )
    time.sleep(2)  # inside the fit
    topology.kill_worker(topology.stack.client.get(task_path)[1]["hostname"])
    finished = topology.stack.wait_for_run(topology.dag("train"), run_id, timeout=900)
    assert finished["state"] == "success", topology.stack.diagnose(topology.dag("train"), run_id)
    _, task = topology.stack.client.get(task_path)
    assert task["try_number"] >= 2, task  # the killed attempt, then the retry that succeeded
    run_key = f"{topology.dag('train')}/{run_id}"
    client = registry.client(topology.settings)
    mine = client.search_model_versions(
        f"name = '{topology.pipeline}' and tags.`ctloop.run_key` = '{run_key}'"
    )
    assert len(mine) == 1
    assert len(client.search_model_versions(f"name = '{topology.pipeline}'")) == versions_before + 1
    moves = [m for m in ledger.entries(topology.settings, topology.pipeline) if m.run_key == run_key]
    assert len(moves) == 1
    assert topology.champion() == str(mine[0].version)


def test_a_batch_fanned_out_across_both_workers_is_scored_once_though_one_is_killed(
    topology: Topology, loop: dict
) -> None:
    (path,) = write_batches(topology.data / "incoming", range(30, 31), rows=LARGE_ROWS, with_target=False)
    stack, dag = topology.stack, topology.dag("score")
    run_id = stack.trigger(dag)["dag_run_id"]
    parts_path = f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/score_part"

    def running() -> list[dict]:
        listed = stack.client.get(f"{parts_path}/listMapped")[1].get("task_instances", [])
        return [p for p in listed if p["state"] == "running" and p["hostname"] in WORKERS]

    (victim, *_) = stack.until(running, "a part to run on a worker", 600)
    time.sleep(2)  # inside the part
    topology.kill_worker(victim["hostname"])
    finished = stack.wait_for_run(dag, run_id, timeout=600)

    assert finished["state"] == "success", stack.diagnose(dag, run_id)
    parts = stack.client.get(f"{parts_path}/listMapped")[1]["task_instances"]
    assert len(parts) == 3
    tries = [
        t
        for p in parts
        for t in stack.client.get(f"{parts_path}/{p['map_index']}/tries")[1]["task_instances"]
    ]
    assert {t["hostname"] for t in tries} == set(WORKERS)  # the parts ran on both workers
    assert max(p["try_number"] for p in parts if p["map_index"] == victim["map_index"]) >= 2
    settings, pipeline = topology.settings, topology.pipeline
    storage = home_storage(settings)
    logged = from_parquet_bytes(storage.read_bytes(partition_key(PREDICTIONS, pipeline, "batch-0030")))
    delivered = pd.read_csv(path, dtype={"customer_id": str}, usecols=["customer_id"])
    assert logged["customer_id"].tolist() == delivered["customer_id"].tolist()  # every row once, in order
    assert batch_ids(PREDICTIONS, pipeline, settings).count("batch-0030") == 1
    assert storage.list_keys(f"staging/{pipeline}") == []
    record = scored_batches.batch_record(storage, pipeline, "batch-0030")
    assert record.get("state") != scored_batches.RESERVED
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["partition"].endswith(partition_key(PREDICTIONS, pipeline, "batch-0030"))
    published = stack.client.get(f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/score_batch/0")[1]
    assert (published["state"], published["try_number"]) == ("success", 1)  # committed by one attempt
