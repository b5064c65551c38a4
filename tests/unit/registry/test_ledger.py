"""The promotion ledger on SQLite with a real MLflow registry: append, read back, compare-and-set."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timedelta

import pytest

from ctloop.io import database
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.helpers import REPO


@pytest.fixture
def settings(tmp_path):
    """This worker's MLflow registry, and a ctloop database of this test's own."""
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


@pytest.fixture
def client(settings):
    return registry.client(settings)


@pytest.fixture
def versions(client, tmp_path):
    """A fresh registered model with three versions: (name, ["1", "2", "3"])."""
    name = f"m{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    made = [client.create_model_version(name, source=str(tmp_path), run_id=None) for _ in range(3)]
    return name, [str(v.version) for v in made]


def _move(settings, client, name, to, expected_from, **fields):
    fields = {"action": "promotion", "reason": "test", **fields}
    return ledger.move_alias(settings, client, name, to, expected_from=expected_from, **fields)


def _champion(client, name):
    found = registry.get_champion(client, name)
    return str(found.version) if found else None


def test_moves_are_recorded_in_order_with_their_fields(settings, client, versions):
    name, (v1, v2, v3) = versions
    first = _move(settings, client, name, v1, None, run_key="train/r1", mlflow_run_id="abc")
    assert first.model_dump() == {
        "action": "promotion",
        "moved": True,
        "from": None,
        "to": v1,
        "seq": 1,
        "why": first.why,
    }
    assert _move(settings, client, name, v2, v1, gate_decision="gate passed").seq == 2
    third = _move(
        settings,
        client,
        name,
        v1,
        v2,
        action="rollback",
        reason="v2 misbehaves",
        user="cli:alice",
        approver="bob",
        evidence={"report": "s3://b/report.html"},
    )
    assert (third.moved, third.from_version, third.seq) == (True, v2, 3)
    assert _champion(client, name) == v1

    rows = ledger.entries(settings, name)
    assert [(r.seq, r.action, r.from_version, r.to_version) for r in rows] == [
        (1, "promotion", None, v1),
        (2, "promotion", v1, v2),
        (3, "rollback", v2, v1),
    ]
    assert (rows[0].run_key, rows[0].mlflow_run_id, rows[0].evidence) == ("train/r1", "abc", {})
    assert rows[1].gate_decision == "gate passed"
    assert rows[2].to_dict() == {
        **rows[2].to_dict(),
        "pipeline": name,
        "alias": "champion",
        "user": "cli:alice",
        "approver": "bob",
        "reason": "v2 misbehaves",
        "evidence": {"report": "s3://b/report.html"},
    }
    stamped = datetime.fromisoformat(rows[2].at)
    assert stamped.utcoffset() == timedelta(0)
    assert stamped >= datetime.fromisoformat(rows[0].at)
    assert ledger.entries(settings, f"{name}-other") == []


def test_moving_to_the_champion_records_nothing(settings, client, versions):
    name, (v1, _, _) = versions
    _move(settings, client, name, v1, None)
    again = _move(settings, client, name, v1, v1)
    assert (again.moved, again.seq, again.from_version) == (False, None, v1)
    assert "already champion" in again.why
    assert len(ledger.entries(settings, name)) == 1


def test_a_move_decided_against_a_stale_champion_is_refused_or_redecided(settings, client, versions):
    name, (v1, v2, v3) = versions
    _move(settings, client, name, v1, None)
    _move(settings, client, name, v2, v1)

    refused = _move(settings, client, name, v3, v1)
    assert (refused.moved, refused.from_version, refused.seq) == (False, v2, None)
    assert "champion moved from v1 to v2" in refused.why

    seen = []

    def worse(champion):
        seen.append(str(champion.version))
        return False, "v3 is worse than v2"

    assert not _move(settings, client, name, v3, v1, decide=worse).moved
    assert seen == [v2]
    assert _champion(client, name) == v2
    assert len(ledger.entries(settings, name)) == 2

    better = _move(settings, client, name, v3, v1, decide=lambda c: (True, "v3 beats v2"), gate_decision="g")
    assert (better.moved, better.from_version, better.seq) == (True, v2, 3)
    assert _champion(client, name) == v3
    assert ledger.entries(settings, name)[-1].gate_decision.startswith("g | champion moved from v1 to v2")
    assert "v3 beats v2" in ledger.entries(settings, name)[-1].gate_decision


def test_no_row_remains_when_the_alias_cannot_be_set(settings, client, versions, monkeypatch):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)

    def refuse(*args):
        raise RuntimeError("registry unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(client, "set_registered_model_alias", refuse)
        with pytest.raises(RuntimeError, match="registry unavailable"):
            _move(settings, client, name, v2, v1)
    assert [r.to_version for r in ledger.entries(settings, name)] == [v1]
    assert _champion(client, name) == v1
    assert _move(settings, client, name, v2, v1).seq == 2  # no gap either


def test_the_alias_is_put_back_when_the_row_cannot_be_committed(settings, client, versions):
    from sqlalchemy import event

    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)

    def fail_commit(connection):
        raise RuntimeError("disk full")

    engine = database.engine(settings)
    event.listen(engine, "commit", fail_commit)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            _move(settings, client, name, v2, v1)
    finally:
        event.remove(engine, "commit", fail_commit)
    assert _champion(client, name) == v1
    assert [r.to_version for r in ledger.entries(settings, name)] == [v1]


def test_entries_are_durable_across_processes(settings, client, versions):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None, evidence={"run": "runs:/abc"})
    _move(settings, client, name, v2, v1)
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from ctloop.registry import ledger; from ctloop.settings import load_settings;"
            " print(json.dumps([e.to_dict() for e in ledger.entries(load_settings(), sys.argv[1])]))",
            name,
        ],
        env={"CTLOOP_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(read.stdout) == [e.to_dict() for e in ledger.entries(settings, name)]
    assert len(json.loads(read.stdout)) == 2


def test_the_database_refuses_a_second_row_with_the_same_seq(settings, client, versions):
    name, (v1, v2, v3) = versions
    _move(settings, client, name, v1, None)
    _move(settings, client, name, v2, v1)
    insert = (
        "INSERT INTO promotion_ledger (pipeline, seq, action, alias, from_version, to_version, at,"
        " reason, gate_decision, evidence) VALUES (?, ?, 'promotion', 'champion', ?, ?, 'now', '', '', '{}')"
    )
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as connection:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            connection.execute(insert, (name, 2, v1, v3))
        connection.execute(insert, (f"{name}-other", 2, v1, v3))  # seq is per pipeline


def test_an_unknown_action_is_refused(settings, client, versions):
    name, (v1, _, _) = versions
    with pytest.raises(ValueError, match="'promote' is not one of promotion, rollback, override"):
        _move(settings, client, name, v1, None, action="promote")
    assert _champion(client, name) is None


def _create(settings, start, results) -> None:
    start.wait()
    try:
        ledger.create_tables(settings)
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_processes_creating_the_tables_at_once_on_a_fresh_file_all_succeed(settings):
    context = multiprocessing.get_context("fork")
    workers = 6
    start, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_create, args=(settings, start, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * workers
    assert ledger.entries(settings, "nothing") == []
