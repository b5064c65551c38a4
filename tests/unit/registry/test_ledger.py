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
from ctloop.io.locks import held_lock
from ctloop.registry import faults, ledger
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


def _interrupted(monkeypatch, point, settings, client, name, to, expected_from):
    """A move of ``champion`` that fails at the fault ``point``, as a process dying there would leave it."""
    monkeypatch.setenv(faults.ENV, f"{point}:raise")
    with pytest.raises(faults.InjectedFault):
        _move(settings, client, name, to, expected_from)
    monkeypatch.delenv(faults.ENV)


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


def _states(settings, name):
    return [(e.seq, e.state, e.to_version) for e in ledger.entries(settings, name, every_state=True)]


def _raw_states(settings, name):
    """The rows as stored, read past ``entries`` (which settles what it finds)."""
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as connection:
        query = "SELECT seq, state, to_version FROM promotion_ledger WHERE pipeline = ? ORDER BY seq"
        return connection.execute(query, (name,)).fetchall()


def test_a_move_whose_alias_cannot_be_set_is_recorded_as_abandoned(settings, client, versions, monkeypatch):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)

    def refuse(*args):
        raise RuntimeError("registry unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(client, "set_registered_model_alias", refuse)
        with pytest.raises(RuntimeError, match="registry unavailable"):
            _move(settings, client, name, v2, v1)
    assert _raw_states(settings, name) == [(1, "done", v1), (2, "abandoned", v2)]
    assert [r.to_version for r in ledger.entries(settings, name)] == [v1]
    assert _champion(client, name) == v1
    assert _move(settings, client, name, v2, v1).seq == 3
    assert _states(settings, name) == [(1, "done", v1), (2, "abandoned", v2), (3, "done", v2)]


def test_an_interrupted_alias_write_that_did_move_is_completed(settings, client, versions, monkeypatch):
    """The alias write answered with an error although MLflow had moved the alias."""
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)
    set_alias = client.set_registered_model_alias

    def moved_then_failed(*args):
        set_alias(*args)
        raise RuntimeError("connection reset")

    with monkeypatch.context() as patched:
        patched.setattr(client, "set_registered_model_alias", moved_then_failed)
        with pytest.raises(RuntimeError, match="connection reset"):
            _move(settings, client, name, v2, v1)
    assert _raw_states(settings, name) == [(1, "done", v1), (2, "done", v2)]
    assert client.get_model_version(name, v2).tags["ctloop.ledger_seq"] == "2"


def test_a_move_interrupted_before_its_completion_is_finished_by_the_next_reader(
    settings, client, versions, monkeypatch
):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)
    monkeypatch.setenv(faults.ENV, "ledger.during_tags:raise")
    with pytest.raises(faults.InjectedFault):
        _move(settings, client, name, v2, v1, action="rollback")
    monkeypatch.delenv(faults.ENV)
    assert _champion(client, name) == v2
    assert _raw_states(settings, name) == [(1, "done", v1), (2, "intent", v2)]
    assert "ctloop.ledger_seq" not in client.get_model_version(name, v2).tags

    assert [(e.seq, e.state, e.from_version) for e in ledger.entries(settings, name)] == [
        (1, "done", None),
        (2, "done", v1),
    ]
    written = client.get_model_version(name, v2).tags
    assert (
        written["ctloop.promotion"],
        written["ctloop.previous_champion"],
        written["ctloop.ledger_seq"],
    ) == (
        "rollback",
        v1,
        "2",
    )


def test_a_move_interrupted_before_the_alias_is_abandoned_by_the_next_move(
    settings, client, versions, monkeypatch
):
    name, (v1, v2, v3) = versions
    _move(settings, client, name, v1, None)
    _interrupted(monkeypatch, "ledger.after_intent", settings, client, name, v2, v1)
    assert _raw_states(settings, name) == [(1, "done", v1), (2, "intent", v2)]

    third = _move(settings, client, name, v3, v1)
    assert (third.moved, third.from_version, third.seq) == (True, v1, 3)
    assert _states(settings, name) == [(1, "done", v1), (2, "abandoned", v2), (3, "done", v3)]
    assert "ctloop.ledger_seq" not in client.get_model_version(name, v2).tags


def test_a_reader_that_cannot_reach_mlflow_leaves_the_move_unfinished(
    settings, client, versions, monkeypatch
):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)
    _interrupted(monkeypatch, "ledger.after_alias", settings, client, name, v2, v1)

    class Unreachable:
        def get_model_version_by_alias(self, *args):
            raise ConnectionError("mlflow is down")

    with monkeypatch.context() as patched:
        patched.setattr(ledger, "client", lambda settings: Unreachable())
        assert [e.seq for e in ledger.entries(settings, name)] == [1]
        assert _states(settings, name) == [(1, "done", v1), (2, "intent", v2)]
    assert [e.seq for e in ledger.entries(settings, name)] == [1, 2]


