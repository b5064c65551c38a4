"""Scoring production batches with the champion, each batch exactly once, into a prediction log.

A batch is a file of the spec's format in the pipeline's incoming area, its suffix matched in any
case (``.csv``, ``.CSV``, ``.Parquet``); its id is its path in that area without the suffix,
``/`` written as ``__`` (``2026-01-02/batch.csv`` is ``2026-01-02__batch``). Two files whose ids
coincide (``a.csv`` and ``a.CSV``, ``x/a.csv`` and ``x__a.csv``) are one batch id: the file it was
scored from, or else the first in key order, is the batch; the others are set aside to
``conflicts/``. Its predictions form one partition of the prediction log
(ctloop.scoring.prediction_log), so a re-run rewrites the same object.

A batch that fails its checks, or whose prediction or partition write fails, is moved to
``quarantine/<pipeline>/<id>/`` with ``reason.json`` beside it (the check or the stage that
failed) before the task fails: nothing is dropped silently, nothing fails again on every run. A
failure that is not the batch's (no champion, the model or the registry unavailable) leaves the
batch where it is, not scored, for the next run. A batch counts as scored only once its partition
is written (ctloop.scoring.scored_batches reserves before predicting, commits after writing).

A batch id is scored from one content only (ctloop.scoring.scored_batches). A file delivered again under
a scored id with the same content is left alone; with other content it is moved to
``conflicts/<pipeline>/<id>/`` and its task fails, so the log never mixes two versions of a batch
and the new version is not lost. The same content under a new id goes to ``duplicates/``.

Two other models may score the same rows without serving them (ctloop.monitoring.champion_watch):
the previous champion while the champion is watched, into the ``shadow_*`` columns, and the
``challenger`` (a candidate waiting for approval) into the ``challenger_*`` columns. A shadow that
cannot load or predict leaves its columns null and says so in the task's result: it never costs
the batch its predictions.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from ctloop import clock
from ctloop.errors import BatchConflict, BatchQuarantined, CtloopError, NoChampion
from ctloop.evaluation.model_scores import outputs
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.io.readers import SUFFIXES, parse_frame, read_options, to_parquet_bytes
from ctloop.io.storage import home_storage, open_storage
from ctloop.monitoring.champion_watch import watched_promotion
from ctloop.registry import mlflow_store as registry
from ctloop.registry import model_trust, tags
from ctloop.scoring import scored_batches
from ctloop.scoring.input_files import input_name, move_aside
from ctloop.scoring.prediction_log import (
    CHALLENGER,
    PREDICTIONS,
    PREVIOUS,
    SERVED,
    ModelColumns,
    partition_key,
)
from ctloop.training.estimator import changed_user_code
from ctloop.validation.champion_suite import suite_dir
from ctloop.validation.data_validation import validate_frame
from ctloop.validation.schema import Failure, failure

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion
    from numpy.typing import NDArray

    from ctloop.evaluation.model_scores import FittedModel
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)


class Batch(TypedDict):
    """One incoming file: its key in the incoming area, its batch id and its URI; ``collides_with``:
    the key of an earlier file of the same batch id (this one is set aside, not scored)."""

    key: str
    batch_id: str
    uri: str
    collides_with: NotRequired[str]


def logged_columns(spec: PipelineSpec) -> list[str]:
    """The input columns the prediction log keeps: ids, timestamp and features."""
    timestamp = [spec.columns.timestamp] if spec.columns.timestamp else []
    return [*spec.columns.id, *timestamp, *spec.columns.features]


def new_batches(spec: PipelineSpec, settings: Settings) -> list[Batch]:
    """The incoming files of the spec's format that have no partition in the prediction log yet,
    and those whose batch was scored from other content (score_batch sets them aside)."""
    incoming = open_storage(spec.incoming_uri, settings)
    storage = home_storage(settings)
    keys: dict[str, list[str]] = {}  # batch id -> its files, in key order
    skipped = []
    for key in sorted(incoming.list_keys()):
        batch_id = input_name(key, spec.scoring.format)
        if batch_id is None:
            skipped.append(key)
        else:
            keys.setdefault(batch_id, []).append(key)
    pending: list[Batch] = []
    for batch_id, files in keys.items():
        owner = _owner(storage, spec.name, batch_id, files)
        batch: Batch = {"key": owner, "batch_id": batch_id, "uri": incoming.uri(owner)}
        scored = storage.exists(partition_key(PREDICTIONS, spec.name, batch_id))
        if not scored or not scored_batches.unchanged_since_scored(storage, incoming, spec.name, batch):
            pending.append(batch)
        pending += [
            {"key": k, "batch_id": batch_id, "uri": incoming.uri(k), "collides_with": owner}
            for k in files
            if k != owner
        ]
    if skipped:
        log.warning(
            "%s: %d file(s) not of format %s (%s) are not batches, e.g. %s",
            spec.incoming_uri,
            len(skipped),
            spec.scoring.format,
            "/".join(SUFFIXES[spec.scoring.format]),
            ", ".join(skipped[:3]),
        )
    return pending


def _owner(storage: Storage, pipeline: str, batch_id: str, files: list[str]) -> str:
    """Which of the files of one batch id is the batch: the one it was scored from, else the first."""
    if len(files) == 1:
        return files[0]
    record = scored_batches.batch_record(storage, pipeline, batch_id) or {}
    return record["key"] if record.get("key") in files else files[0]


def set_aside(
    spec: PipelineSpec, settings: Settings, batch: Batch, data: bytes, area: str, reason: dict[str, Any]
) -> str:
    """Move the batch file to ``<area>/<pipeline>/<batch id>/`` with ``reason.json`` beside it
    (``<batch id>~<sha256 prefix>/`` when an earlier, different file of that id is already there);
    see :func:`ctloop.scoring.input_files.move_aside`."""
    incoming = open_storage(spec.incoming_uri, settings)
    prefix = f"{area}/{spec.name}/{batch['batch_id']}"
    return move_aside(settings, incoming, batch["key"], data, prefix, {"batch": batch, **reason})


def _checked_frame(
    spec: PipelineSpec, settings: Settings, batch: Batch, data: bytes, suite_key: str | None
) -> pd.DataFrame:
    """The batch as a frame, checked with the champion's own expectation suite."""
    failures: list[Failure]
    try:
        frame = parse_frame(data, spec.scoring.format, batch["uri"], **read_options(spec.columns))
    except CtloopError as exc:
        failures = [failure("readable", None, str(exc))]
    else:
        expectations = suite_dir(spec, settings, suite_key)
        report = validate_frame(frame, spec, expectations, require_target=False)
        failures = report["schema_failures"] + report["expectation_failures"]
    if failures:
        where = set_aside(spec, settings, batch, data, "quarantine", {"failures": failures})
        listed = "; ".join(f"{f['check']}[{f['column'] or 'table'}]: {f['detail']}" for f in failures)
        raise BatchQuarantined(f"{batch['uri']}: moved to {where}: {listed}")
    return frame


