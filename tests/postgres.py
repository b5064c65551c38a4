"""A throwaway Postgres cluster for tests: one per pytest worker, on its own loopback port.

SQLite has no row locks and serialises every writer, so a race that Postgres lets happen never
shows on it; the concurrency tests need the real thing. The cluster lives in a temporary
directory and is removed at the end of the session. Postgres refuses to run as root, so as root
its commands run as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

INSTALL_HINT = "run scripts/install-system-deps.sh as root (make system-deps) to install postgresql"


def _bin_dir() -> Path:
    """Where initdb and pg_ctl are: Debian's versioned directory (newest), else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        pytest.fail(f"the Postgres tests need initdb and pg_ctl, which are not installed: {INSTALL_HINT}")
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A running cluster; ``url(dbname)`` is a SQLAlchemy URL for one of its databases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = _bin_dir()
        self.password = secrets.token_hex(16)
        self.port = 0
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        data, password_file = self.root / "data", self.root / "password"
        password_file.write_text(self.password)
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            "postgres",
            "--pwfile",
            str(password_file),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        # Durability settings are off: the cluster is thrown away, and tests should not wait on disk.
        options = (
            f"-c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off"
        )
        for attempt in range(3):  # a port found free can be taken before postgres binds it
            self.port = _free_port()
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "start",
                    "--pgdata",
                    str(data),
                    "--wait",
                    "--timeout",
                    "60",
                    "--log",
                    str(self.root / "postgres.log"),
                    "-o",
                    f"{options} -p {self.port}",
                )
                return
            except RuntimeError as exc:
                if attempt == 2:
                    log = self.root / "postgres.log"
                    raise RuntimeError(f"postgres did not start:\n{log.read_text()}") from exc

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run(
                str(self.bin / "pg_ctl"), "stop", "--pgdata", str(self.root / "data"), "-m", "immediate"
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg2://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create database ``dbname``; returns its URL."""
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname="postgres"
        )
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            connection.close()
        return self.url(dbname)


@pytest.fixture(scope="session")
def postgres_server():
    """This worker's Postgres cluster, started on first use and removed at the end of the session."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="ctloop-pg-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
