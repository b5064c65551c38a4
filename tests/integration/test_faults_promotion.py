"""Promotion killed at every boundary of its protocol, then touched again.

Each case promotes (or rolls back) in a subprocess that ``CTLOOP_FAULT`` kills at one point, as
``kill -9`` would, against this worker's real MLflow store and a real SQLite ledger. Then the next
touch (a retry of the same promotion, the next promotion, or a reader of the ledger) must leave
the ledger, the ``champion`` alias and the version tags in agreement: one completed move per
alias move, nothing left ``intent``, and the next promotion recorded from the right champion.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from ctloop.gating.decision import GateDecision
from ctloop.registry import faults, ledger
from ctloop.registry import mlflow_store as registry
from ctloop.registry.promotion import promote
from ctloop.registry.rollback import rollback
from ctloop.settings import load_settings
from tests.forked import Forked

pytestmark = pytest.mark.integration

# Points after which the alias has moved, and the one before.
MOVED = ["ledger.after_alias", "ledger.during_tags", "ledger.before_done", "ledger.after_done"]
POINTS = ["ledger.after_intent", *MOVED]


def _decision(against: str | None) -> GateDecision:
    return GateDecision.model_validate(
        {
            "mode": "enabled",
            "rules": [],
            "promote": True,
            "passed": True,
            "failed": [],
            "champion_version": against,
            "summary": "gate passed",
        }
    )


def _no_reevaluation(champion: object) -> GateDecision:
    raise AssertionError("no re-evaluation expected")


def move(kind: str, name: str, version: str, against: str | None) -> dict:
    """A promotion of ``version`` decided against champion ``against`` (or a rollback to
    ``version``), as the promote task (the rollback DAG) makes it; what it did."""
    settings = load_settings()
    if kind == "rollback":
        return rollback(settings, name, target=version, reason="fault test").model_dump(mode="json")
    outcome = promote(
        registry.client(settings),
        settings,
        name,
        version,
        _decision(against),
        _no_reevaluation,
        reason="fault test",
    )
    return outcome.model_dump(mode="json")


def _start(
    kind: str, name: str, version: str, against: str | None, fault: str | None, **environ: str
) -> Forked:
    """One promotion (or rollback) in its own process, to be killed at ``fault``."""
    environ = {**{key: value for key, value in os.environ.items() if key != faults.ENV}, **environ}
    if fault:
        environ[faults.ENV] = fault
    return Forked(move, kind, name, version, against, environ=environ)


def _run(
    kind: str, name: str, version: str, against: str | None, fault: str | None
) -> subprocess.CompletedProcess:
    process = _start(kind, name, version, against, fault)
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(kind, process.returncode, stdout, stderr)


def _model(settings):
    """A registered model with three gated versions and v1 as champion: (settings, client, name)."""
    client = registry.client(settings)
    name = f"f{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    for _ in range(3):
        created = client.create_model_version(name, source=str(settings.home), run_id=None)
        client.set_model_version_tag(name, created.version, "ctloop.gate", "passed")
        client.set_model_version_tag(name, created.version, "ctloop.model_sha256", "a-recorded-digest")
    promote(client, settings, name, "1", _decision(None), lambda c: pytest.fail("no re-evaluation"))
    return settings, client, name


@pytest.fixture
def model():
    return _model(load_settings())


def _champion(client, name) -> str | None:
    found = registry.get_champion(client, name)
    return str(found.version) if found else None


def _stored(settings, name) -> list[tuple[int, str, str]]:
    """The rows as stored, without settling them (``entries`` would)."""
    import sqlite3

    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as connection:
        query = "SELECT seq, state, to_version FROM promotion_ledger WHERE pipeline = ? ORDER BY seq"
        return connection.execute(query, (name,)).fetchall()


def _assert_agree(settings, client, name, champions: list[str]) -> None:
    """The ledger's completed moves are exactly the alias moves ``champions`` (in order), one
    chain ending at the alias, none left in intent, and the champion's tags name its last move."""
    rows = ledger.entries(settings, name, every_state=True)
    assert [r.seq for r in rows if r.state == "intent"] == [], rows
    done = [r for r in rows if r.state == "done"]
    assert [r.to_version for r in done] == champions, rows
    assert [r.from_version for r in done] == [None, *champions[:-1]], rows
    assert _champion(client, name) == champions[-1]
    written = client.get_model_version(name, champions[-1]).tags
    assert {key: written.get(key) for key in ledger.version_tags(done[-1])} == ledger.version_tags(done[-1])
    for abandoned in (r for r in rows if r.state == "abandoned"):
        tags = client.get_model_version(name, abandoned.to_version).tags
        assert tags.get("ctloop.ledger_seq") != str(abandoned.seq)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("touch", ["retry", "next_promotion", "reader"])