def predict(model: FittedModel, frame: pd.DataFrame, spec: PipelineSpec) -> tuple[NDArray[Any], NDArray[Any]]:
    """The predicted label (or value) and the score the log keeps: the positive class's
    probability for binary models, the top probability for multiclass, the value for regression."""
    predictions = model_predictions(model, frame, spec)
    return predictions.predicted, predictions.score


def model_predictions(model: FittedModel, frame: pd.DataFrame, spec: PipelineSpec) -> Predictions:
    """What the log keeps of the model's output on ``frame`` (:func:`logged_predictions`)."""
    return logged_predictions(spec, model, *outputs(model, frame, spec))


def logged_predictions(
    spec: PipelineSpec, model: FittedModel, predicted: NDArray[Any], probabilities: NDArray[Any]
) -> Predictions:
    """What the log keeps of a model's :func:`~ctloop.evaluation.model_scores.outputs`: the
    predicted label (or value) and :func:`predict`'s score; for a multiclass model also every
    class's probability, which its roc_auc and log_loss need once labels arrive."""
    if spec.task == "regression":
        return Predictions(predicted, predicted.astype(float))
    if probabilities.shape[1] == 2:
        return Predictions(predicted, probabilities[:, 1])
    return Predictions(predicted, probabilities.max(axis=1), probabilities, model.classes_)