def test_a_reader_leaves_a_move_under_way_alone(settings, client, versions, monkeypatch):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)
    _interrupted(monkeypatch, "ledger.after_intent", settings, client, name, v2, v1)
    with held_lock(settings, name, "promotion"):
        assert _states(settings, name) == [(1, "done", v1), (2, "intent", v2)]
    assert _states(settings, name) == [(1, "done", v1), (2, "abandoned", v2)]


def test_a_database_of_an_earlier_release_gains_the_state_column(settings):
    old_schema = (
        "CREATE TABLE promotion_ledger (id INTEGER PRIMARY KEY, pipeline VARCHAR(250) NOT NULL,"
        " seq INTEGER NOT NULL, action VARCHAR(16) NOT NULL, alias VARCHAR(64) NOT NULL,"
        " from_version VARCHAR(32), to_version VARCHAR(32) NOT NULL, at VARCHAR(40) NOT NULL, run_key TEXT,"
        " mlflow_run_id VARCHAR(64), user VARCHAR(250), reason TEXT NOT NULL, gate_decision TEXT NOT NULL,"
        " approver VARCHAR(250), evidence TEXT NOT NULL, UNIQUE (pipeline, seq))"
    )
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute(old_schema)
        connection.execute(
            "INSERT INTO promotion_ledger (pipeline, seq, action, alias, to_version, at, reason,"
            " gate_decision, evidence) VALUES ('old', 1, 'promotion', 'champion', '1', ?, '', '', '{}')",
            ("2026-01-01T00:00:00+00:00",),
        )
    (entry,) = ledger.entries(settings, "old")
    assert (entry.seq, entry.state, entry.reevaluated) == (1, "done", False)


def test_nothing_moves_when_the_intent_cannot_be_committed(settings, client, versions):
    from sqlalchemy import Insert, event

    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None)

    def note_insert(connection, clause, *args):
        if isinstance(clause, Insert):
            connection.info["inserted"] = True

    def fail_commit(connection):
        if connection.info.pop("inserted", False):
            raise RuntimeError("disk full")

    engine = database.engine(settings)
    event.listen(engine, "after_execute", note_insert)
    event.listen(engine, "commit", fail_commit)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            _move(settings, client, name, v2, v1)
    finally:
        event.remove(engine, "commit", fail_commit)
        event.remove(engine, "after_execute", note_insert)
    assert _champion(client, name) == v1
    assert _raw_states(settings, name) == [(1, "done", v1)]


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


def test_ctloop_ledger_settles_and_shows_every_state(settings, client, versions, monkeypatch, capsys):
    from ctloop.cli import main

    name, (v1, v2, v3) = versions
    _move(settings, client, name, v1, None)
    for fault, version in (("ledger.after_intent", v2), ("ledger.before_done", v3)):
        monkeypatch.setenv(faults.ENV, f"{fault}:raise")
        with pytest.raises(faults.InjectedFault):
            _move(settings, client, name, version, v1)
    monkeypatch.delenv(faults.ENV)
    monkeypatch.setenv("CTLOOP_DATABASE_URL", settings.database_url)
    assert main(["ledger", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["#1", "#2", "#3"]
    assert "[abandoned]" in lines[1]
    assert "[" not in lines[0] + lines[2]
    assert f"v{v1} -> v{v3}" in lines[2]
    assert main(["ledger", name, "--json"]) == 0
    assert [row["state"] for row in json.loads(capsys.readouterr().out)] == ["done", "abandoned", "done"]


@pytest.mark.parametrize(
    ("trigger", "user", "alert_id", "by", "automatic"),
    [
        ("manual", "alice", "", "alice", False),
        ("manual", None, "", "manual", False),  # Airflow recorded no person (dag.test)
        ("schedule", "alice", "", "schedule", True),
        ("asset", None, "", "monitor", True),  # the monitor's retrain request
        ("alert", "pagerduty-bot", "PD-42", "alert:PD-42", True),
    ],
)
def test_a_move_names_the_person_or_the_automatic_actor(trigger, user, alert_id, by, automatic):
    assert ledger.actor(trigger, user, alert_id) == by
    assert ledger.is_automatic(by) is automatic


def test_a_recorded_actor_is_read_back_with_whether_it_was_automatic(settings, client, versions):
    name, (v1, v2, _) = versions
    _move(settings, client, name, v1, None, user=ledger.actor("schedule"))
    _move(settings, client, name, v2, v1, reason="drift: 3 of 5 features", user=ledger.actor("asset"))
    _move(settings, client, name, v1, v2, action="rollback", reason="v2 regressed", user="cli:alice")
    rows = ledger.entries(settings, name)
    assert [(r.user, r.automatic) for r in rows] == [
        ("schedule", True),
        ("monitor", True),
        ("cli:alice", False),
    ]
    assert "automatic" not in rows[0].to_dict()  # a derived view, not a column
