"""A replay's own CTLOOP_HOME: its MLflow SQLite store and artifacts, storage and ctloop database.

A replay promotes, rejects and rolls back models like a live run. In its own home it never reads
or moves the user's real champion, and two replays of the same history (a what-if with ``--set``)
cannot see each other's models. Only the inputs come from the user's settings: the pipeline
specs, the expectation suites, the training data and the S3 endpoint that serves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.errors import StorageError
from ctloop.settings import Settings

if TYPE_CHECKING:
    from ctloop.spec.models import PipelineSpec


def replay_settings(user: Settings, home: Path) -> Settings:
    """Settings that keep every record of the replay under ``home``, which must be new or empty.

    Validated from values alone: no ``MLFLOW_TRACKING_URI`` or ``CTLOOP_*`` variable of the
    environment can point the replay at a real store.
    """
    home = home.expanduser().resolve()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise StorageError(f"{home}: a replay starts from a new or empty home; this one holds files")
    home.mkdir(parents=True, exist_ok=True)
    return Settings.model_validate(
        {
            "home": home,
            "storage_root": str(home / "storage"),
            "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
            "mlflow_artifact_root": str(home / "mlartifacts"),
            "database_url": f"sqlite:///{home / 'ctloop.db'}",
            "pipelines_dir": user.pipelines_dir,
            "expectations_dir": user.expectations_dir,
            "s3_endpoint_url": user.s3_endpoint_url,
        }
    )


def replay_spec(spec: PipelineSpec, user: Settings) -> PipelineSpec:
    """The spec as a replay runs it: the training data read where the user's home has it, the
    production batches and labels delivered to the replay home's default areas (the spec's own
    areas are never read or written)."""
    uri = spec.data.uri
    if "://" not in uri and not Path(uri).expanduser().is_absolute():
        uri = str(user.home / uri)
    data = spec.data.model_copy(update={"uri": uri})
    scoring = spec.scoring.model_copy(update={"incoming_uri": None, "labels_uri": None})
    return spec.model_copy(update={"data": data, "scoring": scoring})
