"""The retrain ledger on real local storage: open, attach, claim, close, and the facts the guards read."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ctloop import clock
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.monitoring.retrain_policy import HOLD, RETRAIN, Evidence, decide
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


@pytest.fixture
def settings():
    return load_settings()


@pytest.fixture
def pipeline() -> str:
    """A fresh pipeline name, so tests sharing this worker's CTLOOP_HOME never see each other's ledger."""
    return f"p{uuid.uuid4().hex[:12]}"


def _monitor(text: str) -> dict:
    return {"kind": "monitor", "text": text, "by": f"monitor/{text}", "report_uri": f"/r/{text}.html"}


def _own(kind: str, run_key: str) -> dict:
    return {"kind": kind, "text": kind, "by": run_key, "alert_id": ""}


def _stored(settings, pipeline: str) -> list[dict]:
    return retrain_requests.all_requests(home_storage(settings), pipeline)


def _train(settings, pipeline: str, run_key: str, outcome: str, kind: str = "manual") -> dict:
    """One training run's whole life in the ledger: claim, then close with ``outcome``."""
    retrain_requests.claim(settings, pipeline, run_key, _own(kind, run_key))
    return retrain_requests.close(
        settings, pipeline, run_key, outcome, "3" if outcome == retrain_requests.PROMOTED else None
    )


def test_the_first_alert_opens_and_later_ones_attach(settings, pipeline):
    results = [retrain_requests.request_retrain(settings, pipeline, _monitor(f"alert {i}")) for i in range(5)]
    assert [outcome for outcome, _ in results] == ["opened"] + ["attached"] * 4
    assert len({request["id"] for _, request in results}) == 1
    (stored,) = _stored(settings, pipeline)
    assert stored["id"] == results[0][1]["id"]
    assert stored["state"] == retrain_requests.OPEN
    assert stored["pipeline"] == pipeline
    assert [r["text"] for r in stored["reasons"]] == [f"alert {i}" for i in range(5)]
    assert all(r["kind"] == "monitor" and r["at"] for r in stored["reasons"])
    assert stored["claimed_by"] is None
    assert stored["closed_at"] is None


def test_ledgers_of_two_pipelines_are_separate(settings, pipeline):
    other = f"{pipeline}x"
    retrain_requests.request_retrain(settings, pipeline, _monitor("a"))
    outcome, _ = retrain_requests.request_retrain(settings, other, _monitor("b"))
    assert outcome == "opened"
    assert [r["text"] for r in _stored(settings, pipeline)[0]["reasons"]] == ["a"]


def test_a_training_run_claims_the_open_request(settings, pipeline):
    _, opened = retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    claimed = retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    assert claimed["id"] == opened["id"]
    assert claimed["state"] == retrain_requests.RUNNING
    assert claimed["claimed_by"] == "train/run-1"
    assert datetime.fromisoformat(claimed["claimed_at"]) >= datetime.fromisoformat(opened["opened_at"])
    assert [r["kind"] for r in claimed["reasons"]] == ["monitor", "asset"]
    assert _stored(settings, pipeline) == [claimed]


def test_a_retried_run_gets_its_own_request_back(settings, pipeline):
    retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    first = retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    again = retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    assert again == first
    (stored,) = _stored(settings, pipeline)
    assert len(stored["reasons"]) == 2  # the retry added no reason


def test_a_run_with_no_open_request_records_its_own(settings, pipeline):
    claimed = retrain_requests.claim(settings, pipeline, "train/sched-1", _own("schedule", "train/sched-1"))
    assert claimed["state"] == retrain_requests.RUNNING
    assert claimed["claimed_by"] == "train/sched-1"
    assert [r["kind"] for r in claimed["reasons"]] == ["schedule"]
    assert _stored(settings, pipeline) == [claimed]


def test_a_run_does_not_take_over_a_request_another_run_is_training(settings, pipeline):
    retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    theirs = retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    mine = retrain_requests.claim(settings, pipeline, "train/run-2", _own("manual", "train/run-2"))
    assert mine["id"] != theirs["id"]
    assert mine["claimed_by"] == "train/run-2"
    assert {r["claimed_by"] for r in _stored(settings, pipeline)} == {"train/run-1", "train/run-2"}


def test_an_alert_while_training_attaches_to_the_running_request(settings, pipeline):
    _, opened = retrain_requests.request_retrain(settings, pipeline, _monitor("first"))
    retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    outcome, request = retrain_requests.request_retrain(settings, pipeline, _monitor("second"))
    assert outcome == "attached"
    assert request["id"] == opened["id"]
    assert request["state"] == retrain_requests.RUNNING
    assert [r["text"] for r in request["reasons"]] == ["first", "asset", "second"]


def test_close_records_the_outcome(settings, pipeline):
    retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    claimed = retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    closed = retrain_requests.close(settings, pipeline, "train/run-1", retrain_requests.PROMOTED, "4")
    assert closed["id"] == claimed["id"]
    assert closed["state"] == retrain_requests.CLOSED
    assert closed["outcome"] == retrain_requests.PROMOTED
    assert closed["version"] == "4"
    assert datetime.fromisoformat(closed["closed_at"]) >= datetime.fromisoformat(claimed["claimed_at"])
    assert _stored(settings, pipeline) == [closed]
    outcome, fresh = retrain_requests.request_retrain(settings, pipeline, _monitor("later"))
    assert outcome == "opened"
    assert fresh["id"] != closed["id"]


