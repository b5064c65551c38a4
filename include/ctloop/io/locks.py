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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ctloop.settings import Settings

LOCK_TIMEOUT_S = 60
_WRITE_LOCK = "ctloop_sqlite_write_lock"
_engines: dict[str, Engine] = {}


def lock_key(name: str, purpose: str) -> int:
    """A stable, non-negative 63-bit number for (name, purpose).

    Postgres advisory locks are keyed by a bigint; Python's ``hash`` of a string differs between
    processes, so it cannot serve.
    """
    digest = hashlib.sha256(f"ctloop\0{name}\0{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def engine(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``, created once per process and URL.

    Its pool is a NullPool: a connection lives only inside one ``with`` block, so a process
    forked from one that used the engine never shares a connection with it. Locks are taken
    rarely, so a fresh connection each time costs little.
    """
    found = _engines.get(settings.database_url)
    if found is None:
        found = _engines.setdefault(settings.database_url, _create_engine(settings.database_url))
    return found


def _create_engine(database_url: str) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        # READ COMMITTED takes a snapshot per statement, so reads after the lock is granted see
        # what the previous holder committed; REPEATABLE READ would keep an older snapshot.
        return create_engine(url, poolclass=NullPool, isolation_level="READ COMMITTED")
    if backend != "sqlite":
        raise ValueError(f"CTLOOP_DATABASE_URL: {backend} is not supported; use postgresql or sqlite")
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite = create_engine(url, poolclass=NullPool, connect_args={"timeout": LOCK_TIMEOUT_S})

    # The sqlite3 driver starts transactions lazily and never with BEGIN IMMEDIATE; let
    # SQLAlchemy emit BEGIN itself (SQLAlchemy's documented recipe for SQLite transactions).
    @event.listens_for(sqlite, "connect")
    def _driver_does_not_begin(dbapi_connection, connection_record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sqlite, "begin")
    def _begin(connection: Connection) -> None:
        write_lock = connection.get_execution_options().get(_WRITE_LOCK)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")

    return sqlite


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
            connection.execution_options(**{_WRITE_LOCK: True})
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
