"""The MLflow side of a training run: the tracking run, the logged model and registry versions.

Everything is keyed by the Airflow run (``run_key``), so a retried task finds what its first
attempt created instead of creating it again.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ctloop.errors import EstimatorError, ModelIntegrityError
from ctloop.registry import faults, tags
from ctloop.registry.model_trust import DEFAULT, TrustPolicy
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
# Written by MLflow into every models:/ download (the name and version asked for); never read by ctloop.
DOWNLOAD_META_FILE = "registered_model_meta"

log = logging.getLogger(__name__)


class LoggedModel(BaseModel):
    """A model logged to a run: where it is, its MLflow id and its digest (:func:`model_digest`),
    recorded as ``ctloop.model_sha256``."""

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


def trusted_types(model: Any, trust: TrustPolicy = DEFAULT) -> list[str]:
    """The non-default types skops must trust to load ``model``; each must pass ``trust``
    (:mod:`ctloop.registry.model_trust`), or the model is refused naming what to declare.

    Trusting exactly what we saved, and only what the policy allows, keeps arbitrary code out of a
    loadable artifact.
    """
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    refused = trust.refused(untrusted)
    if refused:
        raise EstimatorError(
            f"estimator.trusted_types: the model holds types ctloop does not trust: {refused}; if their"
            " saved state is data (no code runs when they load), list them in estimator.trusted_types"
        )
    return list(untrusted)


def log_model(model: Any, sample: pd.DataFrame, run_id: str, trust: TrustPolicy = DEFAULT) -> LoggedModel:
    """Log ``model`` (skops format) to the run; returns its URI, id and the digest of the model
    directory as stored (MLmodel and every file), to record with the run and its version."""
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
            skops_trusted_types=trusted_types(model, trust),
        )
    with tempfile.TemporaryDirectory(prefix="ctloop-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
        digest = model_digest(local)
    return LoggedModel(model_uri=info.model_uri, model_id=info.model_id, sha256=digest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(directory: Path) -> str:
    """The sha256 of a model directory's manifest: one line ``<sha256 of the file>  <relative
    path>`` per file, sorted by path (as ``sha256sum`` prints them). MLmodel and every other file
    count, so an edited loader, signature or example changes it; only MLflow's download note
    (:data:`DOWNLOAD_META_FILE`) is left out."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != DOWNLOAD_META_FILE)
    manifest = "".join(f"{_sha256(p)}  {p.relative_to(directory).as_posix()}\n" for p in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def load_model(
    settings: Settings, model_uri: str, expected_sha256: str | None, trust: TrustPolicy = DEFAULT
) -> Any:
    """Load a sklearn model ctloop logged, after checking every file against the digest recorded
    when it was logged (:func:`model_digest`); raises :class:`~ctloop.errors.ModelIntegrityError`
    for a changed model or one without a digest.

    The model is read with skops, trusting only the types of the file ``trust`` allows;
    MLflow's loaders are never used, since they deserialize whatever MLmodel names (a pickle too)
    once ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` allows it, and ctloop never sets that.
    """
    with _verified_copy(settings, model_uri, expected_sha256) as local:
        return _load_skops(model_uri, local, trust)


def load_version(settings: Settings, version: ModelVersion, trust: TrustPolicy = DEFAULT) -> Any:
    """Load a registered version's model, checked against the digest on the version."""
    if not version.source:
        raise ModelIntegrityError(f"{version.name} v{version.version}: the version records no model source")
    return load_model(settings, version.source, recorded_digest(version), trust)


def recorded_digest(version: ModelVersion) -> str:
    """The model digest recorded on ``version``; a version without one may not score or be promoted."""
    digest = version.tags.get(tags.MODEL_SHA256)
    if not digest:
        raise ModelIntegrityError(
            f"{version.name} v{version.version}: no model digest was recorded ({tags.MODEL_SHA256}), so its"
            " files cannot be checked; ctloop will not score with it or promote it. Train a new version,"
            " or roll back to a version that has one"
        )
    return str(digest)


@contextmanager
def _verified_copy(settings: Settings, model_uri: str, expected_sha256: str | None) -> Iterator[Path]:
    """A private copy of the model's directory, checked against the recorded digest; removed after
    the block, so the bytes checked are the bytes loaded.

    A digest that matches only ``model.skops`` was recorded by releases before the manifest digest:
    such a model still loads (a warning says MLmodel and the other files are unchecked), and only
    through :func:`_load_skops`, which reads nothing but ``model.skops``.
    """
    import mlflow

    if not expected_sha256:
        raise ModelIntegrityError(
            f"{model_uri}: no model digest was recorded, so its files cannot be checked; refusing to load it"
        )
    client(settings)  # model URIs resolve against the process-wide tracking URI
    with tempfile.TemporaryDirectory(prefix="ctloop-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        if model_digest(local) != expected_sha256:
            if not (local / MODEL_FILE).is_file() or _sha256(local / MODEL_FILE) != expected_sha256:
                raise ModelIntegrityError(
                    f"{model_uri}: model checksum differs from the one recorded at logging: a file of the"
                    " model directory was changed, added or removed; refusing to load it"
                )
            log.warning(
                "%s: its recorded digest covers %s only (logged by an earlier ctloop); MLmodel and the"
                " other files are unchecked",
                model_uri,
                MODEL_FILE,
            )
        yield local


def _load_skops(model_uri: str, local: Path, trust: TrustPolicy) -> Any:
    """``model.skops`` of a verified directory, trusting only the types ``trust`` allows.

    The trusted types are taken from the file and checked against the policy, never
    read from MLmodel (whose list a crafted model could widen); a model MLmodel describes as
    anything but skops is refused rather than loaded another way.
    """
    import skops.io
    from mlflow.models import Model

    flavor = Model.load(str(local / "MLmodel")).flavors.get("sklearn") or {}
    if flavor.get("serialization_format") != "skops" or flavor.get("pickled_model") != MODEL_FILE:
        raise ModelIntegrityError(
            f"{model_uri}: MLmodel does not describe a skops model in {MODEL_FILE} (sklearn flavor:"
            f" {flavor.get('serialization_format')!r}, {flavor.get('pickled_model')!r}); ctloop loads"
            " no other kind"
        )
    untrusted = skops.io.get_untrusted_types(file=local / MODEL_FILE)
    refused = trust.refused(untrusted)
    if refused:
        raise ModelIntegrityError(
            f"{model_uri}: the model holds types ctloop will not trust: {refused} (the pipeline's"
            " estimator.trusted_types and its feature and training modules decide what loads)"
        )
    return skops.io.load(local / MODEL_FILE, trusted=untrusted)


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
    """Register the MLflow run's model once: a retry finds the version its first try made.

    An Airflow run re-run on other data is another MLflow run (``ctloop.training.attempts``), so
    the version is found by the run key and the MLflow run together.
    """
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = version_of_run(mlflow_client, name, run_key, run_id)
    if not existing:
        faults.point("register.before_version")
        # every tag in the one call: a version exists with its evidence or not at all (and one
        # write instead of one per tag, which is most of the write path's time on SQLite)
        version = mlflow_client.create_model_version(
            name,
            model.model_uri,
            run_id=run_id,
            tags={**version_tags, tags.RUN_KEY: run_key, tags.MODEL_SHA256: model.sha256},
            model_id=model.model_id,  # a tracking server refuses a models:/ source without it
        )
        faults.point("register.after_version")
        return version
    # a retry finds the version its first try made, and brings its tags up to date
    for key, value in version_tags.items():
        mlflow_client.set_model_version_tag(name, existing, key, value)
    return mlflow_client.get_model_version(name, existing)


def version_of_run(
    mlflow_client: MlflowClient, name: str, run_key: str, run_id: str | None = None
) -> str | None:
    """The model version an Airflow run registered, if it got that far: the one its MLflow run
    ``run_id`` (one attempt of it) registered, or without ``run_id`` the latest."""
    found = mlflow_client.search_model_versions(f"name = '{name}' and tags.`{tags.RUN_KEY}` = '{run_key}'")
    mine = [v for v in found if run_id is None or v.run_id == run_id]
    return str(max(int(v.version) for v in mine)) if mine else None


def load_pyfunc(
    settings: Settings, model_uri: str, expected_sha256: str | None, trust: TrustPolicy = DEFAULT
) -> PyFuncModel:
    """Load a model ctloop logged the way its users call it (an ``mlflow.pyfunc`` model: signature
    enforced, input example attached), after the same checks as :func:`load_model`.

    ``model_uri`` is any MLflow model URI (``models:/<name>/<version>``, ``runs:/...``). The
    estimator comes from :func:`_load_skops` and is wrapped here, as ``mlflow.sklearn``'s pyfunc
    loader would wrap it, so MLflow deserializes nothing and MLmodel's loader is never followed.
    """
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    with _verified_copy(settings, model_uri, expected_sha256) as local:
        estimator = _load_skops(model_uri, local, trust)
        meta = Model.load(str(local / "MLmodel"))
        model = PyFuncModel(
            model_meta=meta, model_impl=estimator, predict_fn="predict", model_id=meta.model_id
        )
        model.input_example = meta.load_input_example(path=str(local))
    return model
