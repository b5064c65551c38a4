"""Where ctloop keeps its state, read from the environment so one code base serves every stack.

The embedded default puts everything under ``CTLOOP_HOME`` (``./.ctloop``): Airflow's, MLflow's
and ctloop's own SQLite databases, MLflow artifacts and ctloop's storage. A production stack points
the same variables at Postgres, an MLflow server and S3 instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """The resolved locations; build one with :func:`load_settings`."""

    home: Path
    storage_root: str
    pipelines_dir: Path
    expectations_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str | None
    s3_endpoint_url: str | None
    database_url: str


def load_settings(environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (the process environment by default)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("CTLOOP_HOME", ".ctloop")).expanduser().resolve()
    include_dir = PACKAGE_DIR.parent
    tracking_uri = env.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    return Settings(
        home=home,
        storage_root=env.get("CTLOOP_STORAGE_ROOT", str(home / "storage")),
        pipelines_dir=Path(env.get("CTLOOP_PIPELINES_DIR", include_dir / "pipelines")),
        expectations_dir=Path(env.get("CTLOOP_EXPECTATIONS_DIR", include_dir / "expectations")),
        mlflow_tracking_uri=tracking_uri,
        # A tracking server chooses artifact locations itself; a database URI needs one from us.
        mlflow_artifact_root=env.get("CTLOOP_MLFLOW_ARTIFACT_ROOT")
        or (None if tracking_uri.startswith("http") else str(home / "mlartifacts")),
        s3_endpoint_url=env.get("CTLOOP_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
        # ctloop's own tables (the promotion ledger) and its locks; Postgres in production.
        database_url=env.get("CTLOOP_DATABASE_URL", f"sqlite:///{home / 'ctloop.db'}"),
    )
