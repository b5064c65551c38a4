"""Promotions racing from two processes on real Postgres: MLflow's stores and ctloop's ledger.

Each round registers two candidates that both beat the champion, a good one and a better one,
and promotes them from two processes released by one barrier (at once, or one slightly ahead of
the other, both ways round). Whatever the order, the better one must end as champion, and the
ledger must stay one gapless chain of moves: never the better one replaced by the good one.
"""

from __future__ import annotations

import contextlib
import queue as queue_module
import time
import uuid

import pytest

from ctloop.gating.decision import GateDecision
from ctloop.registry import ledger
from ctloop.registry.promotion import primary_comparison, promote
from ctloop.settings import load_settings
from tests.forked import CONTEXT

pytestmark = pytest.mark.integration

PIPELINE = "race"
METRIC_TAG = "ctloop.test_roc_auc"
ROUNDS = 6
# (delay of the good candidate's process, delay of the better one's) after the barrier
DELAYS = [(0.0, 0.0), (0.0, 0.3), (0.3, 0.0)]


def _decision(against: str | None, primary: dict | None = None) -> GateDecision:
    """A passing gate decision with no rule relative to the champion."""
    decision = {
        "mode": "enabled",
        "rules": [],
        "promote": True,
        "passed": True,
        "champion_version": against,
        "failed": [],
        "summary": "gate passed: roc_auc at_least 0.6",
    }
    return GateDecision.model_validate(decision if primary is None else {**decision, "primary": primary})


def _promote(settings, client, task: dict) -> dict:
    """What the train DAG's promote task does, with the metrics read from the versions' tags."""
    version = task["version"]
    own = {"roc_auc": float(client.get_model_version(PIPELINE, version).tags[METRIC_TAG])}

    def reevaluate(champion) -> GateDecision:
        theirs = None if champion is None else {"roc_auc": float(champion.tags[METRIC_TAG])}
        primary = primary_comparison("classification", "roc_auc", own, theirs)
        return _decision(str(champion.version) if champion else None, primary)

    return promote(
        client,
        settings,
        PIPELINE,
        version,
        _decision(task["against"]),
        reevaluate,
        reason="race test",
        run_key=f"{PIPELINE}__train/{task['role']}-{task['round']}",
    ).model_dump(mode="json")


def _worker(environ: dict, tasks, results, start) -> None:
    """One promoting process: waits at the barrier for each task, then runs it."""
    import mlflow

    settings = load_settings(environ)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    while (task := tasks.get()) is not None:
        start.wait()
        time.sleep(task["delay"])
        try:
            if task["kind"] == "create_tables":
                ledger.create_tables(settings)
                results.put({"role": task["role"], "created": True})
            else:
                results.put({"role": task["role"], **_promote(settings, client, task)})
        except Exception as exc:  # reported to the test, which shows it
            results.put({"role": task["role"], "error": repr(exc)})


@pytest.fixture
def environ(postgres_server, tmp_path) -> dict:
    suffix = uuid.uuid4().hex[:8]
    return {
        "CTLOOP_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": postgres_server.create_database(f"mlflow_{suffix}"),
        "CTLOOP_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "CTLOOP_DATABASE_URL": postgres_server.create_database(f"ctloop_{suffix}"),
    }


@pytest.fixture
def client(environ):
    """An MLflow client on the Postgres stores, whose tables it creates before any worker starts:
    MLflow's migrations collide when two processes run them at once on a new database."""
    import mlflow

    uri = environ["MLFLOW_TRACKING_URI"]
    created = mlflow.MlflowClient(uri, uri)
    created.search_experiments(max_results=1)
    created.create_registered_model(PIPELINE)
    return created


