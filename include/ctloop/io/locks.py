"""Per-pipeline exclusive locks held in ctloop's database, so they bind every process that uses it.

Postgres (production): a transaction-scoped advisory lock on a stable hash of (pipeline,
purpose). Processes on different machines exclude each other, and Postgres releases the lock
when the transaction ends, so a crashed holder cannot leave it behind. SQLite (the embedded
default): ``BEGIN IMMEDIATE`` takes the database file's write lock. That is one lock for every
pipeline and purpose, coarser than needed, but correct across the processes of one machine,
including the tasks Airflow's LocalExecutor forks. Both wait at most ``LOCK_TIMEOUT_S`` and then
raise, so a stuck holder shows up as a failed task instead of a hung one. :func:`held_lock`
keeps a lock across several commits, for protocols whose steps must each be durable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.io.database import LOCK_TIMEOUT_S, WRITE_LOCK, engine

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ctloop.settings import Settings


class LockBusy(Exception):
    """Another process holds the lock, and the caller asked not to wait for it."""


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
def held_lock(settings: Settings, name: str, purpose: str, *, wait: bool = True) -> Iterator[Connection]:
    """Hold the ``purpose`` lock of pipeline ``name`` across several transactions.

    Yields a connection on which the caller begins and commits its own transactions, so what it
    commits is durable while others are still kept out; on SQLite those transactions begin with
    ``BEGIN IMMEDIATE``. With ``wait=False`` it raises :class:`LockBusy` at once when another
    process holds the lock. On Postgres the lock is a session advisory lock; on SQLite, whose
    transactions cannot outlive a commit, a ``flock`` on a file beside the database. A process
    that dies holding it releases it: Postgres ends the session with the connection, and the
    kernel drops a dead process's ``flock``.
    """
    from sqlalchemy import text

    with engine(settings).connect() as connection:
        if connection.dialect.name != "postgresql":
            connection.execution_options(**{WRITE_LOCK: True})
            database = connection.engine.url.database
            if not database or database == ":memory:":
                raise ValueError("CTLOOP_DATABASE_URL: an in-memory SQLite database cannot hold locks")
            with _file_lock(Path(f"{database}.locks") / f"{lock_key(name, purpose):016x}", wait):
                yield connection
            return
        key = {"key": lock_key(name, purpose)}
        with connection.begin():
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
            if wait:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            held = wait or connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar_one()
        if not held:
            raise LockBusy(f"{name}: the {purpose} lock is held by another process")
        try:
            yield connection
        finally:
            if connection.in_transaction():
                connection.rollback()
            with connection.begin():
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)


@contextlib.contextmanager
def _file_lock(path: Path, wait: bool) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, polled for at most ``LOCK_TIMEOUT_S`` (not at all with
    ``wait=False``: :class:`LockBusy`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise LockBusy(f"{path}: held by another process") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{path}: lock held by another process for {LOCK_TIMEOUT_S}s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def pipeline_lock(settings: Settings, name: str, purpose: str) -> Iterator[None]:
    """Hold the ``purpose`` lock of pipeline ``name`` around work outside the database (storage
    writes): a transaction that only holds the lock."""
    with locked_transaction(settings, name, purpose):
        yield
