"""The MLflow side of a training run: the tracking run, the logged model and registry versions.

Everything is keyed by the Airflow run (``run_key``), so a retried task finds what its first
attempt created instead of creating it again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ctloop.errors import EstimatorError, StorageError
from ctloop.registry import tags
from ctloop.registry.provenance import model_requirements

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

    from ctloop.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"  # a candidate that passed its gates and waits for approval
RUN_KEY_TAG = tags.RUN_KEY  # the names other packages have imported from here
MODEL_SHA_TAG = tags.MODEL_SHA256
MODEL_FILE = "model.skops"
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class LoggedModel(BaseModel):
    """A model logged to a run: where it is, its MLflow id and its artifact's checksum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_uri: str
    model_id: str
    sha256: str


def client(settings: Settings) -> MlflowClient:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return mlflow.MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def init_tracking_store(settings: Settings) -> None:
    """Create the tracking store's tables now, from one process.

    MLflow creates a database store's tables on first use in every process; two processes doing
    that at once on a new SQLite file collide in its migrations (``table _alembic_tmp_latest_metrics
    already exists``). Call this before the components of a deployment start.
    """
    client(settings).search_experiments(max_results=1)


def ensure_experiment(mlflow_client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """The experiment's id, creating it with artifacts under ``artifact_root`` when given."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found:
        return str(found.experiment_id)
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=location))
    except MlflowException as exc:  # created by a concurrent run in between
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        created = mlflow_client.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)


def ensure_run(
    mlflow_client: MlflowClient, experiment_id: str, run_key: str, run_tags: dict[str, str]
) -> str:
    """The MLflow run of this Airflow run: found by its run key, or created once."""
    runs = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{tags.RUN_KEY}` = '{run_key}'", max_results=1
    )
    if runs:
        return str(runs[0].info.run_id)
    run = mlflow_client.create_run(experiment_id, tags={**run_tags, tags.RUN_KEY: run_key}, run_name=run_key)
    return str(run.info.run_id)


def trusted_types(model: Any) -> list[str]:
    """The non-default types skops must trust to load ``model``; only scientific-stack types pass.

    skops refuses tree models unless their types are trusted; trusting exactly what we saved,
    and only from sklearn/numpy/scipy, keeps arbitrary code out of a loadable artifact.
    """
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise EstimatorError(f"estimator.class_path: the model holds types ctloop will not trust: {foreign}")
    return list(untrusted)


def log_model(model: Any, sample: pd.DataFrame, run_id: str) -> LoggedModel:
    """Log ``model`` (skops format) to the run; returns its URI, id and the artifact's sha256."""
    import mlflow
    from mlflow.models import infer_signature

    example = sample.head(5)
    signature = infer_signature(sample, model.predict(sample))
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=model_requirements(),
            serialization_format="skops",
            skops_trusted_types=trusted_types(model),
        )
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    return LoggedModel(model_uri=info.model_uri, model_id=info.model_id, sha256=_sha256(local / MODEL_FILE))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(settings: Settings, model_uri: str, expected_sha256: str | None) -> Any:
    """Load a sklearn model ctloop logged, refusing an artifact whose checksum has changed.

    MLflow refuses to deserialize without MLFLOW_ALLOW_PICKLE_DESERIALIZATION; ctloop allows it
    only here, for artifacts whose sha256 matches what was recorded when they were logged.
    """
    import mlflow

    local = _verified_copy(settings, model_uri, expected_sha256)
    with _deserialization_allowed():
        return mlflow.sklearn.load_model(str(local))


def load_version(settings: Settings, version: ModelVersion) -> Any:
    """Load a registered version's sklearn model, checked against the checksum on the version."""
    if not version.source:
        raise StorageError(f"{version.name} v{version.version}: the version records no model source")
    return load_model(settings, version.source, version.tags.get(tags.MODEL_SHA256))


def _verified_copy(settings: Settings, model_uri: str, expected_sha256: str | None) -> Path:
    """The model's local directory, downloaded and checked against the recorded sha256."""
    import mlflow

    client(settings)  # model URIs resolve against the process-wide tracking URI
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    if expected_sha256 is not None and _sha256(local / MODEL_FILE) != expected_sha256:
        raise StorageError(f"{model_uri}: model artifact checksum differs from the one recorded at logging")
    return local


@contextmanager
def _deserialization_allowed() -> Iterator[None]:
    """MLFLOW_ALLOW_PICKLE_DESERIALIZATION set for the block only, restored afterwards."""
    previous = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
        else:
            os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = previous


def get_champion(mlflow_client: MlflowClient, name: str) -> ModelVersion | None:
    """The version the ``champion`` alias points at, or None."""
    return get_alias(mlflow_client, name, CHAMPION)


def get_alias(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None (no such alias, or no such registered model)."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register_version(
    mlflow_client: MlflowClient,
    name: str,
    model: LoggedModel,
    run_id: str,
    run_key: str,
    version_tags: dict[str, str],
) -> ModelVersion:
    """Register the run's model once: a retry finds the version its first attempt made."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = version_of_run(mlflow_client, name, run_key)
    if existing:
        version = mlflow_client.get_model_version(name, existing)
    else:
        version = mlflow_client.create_model_version(
            name,
            model.model_uri,
            run_id=run_id,
            tags={tags.RUN_KEY: run_key, tags.MODEL_SHA256: model.sha256},
            model_id=model.model_id,  # a tracking server refuses a models:/ source without it
        )
    for key, value in version_tags.items():
        mlflow_client.set_model_version_tag(name, version.version, key, value)
    return mlflow_client.get_model_version(name, version.version)


def version_of_run(mlflow_client: MlflowClient, name: str, run_key: str) -> str | None:
    """The model version an Airflow run registered, if it got that far."""
    found = mlflow_client.search_model_versions(f"name = '{name}' and tags.`{tags.RUN_KEY}` = '{run_key}'")
    return str(found[0].version) if found else None


def load_pyfunc(settings: Settings, model_uri: str, expected_sha256: str | None) -> PyFuncModel:
    """Load a model ctloop logged the way its users do (``mlflow.pyfunc``: signature enforced,
    input example attached), after the same checksum check as :func:`load_model`.

    ``model_uri`` is any MLflow model URI (``models:/<name>/<version>``, ``runs:/...``). The
    verified local copy is what gets loaded, so the bytes checked are the bytes deserialized.
    """
    import mlflow

    local = _verified_copy(settings, model_uri, expected_sha256)
    with _deserialization_allowed():
        model: PyFuncModel = mlflow.pyfunc.load_model(str(local))
    return model