@pytest.fixture
def workers(environ, client):
    """Two processes forked from the forkserver (no connection inherited from this one) and their
    queues."""
    start, results = CONTEXT.Barrier(2, timeout=120), CONTEXT.Queue()
    queues = [CONTEXT.Queue(), CONTEXT.Queue()]
    processes = [CONTEXT.Process(target=_worker, args=(environ, q, results, start)) for q in queues]
    for process in processes:
        process.start()

    def run(*tasks: dict) -> list[dict]:
        for tasks_of_one, task in zip(queues, tasks, strict=True):
            tasks_of_one.put(task)
        done, deadline = [], time.monotonic() + 120
        while len(done) < len(tasks):
            assert all(p.is_alive() for p in processes), f"a worker died; results so far: {done}"
            assert time.monotonic() < deadline, f"workers did not answer in time; results so far: {done}"
            with contextlib.suppress(queue_module.Empty):
                done.append(results.get(timeout=1))
        assert not [d for d in done if "error" in d], done
        return done

    yield run
    for tasks_of_one in queues:
        tasks_of_one.put(None)
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def test_the_better_candidate_wins_every_race_and_the_ledger_stays_one_chain(environ, client, workers):
    settings = load_settings(environ)

    def register(roc_auc: float) -> str:
        created = client.create_model_version(PIPELINE, source=environ["CTLOOP_MLFLOW_ARTIFACT_ROOT"])
        client.set_model_version_tag(PIPELINE, created.version, METRIC_TAG, f"{roc_auc:.2f}")
        return str(created.version)

    # both processes create the ledger's table at once on a fresh database
    created = workers(*({"kind": "create_tables", "role": role, "delay": 0.0} for role in ("a", "b")))
    assert all(c["created"] for c in created)

    champion, score = register(0.70), 0.70
    promote(client, settings, PIPELINE, champion, _decision(None), lambda c: pytest.fail("no race yet"))
    for round_ in range(ROUNDS):
        good, better = register(score + 0.01), register(score + 0.02)
        delay_good, delay_better = DELAYS[round_ % len(DELAYS)]
        tasks = [
            {"role": "good", "version": good, "delay": delay_good},
            {"role": "better", "version": better, "delay": delay_better},
        ]
        if round_ % 2:  # the other worker process takes the good candidate
            tasks.reverse()
        before = len(ledger.entries(settings, PIPELINE))
        outcomes = {
            o["role"]: o
            for o in workers(*({**t, "kind": "promote", "against": champion, "round": round_} for t in tasks))
        }

        where = f"round {round_}: good v{good}, better v{better}, outcomes {outcomes}"
        assert str(client.get_model_version_by_alias(PIPELINE, "champion").version) == better, where
        assert outcomes["better"]["action"] in ("promoted", "promoted_after_reevaluation"), where
        assert outcomes["good"]["action"] in ("promoted", "rejected_after_reevaluation"), where
        moves = [(e.from_version, e.to_version) for e in ledger.entries(settings, PIPELINE)[before:]]
        assert moves in ([(champion, better)], [(champion, good), (good, better)]), where
        champion, score = better, score + 0.02

    entries = ledger.entries(settings, PIPELINE)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].from_version is None
    assert all(e.from_version == before.to_version for before, e in zip(entries, entries[1:], strict=False))
    assert entries[-1].to_version == champion
    assert {e.action for e in entries} == {"promotion"}


def test_postgres_refuses_a_second_row_with_the_same_seq(environ):
    import psycopg2
    from sqlalchemy.engine import make_url

    settings = load_settings(environ)
    ledger.create_tables(settings)
    url = make_url(settings.database_url)
    insert = (
        "INSERT INTO promotion_ledger (pipeline, seq, action, alias, to_version, at, reason, gate_decision,"
        " evidence) VALUES (%s, 1, 'promotion', 'champion', '1', 'now', '', '', '{}')"
    )
    connection = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(insert, (PIPELINE,))
            with pytest.raises(psycopg2.errors.UniqueViolation):
                cursor.execute(insert, (PIPELINE,))
    finally:
        connection.close()
