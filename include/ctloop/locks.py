"""Per-pipeline exclusive locks for read-modify-write steps (alias moves, the retrain ledger).

A file lock under CTLOOP_HOME serves the embedded single-machine default; a multi-machine stack
needs a lock in the shared database instead.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctloop.settings import Settings


@contextlib.contextmanager
def pipeline_lock(settings: Settings, name: str, purpose: str) -> Iterator[None]:
    """Hold the ``purpose`` lock of pipeline ``name``, shared by every process on this machine."""
    lock_dir = settings.home / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.{purpose}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
