"""ctloop's own database (the promotion ledger and the locks): one engine per process and URL.

SQLite is the embedded default and Postgres the production database. The engine is configured
for the locks in :mod:`ctloop.io.locks`: on SQLite a connection carrying the ``WRITE_LOCK``
execution option begins its transactions with ``BEGIN IMMEDIATE``, taking the file's write lock
at once instead of at the first write.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ctloop.settings import Settings

LOCK_TIMEOUT_S = 60
WRITE_LOCK = "ctloop_sqlite_write_lock"
_engines: dict[str, Engine] = {}


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
    def _driver_does_not_begin(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sqlite, "begin")
    def _begin(connection: Connection) -> None:
        write_lock = connection.get_execution_options().get(WRITE_LOCK)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")

    return sqlite
