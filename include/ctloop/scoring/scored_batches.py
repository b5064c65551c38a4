"""What was scored from what: each batch id's content, and each content's batch id.

Two records per scored batch, both written before its partition in the prediction log:
``scored/<pipeline>/batches/<batch id>.json`` (the file's sha256, size and storage fingerprint)
tells whether a file delivered again under a scored id holds other content;
``scored/<pipeline>/<sha256>.json`` tells whether a new file repeats content already scored
under another id. A file whose fingerprint matches its record is not read again on later runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ctloop.io.locks import pipeline_lock
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    from ctloop.io.storage import Storage
    from ctloop.scoring.batches import Batch
    from ctloop.settings import Settings

log = logging.getLogger(__name__)


def _batch_key(pipeline: str, batch_id: str) -> str:
    return f"scored/{pipeline}/batches/{batch_id}.json"


def _content_key(pipeline: str, sha256: str) -> str:
    return f"scored/{pipeline}/{sha256}.json"


def _read_json(storage: Storage, key: str) -> dict[str, Any] | None:
    if not storage.exists(key):
        return None
    record: dict[str, Any] = json.loads(storage.read_bytes(key))
    return record


def batch_record(storage: Storage, pipeline: str, batch_id: str) -> dict[str, Any] | None:
    """The content ``batch_id`` was scored from (sha256, size, key, fingerprint), if recorded."""
    return _read_json(storage, _batch_key(pipeline, batch_id))


def scored_from(storage: Storage, pipeline: str, batch_id: str, sha256: str) -> bool:
    """Whether ``batch_id`` was scored from the content ``sha256``."""
    record = batch_record(storage, pipeline, batch_id)
    if record is not None:
        return bool(record["sha256"] == sha256)
    content = _read_json(storage, _content_key(pipeline, sha256))  # scored before batch records existed
    return content is not None and content["batch_id"] == batch_id


def unchanged_since_scored(storage: Storage, incoming: Storage, pipeline: str, batch: Batch) -> bool:
    """Whether a scored batch's incoming file still holds the content it was scored from.

    A matching fingerprint answers without reading the file; otherwise the file is hashed once,
    and a re-delivery of the same content gets its new fingerprint recorded.
    """
    record = batch_record(storage, pipeline, batch["batch_id"]) or {}
    fingerprint = incoming.fingerprint(batch["key"])
    if record.get("fingerprint") == fingerprint:
        return True
    data = incoming.read_bytes(batch["key"])
    sha256 = hashlib.sha256(data).hexdigest()
    if not scored_from(storage, pipeline, batch["batch_id"], sha256):
        return False
    log.info("%s: delivered again with the content already scored; not scored again", batch["uri"])
    updated = {**record, "batch_id": batch["batch_id"], "sha256": sha256, "size": len(data)}
    storage.write_bytes(
        _batch_key(pipeline, batch["batch_id"]), json.dumps({**updated, "fingerprint": fingerprint}).encode()
    )
    return True


def claim(settings: Settings, pipeline: str, source: dict[str, Any], partition_uri: str) -> str | None:
    """Record that ``source["batch_id"]`` is scored from ``source["sha256"]``; if another batch
    already claimed that content, record nothing and return its id.

    Under the pipeline's lock, so two files of the same content scored at once (mapped tasks
    run in parallel) cannot both claim it. ``source`` also holds the file's key, size and
    fingerprint.
    """
    storage = home_storage(settings)
    with pipeline_lock(settings, pipeline, "scored"):
        content = _read_json(storage, _content_key(pipeline, source["sha256"]))
        if content is not None and content["batch_id"] != source["batch_id"]:
            return str(content["batch_id"])
        scored = {"batch_id": source["batch_id"], "partition": partition_uri}
        storage.write_bytes(
            _batch_key(pipeline, source["batch_id"]), json.dumps({**scored, **source}).encode()
        )
        storage.write_bytes(_content_key(pipeline, source["sha256"]), json.dumps(scored).encode())
    return None
