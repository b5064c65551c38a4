"""Scoring production batches with the champion, each batch exactly once, into a prediction log.

A batch is a file in the pipeline's incoming area; its id is the file name without suffix. Its
predictions form one partition of the prediction log (ctloop.predictionlog), so a re-run
rewrites the same object. A batch that fails its checks is moved to
``quarantine/<pipeline>/<id>/`` with ``reason.json`` beside it before the task fails: nothing is
dropped silently, nothing is scored by a model that cannot read it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ctloop import registry
from ctloop.dataio import SUFFIXES, parse_frame, to_parquet_bytes
from ctloop.errors import BatchQuarantined, CtloopError, NoChampion
from ctloop.predictionlog import PREDICTIONS, partition_key
from ctloop.storage import home_storage, open_storage
from ctloop.training import features
from ctloop.validation import validate_frame

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec import PipelineSpec


def _marker_key(pipeline: str, sha256: str) -> str:
    return f"scored/{pipeline}/{sha256}.json"


def logged_columns(spec: PipelineSpec) -> list[str]:
    """The input columns the prediction log keeps: ids, timestamp and features."""
    timestamp = [spec.columns.timestamp] if spec.columns.timestamp else []
    return [*spec.columns.id, *timestamp, *spec.columns.features]


def new_batches(spec: PipelineSpec, settings: Settings) -> list[dict]:
    """The incoming files of the spec's format that have no partition in the prediction log yet."""
    incoming = open_storage(spec.incoming_uri, settings)
    storage = home_storage(settings)
    pending = []
    for key in incoming.list_keys():
        if not key.endswith(SUFFIXES[spec.scoring.format]):
            continue
        batch_id = PurePosixPath(key).stem
        if not storage.exists(partition_key(PREDICTIONS, spec.name, batch_id)):
            pending.append({"key": key, "batch_id": batch_id, "uri": incoming.uri(key)})
    return pending


def set_aside(
    spec: PipelineSpec, settings: Settings, batch: dict, data: bytes, area: str, reason: dict
) -> str:
    """Move the batch file to ``<area>/<pipeline>/<batch id>/`` with ``reason.json`` beside it.

    The copy and its reason are written before the incoming file is deleted, so a crash in
    between leaves the batch in both places, never in neither.
    """
    storage = home_storage(settings)
    prefix = f"{area}/{spec.name}/{batch['batch_id']}"
    storage.write_bytes(f"{prefix}/{PurePosixPath(batch['key']).name}", data)
    record = {"batch": batch, **reason, "at": datetime.now(UTC).isoformat()}
    storage.write_bytes(f"{prefix}/reason.json", json.dumps(record, indent=2, default=str).encode())
    open_storage(spec.incoming_uri, settings).delete(batch["key"])
    return storage.uri(prefix)


def _checked_frame(spec: PipelineSpec, settings: Settings, batch: dict, data: bytes) -> pd.DataFrame:
    string_columns = [*spec.columns.id, *spec.columns.categorical]
    try:
        frame = parse_frame(data, spec.scoring.format, batch["uri"], string_columns)
    except CtloopError as exc:
        failures = [{"check": "readable", "column": None, "detail": str(exc)}]
    else:
        report = validate_frame(frame, spec, settings.expectations_dir, require_target=False)
        failures = report["schema_failures"] + report["expectation_failures"]
    if failures:
        where = set_aside(spec, settings, batch, data, "quarantine", {"failures": failures})
        listed = "; ".join(f"{f['check']}[{f['column'] or 'table'}]: {f['detail']}" for f in failures)
        raise BatchQuarantined(f"{batch['uri']}: moved to {where}: {listed}")
    return frame


def predict(model, frame: pd.DataFrame, spec: PipelineSpec) -> tuple[np.ndarray, np.ndarray]:
    """The predicted label (or value) and the score the log keeps: the positive class's
    probability for binary models, the top probability for multiclass, the value for regression."""
    x = features(frame, spec)
    if spec.task == "regression":
        predicted = model.predict(x)
        return predicted, predicted.astype(float)
    probabilities = model.predict_proba(x)
    predicted = model.classes_[probabilities.argmax(axis=1)]
    score = probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities.max(axis=1)
    return predicted, score


def score_batch(spec: PipelineSpec, settings: Settings, batch: dict) -> dict:
    """Check, predict and log one batch; returns a summary for XCom."""
    import pandas as pd

    mlflow_client = registry.client(settings)
    champion = registry.get_champion(mlflow_client, spec.name)
    if champion is None:
        raise NoChampion(f"{spec.name}: no model is champion yet; run {spec.name}__train first")
    data = open_storage(spec.incoming_uri, settings).read_bytes(batch["key"])
    sha256 = hashlib.sha256(data).hexdigest()
    storage = home_storage(settings)
    marker = _marker_key(spec.name, sha256)
    if storage.exists(marker):
        first = json.loads(storage.read_bytes(marker))
        if first["batch_id"] != batch["batch_id"]:
            why = {"duplicate_of": first["batch_id"], "sha256": sha256}
            where = set_aside(spec, settings, batch, data, "duplicates", why)
            return {**batch, "action": "duplicate", **why, "moved_to": where}
    frame = _checked_frame(spec, settings, batch, data)
    model = registry.load_model(settings, champion.source, champion.tags.get(registry.MODEL_SHA_TAG))
    log = frame[logged_columns(spec)].copy()
    log["prediction"], log["score"] = predict(model, frame, spec)
    log["model_version"] = str(champion.version)
    log["batch_id"] = batch["batch_id"]
    log["scored_at"] = pd.Timestamp.now(tz="UTC")
    uri = storage.write_bytes(partition_key(PREDICTIONS, spec.name, batch["batch_id"]), to_parquet_bytes(log))
    storage.write_bytes(marker, json.dumps({"batch_id": batch["batch_id"], "partition": uri}).encode())
    return {
        **batch,
        "action": "scored",
        "rows": len(log),
        "model_version": str(champion.version),
        "partition": uri,
        "sha256": sha256,
    }
