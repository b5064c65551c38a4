"""Integration fixtures: real Airflow (``dag.test()``) and a real MLflow registry on SQLite."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

from ctloop.devtools.example_data import write_batches, write_labels
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.helpers import REPO, example_spec


def run_dag(dag_id: str, **conf):
    """Parse the repository's DAG folder as Airflow would and run one DAG with ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert dag_id in bag.dags, bag.import_errors
    return bag.dags[dag_id].test(run_conf=conf or None)


def task_states(dag_run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in rows}


def returned(dag_run, task_id: str):
    """What a task of the run returned (its ``return_value`` XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
        )
        return XComModel.deserialize_value(session.scalars(query).one())


def champion_version(name: str) -> str | None:
    champion = registry.get_champion(registry.client(load_settings()), name)
    return str(champion.version) if champion else None


def versions(name: str) -> list:
    return registry.client(load_settings()).search_model_versions(f"name = '{name}'")


def mlflow_run(name: str, dag_run):
    client = registry.client(load_settings())
    experiment = client.get_experiment_by_name(name)
    (run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{dag_run.dag_id}/{dag_run.run_id}'"
    )
    return run


class Pipeline:
    """One test pipeline: a unique name, its own data folder and spec file."""

    def __init__(self, root: Path, data_uri: str | None = None, **overrides):
        self.name = f"p{uuid.uuid4().hex[:10]}"
        self.data = root / "data"
        self.incoming = root / "incoming"
        self.labels = root / "labels"
        overrides.setdefault("scoring", {"incoming_uri": str(self.incoming), "labels_uri": str(self.labels)})
        self.spec = example_spec(self.name, data_uri or str(self.data), **overrides)
        self.spec["gates"]["rules"] = [
            {"metric": "roc_auc", "at_least": 0.6},
            {"metric": "roc_auc", "min_improvement": 0.002},
        ]
        # measured (the fewest repeats allowed: each is a pyfunc predict call), but no limit a busy
        # test machine could break; tests/unit/gating/test_latency.py judges
        self.spec["gates"]["latency"] = {
            "batch_rows": 200,
            "repeats": 5,
            "single_p95_ms": 60_000,
            "batch_p95_ms": 60_000,
        }
        self.path = Path(os.environ["CTLOOP_PIPELINES_DIR"]) / f"{self.name}.yaml"
        self.write(self.spec)

    @property
    def dag_id(self) -> str:
        return f"{self.name}__train"

    def write(self, spec: dict | str) -> None:
        self.path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))

    def add_batches(self, count: int, rows: int = 800, **options) -> list[Path]:
        first = len(list(self.data.glob("batch-*")))
        return write_batches(self.data, range(first, first + count), rows=rows, **options)

    def deliver(self, indices: range, rows: int = 1200, **options) -> list[Path]:
        """Production batches (without labels) landing in the incoming area."""
        return write_batches(self.incoming, indices, rows=rows, with_target=False, **options)

    def label(self, index: int, rows: int = 1200, **options) -> Path:
        """The late labels of production batch ``index``."""
        return write_labels(self.labels, index, rows=rows, **options)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def pipeline(tmp_path, airflow_db):
    created = Pipeline(tmp_path)
    yield created
    created.remove()
