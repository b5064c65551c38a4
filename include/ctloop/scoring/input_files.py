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
    """:func:`move_file_aside` for a file already read (whose bytes are ``data``)."""
    return move_file_aside(settings, source, key, hashlib.sha256(data).hexdigest(), prefix, record)


def move_file_aside(
    settings: Settings, source: Storage, key: str, sha256: str, prefix: str, record: dict[str, Any]
) -> str:
    """Move ``key`` of ``source`` (whose content has ``sha256``) to ``prefix/`` in home storage with
    ``record`` and the time as ``reason.json``; returns the folder's URI. The file is copied through
    a local file, never held in memory.

    An earlier, different file already set aside under ``prefix`` stays: this one goes to
    ``<prefix>~<sha256 prefix>/``. The copy and its reason are written before the source file is
    deleted, so a crash in between leaves the file in both places, never in neither.
    """
    storage = home_storage(settings)
    name = PurePosixPath(key).name
    if storage.exists(f"{prefix}/{name}") and storage.sha256(f"{prefix}/{name}") != sha256:
        prefix += f"~{sha256[:12]}"
    source.copy_to(key, storage, f"{prefix}/{name}")
    reason = {**record, "at": clock.now().isoformat()}
    storage.write_bytes(f"{prefix}/reason.json", json.dumps(reason, indent=2, default=str).encode())
    source.delete(key)
    return storage.uri(prefix)
