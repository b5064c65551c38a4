"""Input files of scoring (production batches, label files): which files are inputs, their names,
and moving one out of the way with the reason beside it, so nothing is dropped silently.

A file is an input of format ``csv`` or ``parquet`` when its suffix is one of the format's, in any
case (``.CSV``, ``.Parquet``). Its name is its path in its area without the suffix, ``/`` written
as ``__``, so files of one name in two sub-folders keep apart. Batches (ctloop.scoring.batches)
and label files (ctloop.scoring.late_labels) that cannot be used go to
``<area>/<pipeline>/<name>/`` in home storage with ``reason.json``; an operator recovers one by
fixing it and delivering it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ctloop import clock
from ctloop.io.readers import SUFFIXES
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings


SEPARATOR = "__"  # stands for "/" in a name: a name is one path segment (a batch id, a folder)


def input_name(key: str, fmt: str) -> str | None:
    """The name of ``key`` (its path without the suffix, "/" as "__"), or None when it is not a
    file of format ``fmt``."""
    suffix = next((s for s in SUFFIXES[fmt] if key.lower().endswith(s)), None)
    if suffix is None:
        return None
    return key[: -len(suffix)].replace("/", SEPARATOR)


def move_aside(
    settings: Settings, source: Storage, key: str, data: bytes, prefix: str, record: dict[str, Any]
) -> str:
    """Move ``key`` of ``source`` (whose bytes are ``data``) to ``prefix/`` in home storage with
    ``record`` and the time as ``reason.json``; returns the folder's URI.

    An earlier, different file already set aside under ``prefix`` stays: this one goes to
    ``<prefix>~<sha256 prefix>/``. The copy and its reason are written before the source file is
    deleted, so a crash in between leaves the file in both places, never in neither.
    """
    storage = home_storage(settings)
    name = PurePosixPath(key).name
    if storage.exists(f"{prefix}/{name}") and storage.read_bytes(f"{prefix}/{name}") != data:
        prefix += f"~{hashlib.sha256(data).hexdigest()[:12]}"
    storage.write_bytes(f"{prefix}/{name}", data)
    reason = {**record, "at": clock.now().isoformat()}
    storage.write_bytes(f"{prefix}/reason.json", json.dumps(reason, indent=2, default=str).encode())
    source.delete(key)
    return storage.uri(prefix)
