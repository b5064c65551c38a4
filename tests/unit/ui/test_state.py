"""The retrain policy's state as the pages show it, from the retrain requests in storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ctloop.io.storage import home_storage
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.ui.state import policy_state, run_id_of
from tests.helpers import example_spec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path):
    settings = load_settings({"CTLOOP_HOME": str(tmp_path)})
    spec = PipelineSpec.model_validate(example_spec("p", "data"))  # cooldown 360 min, breaker at 3
    storage = home_storage(settings)

    def request(
        i: int, state: str, kind: str = "monitor", outcome: str | None = None, closed: datetime | None = None
    ):
        record = {
            "id": f"r{i}",
            "pipeline": "p",
            "state": state,
            "opened_at": NOW.isoformat(),
            "reasons": [{"kind": kind, "text": "x"}],
            "claimed_by": None,
            "claimed_at": None,
            "closed_at": closed.isoformat() if closed else None,
            "outcome": outcome,
            "version": None,
        }
        storage.write_bytes(f"retrain/p/requests/r{i}.json", json.dumps(record).encode())

    return settings, spec, request


def test_nothing_recorded_means_nothing_queued_no_cooldown_and_a_closed_breaker(world) -> None:
    settings, spec, _ = world
    state = policy_state(spec, settings, NOW)
    assert (state.queued, state.cooldown_until, state.rejections, state.breaker_open) == (
        None,
        None,
        0,
        False,
    )


def test_a_retrain_an_alert_asked_for_starts_the_cooldown(world) -> None:
    settings, spec, request = world
    request(1, "closed", outcome="promoted", closed=NOW - timedelta(minutes=60))
    assert policy_state(spec, settings, NOW).cooldown_until == NOW + timedelta(minutes=300)
    assert policy_state(spec, settings, NOW + timedelta(minutes=301)).cooldown_until is None


def test_a_manual_retrain_starts_no_cooldown(world) -> None:
    settings, spec, request = world
    request(1, "closed", kind="manual", outcome="promoted", closed=NOW - timedelta(minutes=5))
    assert policy_state(spec, settings, NOW).cooldown_until is None


def test_an_open_request_is_queued_and_three_rejections_open_the_breaker(world) -> None:
    settings, spec, request = world
    for i in range(3):
        request(i, "closed", outcome="rejected", closed=NOW - timedelta(hours=10 - i))
    request(3, "open")
    state = policy_state(spec, settings, NOW)
    assert state.queued["id"] == "r3"
    assert (state.rejections, state.max_rejections, state.breaker_open) == (3, 3, True)


def test_the_run_id_of_a_run_key() -> None:
    assert (
        run_id_of("p__monitor/scheduled__2026-01-01T00:00:00+00:00") == "scheduled__2026-01-01T00:00:00+00:00"
    )
    assert run_id_of(None) is None
    assert run_id_of("no-slash") is None