def score_batch(spec: PipelineSpec, settings: Settings, batch: Batch) -> dict[str, Any]:
    """Check, predict and log one batch; returns a summary for XCom."""
    champion = registry.get_champion(registry.client(settings), spec.name)
    if champion is None:
        raise NoChampion(f"{spec.name}: no model is champion yet; run {spec.name}__train first")
    incoming = open_storage(spec.incoming_uri, settings)
    fingerprint = incoming.fingerprint(batch["key"])  # before the read: a rewrite after it changes it
    data = incoming.read_bytes(batch["key"])
    sha256 = hashlib.sha256(data).hexdigest()
    _refuse_collision(spec, settings, batch, data, sha256)
    _refuse_conflict(spec, settings, batch, data, sha256)
    frame = _checked_frame(spec, settings, batch, data, champion.tags.get(tags.SUITE_KEY))
    # not the batch's fault if loading fails: it stays
    model = registry.load_version(settings, champion, model_trust.policy(spec))
    code_changed = changed_user_code(spec, champion.tags)
    for change in code_changed:  # the fitted state is the version's, the methods today's code
        log.warning("%s v%s: scoring with changed code: %s", spec.name, champion.version, change)
    storage = home_storage(settings)
    key = partition_key(PREDICTIONS, spec.name, batch["batch_id"])
    source = {
        "batch_id": batch["batch_id"],
        "key": batch["key"],
        "sha256": sha256,
        "size": len(data),
        "fingerprint": fingerprint,
    }
    first = scored_batches.reserve(settings, spec.name, source)
    if first is not None:
        why = {"duplicate_of": first, "sha256": sha256}
        where = set_aside(spec, settings, batch, data, "duplicates", why)
        return {**batch, "action": "duplicate", **why, "moved_to": where}
    with _set_aside_on_failure(spec, settings, batch, data, source, "prediction"):
        logged = _predictions(spec, champion, model, frame, batch)
    shadows = _shadows(spec, settings, str(champion.version), frame, logged)
    with _set_aside_on_failure(spec, settings, batch, data, source, "write"):
        uri = storage.write_bytes(key, to_parquet_bytes(logged))
    scored_batches.commit(settings, spec.name, source, uri)
    return {
        **batch,
        "action": "scored",
        "rows": len(logged),
        "model_version": str(champion.version),
        "partition": uri,
        "sha256": sha256,
        **shadows,
        **({"user_code_changed": code_changed} if code_changed else {}),
    }


@contextlib.contextmanager
def _set_aside_on_failure(
    spec: PipelineSpec, settings: Settings, batch: Batch, data: bytes, source: dict[str, Any], stage: str
) -> Iterator[None]:
    """Quarantine the batch, naming ``stage`` and the error, when the block fails on it: a batch
    left in place would fail the same way on every run. Its reservation is released first, so
    the batch is not scored and a corrected copy under another id is not taken for a duplicate."""
    try:
        yield
    except Exception as exc:
        scored_batches.release(settings, spec.name, source)
        detail = f"{type(exc).__name__}: {exc}"
        where = set_aside(
            spec, settings, batch, data, "quarantine", {"failures": [failure(stage, None, detail)]}
        )
        raise BatchQuarantined(f"{batch['uri']}: moved to {where}: {stage}[table]: {detail}") from exc


def _predictions(
    spec: PipelineSpec, champion: ModelVersion, model: FittedModel, frame: pd.DataFrame, batch: Batch
) -> pd.DataFrame:
    """The batch's rows of the prediction log: its inputs, the champion's outputs, version and time."""
    import pandas as pd

    logged = frame[logged_columns(spec)].copy()
    logged = logged.assign(**model_predictions(model, frame, spec).columns(SERVED.prediction, SERVED.score))
    logged[SERVED.version] = str(champion.version)
    logged["batch_id"] = batch["batch_id"]
    logged["scored_at"] = pd.Timestamp(clock.now())
    return logged


