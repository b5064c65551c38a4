"""Import the libraries ctloop's tasks use, once, in a process that forks task processes.

Airflow's LocalExecutor (and a Celery worker's prefork pool) fork each task from a long-lived
parent. A task process otherwise pays for importing MLflow, GX, Evidently, scikit-learn and
pandas itself: seconds per task, for every task. Imported in the parent, the modules are inherited.
Only imports happen here: no connections, threads or files are opened before the fork.
"""

from __future__ import annotations

import importlib
import logging
import time

TASK_LIBRARIES = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.metrics",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "great_expectations",
    "evidently",
    "evidently.presets",
    "ctloop.training.steps",
    "ctloop.scoring.batches",
    "ctloop.scoring.late_labels",
    "ctloop.monitoring.monitor_run",
    "ctloop.monitoring.drift_report",
)

log = logging.getLogger(__name__)


def preload_task_libraries() -> float:
    """Import :data:`TASK_LIBRARIES`; returns the seconds it took."""
    start = time.perf_counter()
    for name in TASK_LIBRARIES:
        importlib.import_module(name)
    elapsed = time.perf_counter() - start
    log.info("Preloaded task libraries in %.1fs", elapsed)
    return elapsed
