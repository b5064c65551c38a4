"""Per-pipeline exclusive locks held in ctloop's database, so they bind every process that uses it.

Postgres (production): a transaction-scoped advisory lock on a stable hash of (pipeline,
purpose). Processes on different machines exclude each other, and Postgres releases the lock
when the transaction ends, so a crashed holder cannot leave it behind. SQLite (the embedded
default): ``BEGIN IMMEDIATE`` takes the database file's write lock. That is one lock for every
pipeline and purpose, coarser than needed, but correct across the processes of one machine,
including the tasks Airflow's LocalExecutor forks. Both wait at most ``LOCK_TIMEOUT_S`` and then
raise, so a stuck holder shows up as a failed task instead of a hung one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ctloop.io.database import LOCK_TIMEOUT_S, WRITE_LOCK, engine

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ctloop.settings import Settings


def lock_key(name: str, purpose: str) -> int:
    """A stable, non-negative 63-bit number for (name, purpose).

    Postgres advisory locks are keyed by a bigint; Python's ``hash`` of a string differs between
    processes, so it cannot serve.
    """
    digest = hashlib.sha256(f"ctloop\0{name}\0{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextlib.contextmanager
def locked_transaction(settings: Settings, name: str, purpose: str) -> Iterator[Connection]:
    """A transaction holding the ``purpose`` lock of pipeline ``name``.

    It commits when the block ends and rolls back when it raises; the lock is released either
    way. Do not take a second lock inside it: on SQLite both are the same file lock.
    """
    from sqlalchemy import text

    with engine(settings).connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if not postgres:
            connection.execution_options(**{WRITE_LOCK: True})
        with connection.begin():
            if postgres:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name, purpose)}
                )
            yield connection


@contextlib.contextmanager
def pipeline_lock(settings: Settings, name: str, purpose: str) -> Iterator[None]:
    """Hold the ``purpose`` lock of pipeline ``name`` around work outside the database (storage
    writes): a transaction that only holds the lock."""
    with locked_transaction(settings, name, purpose):
        yield
