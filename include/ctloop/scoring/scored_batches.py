"""What was scored from what: each batch id's content, and each content's batch id.

Two records per batch: ``scored/<pipeline>/batches/<batch id>.json`` (the file's sha256, size and
storage fingerprint) tells whether a file delivered again under a scored id holds other content;
``scored/<pipeline>/<sha256>.json`` tells whether a new file repeats content already scored
under another id. A file whose fingerprint matches its record is not read again on later runs.

Claiming is two-phase, so a batch counts as scored only once its predictions are written:
:func:`reserve` (before predicting) writes both records with ``"state": "reserved"``, which
already keeps a second file of the same content from being scored under another id;
:func:`commit` (after the partition is written) rewrites them without a state: scored.
:func:`release` drops a reservation whose batch was set aside. A reservation left by a crash is
not "scored": the batch is scored again on the next run, under its own reservation.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ctloop.io.locks import pipeline_lock
from ctloop.io.storage import fingerprint_size, home_storage

if TYPE_CHECKING:
    from ctloop.io.storage import Storage
    from ctloop.scoring.batches import Batch
    from ctloop.settings import Settings

log = logging.getLogger(__name__)

RESERVED = "reserved"


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


def reserved(storage: Storage, pipeline: str, batch_id: str) -> bool:
    """Whether ``batch_id`` was reserved and not committed: its scoring never finished."""
    record = batch_record(storage, pipeline, batch_id)
    return record is not None and record.get("state") == RESERVED


def committed(storage: Storage, pipeline: str, batch_id: str) -> bool:
    """Whether the batch id was scored: its record is committed (from whichever content)."""
    record = batch_record(storage, pipeline, batch_id)
    return record is not None and record.get("state") != RESERVED


def scored_from(storage: Storage, pipeline: str, batch_id: str, sha256: str) -> bool:
    """Whether ``batch_id`` was scored (committed) from the content ``sha256``."""
    record = batch_record(storage, pipeline, batch_id)
    if record is not None:
        return bool(record["sha256"] == sha256 and record.get("state") != RESERVED)
    content = _read_json(storage, _content_key(pipeline, sha256))  # scored before batch records existed
    return content is not None and content["batch_id"] == batch_id


def unchanged_since_scored(storage: Storage, incoming: Storage, pipeline: str, batch: Batch) -> bool:
    """Whether a scored batch's incoming file still holds the content it was scored from.

    A matching fingerprint answers without reading the file; otherwise the file is hashed once,
    and a re-delivery of the same content gets its new fingerprint recorded.
    """
    record = batch_record(storage, pipeline, batch["batch_id"]) or {}
    if record.get("state") == RESERVED:
        return False
    fingerprint = incoming.fingerprint(batch["key"])
    if record.get("fingerprint") == fingerprint:
        return True
    sha256 = incoming.sha256(batch["key"])  # streamed: a batch may be larger than memory
    if not scored_from(storage, pipeline, batch["batch_id"], sha256):
        return False
    log.info("%s: delivered again with the content already scored; not scored again", batch["uri"])
    updated = {
        **record,
        "batch_id": batch["batch_id"],
        "sha256": sha256,
        "size": fingerprint_size(fingerprint),
    }
    _write(storage, _batch_key(pipeline, batch["batch_id"]), {**updated, "fingerprint": fingerprint})
    return True


def reserve(settings: Settings, pipeline: str, source: dict[str, Any]) -> str | None:
    """Reserve ``source["sha256"]`` for ``source["batch_id"]`` before it is predicted; if another
    batch id already reserved or scored that content, reserve nothing and return that id.

    Under the pipeline's lock, so two files of the same content scored at once (mapped tasks
    run in parallel) cannot both reserve it. ``source`` also holds the file's key, size and
    fingerprint. A batch already scored from this content keeps its record until :func:`commit`.
    """
    storage = home_storage(settings)
    batch_id = source["batch_id"]
    with pipeline_lock(settings, pipeline, "scored"):
        content = _read_json(storage, _content_key(pipeline, source["sha256"]))
        if content is not None and content["batch_id"] != batch_id:
            return str(content["batch_id"])
        earlier = batch_record(storage, pipeline, batch_id)
        if earlier is not None and earlier.get("state") == RESERVED and earlier["sha256"] != source["sha256"]:
            _drop_reservation(storage, _content_key(pipeline, earlier["sha256"]), batch_id)
        if not scored_from(storage, pipeline, batch_id, source["sha256"]):
            _write(storage, _batch_key(pipeline, batch_id), {**source, "state": RESERVED})
        if content is None:
            _write(
                storage, _content_key(pipeline, source["sha256"]), {"batch_id": batch_id, "state": RESERVED}
            )
    return None


def commit(settings: Settings, pipeline: str, source: dict[str, Any], partition_uri: str) -> None:
    """Record that ``source["batch_id"]`` is scored from ``source["sha256"]`` into ``partition_uri``:
    called only once the partition is written."""
    storage = home_storage(settings)
    scored = {"batch_id": source["batch_id"], "partition": partition_uri}
    with pipeline_lock(settings, pipeline, "scored"):
        _write(storage, _batch_key(pipeline, source["batch_id"]), {**scored, **source})
        _write(storage, _content_key(pipeline, source["sha256"]), scored)


def release(settings: Settings, pipeline: str, source: dict[str, Any]) -> None:
    """Drop what :func:`reserve` wrote for ``source`` (a batch set aside), and nothing else."""
    storage = home_storage(settings)
    batch_key, content_key = (
        _batch_key(pipeline, source["batch_id"]),
        _content_key(pipeline, source["sha256"]),
    )
    with pipeline_lock(settings, pipeline, "scored"):
        record = _read_json(storage, batch_key)
        if record is not None and record.get("state") == RESERVED and record["sha256"] == source["sha256"]:
            storage.delete(batch_key)
        _drop_reservation(storage, content_key, source["batch_id"])


def _drop_reservation(storage: Storage, content_key: str, batch_id: str) -> None:
    """Delete the content record at ``content_key`` if it is ``batch_id``'s unfinished reservation."""
    content = _read_json(storage, content_key)
    if content is not None and content.get("state") == RESERVED and content["batch_id"] == batch_id:
        storage.delete(content_key)


def _write(storage: Storage, key: str, record: dict[str, Any]) -> None:
    storage.write_bytes(key, json.dumps(record).encode())
