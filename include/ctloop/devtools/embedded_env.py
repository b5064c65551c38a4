"""The embedded default: Airflow, MLflow and ctloop on SQLite with local files, all under CTLOOP_HOME.

Every process of one local deployment (the demo, ``airflow standalone``, ``mlflow ui``, tests)
must agree on these locations, so they are derived here from CTLOOP_HOME in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctloop.settings import PACKAGE_DIR

REPO_DIR = PACKAGE_DIR.parent.parent


def embedded_environment(home: Path) -> dict[str, str]:
    """Environment variables for Airflow, MLflow and ctloop on the embedded default."""
    airflow_home = home / "airflow"
    return {
        "CTLOOP_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DIR / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_DIR / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "CTLOOP_MLFLOW_ARTIFACT_ROOT": str(home / "mlartifacts"),
        "CTLOOP_DATABASE_URL": f"sqlite:///{home / 'ctloop.db'}",
    }


def apply_embedded_defaults(home: Path) -> dict[str, str]:
    """Set each variable not already set, so an explicit setting always wins; returns the result."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "airflow").mkdir(exist_ok=True)
    for key, value in embedded_environment(home).items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in embedded_environment(home)}