def _shadows(
    spec: PipelineSpec, settings: Settings, champion: str, frame: pd.DataFrame, logged: pd.DataFrame
) -> dict[str, dict[str, Any] | None]:
    """Shadow-score the batch with the previous champion, while the champion is watched, and with
    the challenger; what happened to each (None: no such model now), as the task's result says."""
    promotion = watched_promotion(settings, spec.name, champion) if spec.monitoring.watch.enabled else None
    previous = promotion.from_version if promotion is not None else None
    challenger = registry.get_alias(registry.client(settings), spec.name, registry.CHALLENGER)
    waiting = str(challenger.version) if challenger is not None else None
    return {
        "shadow": _shadow(spec, settings, previous, PREVIOUS, frame, logged),
        "challenger": _shadow(
            spec, settings, waiting if waiting != champion else None, CHALLENGER, frame, logged
        ),
    }


def _shadow(
    spec: PipelineSpec,
    settings: Settings,
    version: str | None,
    columns: ModelColumns,
    frame: pd.DataFrame,
    logged: pd.DataFrame,
) -> dict[str, Any] | None:
    """Fill ``columns`` of ``logged`` with ``version``'s outputs (null when there is no such
    version or it fails); returns what happened, None when there is no version."""
    logged[columns.prediction], logged[columns.score], logged[columns.version] = None, float("nan"), None
    if version is None:
        return None
    try:
        mlflow_client = registry.client(settings)
        model = registry.load_version(
            settings, mlflow_client.get_model_version(spec.name, version), model_trust.policy(spec)
        )
        predictions = model_predictions(model, frame, spec)
    except Exception as exc:  # a shadow is evidence, not service: the champion's rows are logged anyway
        error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "%s: shadow v%s did not score this batch; its %s columns stay null: %s",
            spec.name,
            version,
            columns.version.removesuffix("_version"),
            error,
        )
        return {"version": version, "scored": False, "error": error}
    for column, values in predictions.columns(columns.prediction, columns.score).items():
        logged[column] = values
    logged[columns.version] = version
    return {"version": version, "scored": True}


def _refuse_collision(spec: PipelineSpec, settings: Settings, batch: Batch, data: bytes, sha256: str) -> None:
    """Set the file aside and fail when an earlier incoming file has the same batch id: scoring
    both would write one partition twice, dropping it would lose a file."""
    if "collides_with" not in batch:
        return
    detail = (
        f"batch id {batch['batch_id']!r} is also the id of {batch['collides_with']!r} in the incoming area; "
        f"this file was not scored. Deliver it under a name whose batch id is new."
    )
    why = {"collides_with": batch["collides_with"], "sha256": sha256, "detail": detail}
    where = set_aside(spec, settings, batch, data, "conflicts", why)
    raise BatchConflict(f"{batch['uri']}: moved to {where}: {detail}")


def _refuse_conflict(spec: PipelineSpec, settings: Settings, batch: Batch, data: bytes, sha256: str) -> None:
    """Set the file aside and fail when its batch id was already scored from other content:
    scoring it would mix two versions of one batch, dropping it would lose the new version."""
    storage = home_storage(settings)
    key = partition_key(PREDICTIONS, spec.name, batch["batch_id"])
    if (
        not storage.exists(key)
        or scored_batches.reserved(storage, spec.name, batch["batch_id"])  # never finished: not scored
        or scored_batches.scored_from(storage, spec.name, batch["batch_id"], sha256)
    ):
        return
    record = scored_batches.batch_record(storage, spec.name, batch["batch_id"]) or {}
    scored_sha = record.get("sha256", "not recorded")
    detail = (
        f"batch {batch['batch_id']!r} was already scored from other content (sha256 {scored_sha}) into "
        f"{storage.uri(key)}; this file (sha256 {sha256}) was not scored. To replace the scored batch, "
        "delete that partition and deliver the file again; to add its rows, deliver it under a new batch id."
    )
    why = {
        "conflicts_with": storage.uri(key),
        "scored_sha256": scored_sha,
        "sha256": sha256,
        "detail": detail,
    }
    where = set_aside(spec, settings, batch, data, "conflicts", why)
    raise BatchConflict(f"{batch['uri']}: moved to {where}: {detail}")