def test_a_promotion_killed_at_any_point_is_settled_by_the_next_touch(model, point, touch):
    settings, client, name = model
    killed = _run("promotion", name, "2", "1", point)
    assert killed.returncode == faults.KILLED_EXIT_CODE, killed.stderr[-3000:]
    moved = point in MOVED
    assert _champion(client, name) == ("2" if moved else "1")
    state = "done" if point == "ledger.after_done" else "intent"
    assert _stored(settings, name) == [(1, "done", "1"), (2, state, "2")]

    champions = ["1", "2"] if moved else ["1"]
    if touch == "retry":
        again = move("promotion", name, "2", "1")  # in this process: only a killed move needs its own
        assert again["action"] == ("already_champion" if moved else "promoted"), again
        assert again["seq"] == (None if moved else 3)
        champions = ["1", "2"]
    elif touch == "reader":
        assert [e.to_version for e in ledger.entries(settings, name)] == champions
    _assert_agree(settings, client, name, champions)

    # the next normal promotion, decided against the champion the registry shows, is recorded from it
    following = move("promotion", name, "3", champions[-1])
    assert (following["action"], following["previous"]) == ("promoted", champions[-1])
    _assert_agree(settings, client, name, [*champions, "3"])
    assert len(ledger.entries(settings, name, every_state=True)) == len(champions) + 1 + (not moved)


@pytest.mark.parametrize("point", ["ledger.after_intent", "ledger.during_tags"])
def test_a_rollback_killed_mid_way_is_settled_by_the_next_reader(model, point):
    settings, client, name = model
    promote(client, settings, name, "2", _decision("1"), lambda c: pytest.fail("no re-evaluation"))
    killed = _run("rollback", name, "1", "2", point)
    assert killed.returncode == faults.KILLED_EXIT_CODE, killed.stderr[-3000:]

    moved = point != "ledger.after_intent"
    champions = ["1", "2", "1"] if moved else ["1", "2"]
    assert [e.to_version for e in ledger.entries(settings, name)] == champions
    _assert_agree(settings, client, name, champions)
    if moved:
        assert client.get_model_version(name, "1").tags["ctloop.promotion"] == "rollback"
    else:  # the operator's retry rolls back, from the right champion
        outcome = rollback(settings, name, target="previous", reason="retry")
        assert (outcome.from_version, outcome.to, outcome.seq) == ("2", "1", 4)
        _assert_agree(settings, client, name, ["1", "2", "1"])


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database(f"ctloop_{uuid.uuid4().hex[:8]}")


def test_on_postgres_a_promotion_racing_one_killed_under_the_lock_goes_through(postgres_url):
    """The killed process holds the session's advisory lock: Postgres must free it with the dead
    connection, and whichever order the two took, the ledger must agree with the registry."""
    settings, client, name = _model(load_settings().model_copy(update={"database_url": postgres_url}))
    killed = _start("promotion", name, "2", "1", "ledger.after_intent", CTLOOP_DATABASE_URL=postgres_url)
    racing = _start("promotion", name, "3", "1", None, CTLOOP_DATABASE_URL=postgres_url)
    out, err = racing.communicate(timeout=180)
    assert racing.returncode == 0, err[-3000:]
    assert (json.loads(out)["action"], json.loads(out)["previous"]) == ("promoted", "1")
    killed.communicate(timeout=180)
    # killed holding the lock, or (when it came second) refused: the champion had moved
    assert killed.returncode in (faults.KILLED_EXIT_CODE, 1)
    _assert_agree(settings, client, name, ["1", "3"])
    following = promote(
        client, settings, name, "2", _decision("3"), lambda c: pytest.fail("no re-evaluation")
    )
    assert (following.action, following.previous) == ("promoted", "3")
    _assert_agree(settings, client, name, ["1", "3", "2"])


def test_on_postgres_a_ledger_of_an_earlier_release_gains_the_state_column(postgres_url):
    from sqlalchemy import create_engine, text

    old_schema = (
        "CREATE TABLE promotion_ledger (id SERIAL PRIMARY KEY, pipeline VARCHAR(250) NOT NULL,"
        " seq INTEGER NOT NULL, action VARCHAR(16) NOT NULL, alias VARCHAR(64) NOT NULL,"
        " from_version VARCHAR(32), to_version VARCHAR(32) NOT NULL, at VARCHAR(40) NOT NULL, run_key TEXT,"
        ' mlflow_run_id VARCHAR(64), "user" VARCHAR(250), reason TEXT NOT NULL, gate_decision TEXT NOT NULL,'
        " approver VARCHAR(250), evidence TEXT NOT NULL, UNIQUE (pipeline, seq))"
    )
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(old_schema))
        connection.execute(
            text(
                "INSERT INTO promotion_ledger (pipeline, seq, action, alias, to_version, at, reason,"
                " gate_decision, evidence) VALUES ('old', 1, 'promotion', 'champion', '1',"
                " '2026-01-01T00:00:00+00:00', '', '', '{}')"
            )
        )
    engine.dispose()
    (entry,) = ledger.entries(load_settings().model_copy(update={"database_url": postgres_url}), "old")
    assert (entry.seq, entry.state, entry.reevaluated) == (1, "done", False)