def test_closing_a_run_that_claimed_nothing_changes_nothing(settings, pipeline):
    _, opened = retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    assert (
        retrain_requests.close(settings, pipeline, "train/never-claimed", retrain_requests.REJECTED, None)
        is None
    )
    assert _stored(settings, pipeline) == [opened]


def test_consecutive_rejections_from_the_ledger(settings, pipeline):
    counts = []
    for i, outcome in enumerate(["rejected", "rejected", "promoted", "rejected", "failed", "rejected"]):
        _train(settings, pipeline, f"train/run-{i}", outcome)
        counts.append(retrain_requests.consecutive_rejections(_stored(settings, pipeline)))
    assert counts == [1, 2, 0, 1, 1, 2]


def test_an_open_request_does_not_count_as_a_rejection(settings, pipeline):
    _train(settings, pipeline, "train/run-1", retrain_requests.REJECTED)
    retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    retrain_requests.claim(settings, pipeline, "train/run-2", _own("asset", "train/run-2"))
    assert retrain_requests.consecutive_rejections(_stored(settings, pipeline)) == 1


def test_last_closed_at_ignores_trainings_no_alert_asked_for(settings, pipeline):
    """The first training (manual, before any champion exists) and scheduled ones start no cooldown."""
    _train(settings, pipeline, "train/first", retrain_requests.PROMOTED, kind="manual")
    _train(settings, pipeline, "train/weekly", retrain_requests.REJECTED, kind="schedule")
    assert retrain_requests.last_closed_at(_stored(settings, pipeline)) is None

    retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    alerted = _train(settings, pipeline, "train/alerted", retrain_requests.PROMOTED, kind="asset")
    _train(settings, pipeline, "train/manual-later", retrain_requests.PROMOTED, kind="manual")
    last = retrain_requests.last_closed_at(_stored(settings, pipeline))
    assert last == datetime.fromisoformat(alerted["closed_at"])
    assert last.tzinfo is not None


def test_the_ledger_records_and_the_cooldown_measures_the_simulated_time(settings, pipeline):
    """A replay closes a retrain at simulated T: the cooldown (360 min) holds an alert until T + 360
    min on the simulated clock, whatever the wall clock says."""
    closed_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with clock.simulated(closed_at - timedelta(hours=1)):
        retrain_requests.request_retrain(settings, pipeline, _monitor("drift"))
    with clock.simulated(closed_at - timedelta(minutes=30)):
        retrain_requests.claim(settings, pipeline, "train/run-1", _own("asset", "train/run-1"))
    with clock.simulated(closed_at):
        closed = retrain_requests.close(settings, pipeline, "train/run-1", retrain_requests.PROMOTED, "2")
    (stored,) = _stored(settings, pipeline)
    assert stored == closed
    assert datetime.fromisoformat(stored["opened_at"]) == closed_at - timedelta(hours=1)
    assert datetime.fromisoformat(stored["reasons"][0]["at"]) == closed_at - timedelta(hours=1)
    assert datetime.fromisoformat(stored["claimed_at"]) == closed_at - timedelta(minutes=30)
    assert retrain_requests.last_closed_at(_stored(settings, pipeline)) == closed_at

    spec = PipelineSpec.model_validate(example_spec(pipeline, "data"))
    assert spec.retrain.cooldown_minutes == 360
    drift = Evidence("w-now", 5000, 0.5, ["age", "credit_score"], 0)
    alerted = [{"run_key": "monitor/run-0", "window_key": "w-0", "alert": True}]  # k-of-n: 2 of 3

    def decided_at(moment: datetime) -> dict:
        with clock.simulated(moment):
            return decide(spec, drift, alerted, _stored(settings, pipeline), clock.now())

    held = decided_at(closed_at + timedelta(minutes=359))
    assert held["action"] == HOLD
    assert held["why"].startswith(
        "in cooldown: the last retrain an alert asked for ended 2026-03-01 12:00:00 UTC"
    )
    assert decided_at(closed_at + timedelta(minutes=361))["action"] == RETRAIN


def _ask(pipeline: str, worker: int, calls: int, start, results) -> None:
    settings = load_settings()
    start.wait()
    for call in range(calls):
        outcome, request = retrain_requests.request_retrain(
            settings, pipeline, _monitor(f"w{worker}-c{call}")
        )
        results.put((outcome, request["id"]))


def test_concurrent_alerts_make_one_request_with_every_reason(settings, pipeline):
    context = multiprocessing.get_context("fork")
    workers, calls = 8, 4
    start, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_ask, args=(pipeline, w, calls, start, results)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=30) for _ in range(workers * calls)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    (stored,) = _stored(settings, pipeline)
    assert sorted(outcome for outcome, _ in outcomes) == ["attached"] * (workers * calls - 1) + ["opened"]
    assert {request_id for _, request_id in outcomes} == {stored["id"]}
    expected = {f"w{w}-c{c}" for w in range(workers) for c in range(calls)}
    texts = [r["text"] for r in stored["reasons"]]
    assert len(texts) == len(expected)
    assert set(texts) == expected
