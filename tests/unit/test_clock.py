"""The one clock: the wall clock by default, a replay's simulated time while it sets one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ctloop import clock

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _wall_clock() -> bool:
    return abs(clock.now() - datetime.now(UTC)) < timedelta(minutes=1)


def test_without_a_simulated_time_now_is_the_wall_clock_in_utc():
    before = datetime.now(UTC)
    read = clock.now()
    assert before <= read <= datetime.now(UTC)
    assert read.utcoffset() == timedelta(0)


def test_inside_the_block_now_is_the_simulated_time_and_after_it_the_wall_clock():
    with clock.simulated(T):
        assert clock.now() == T
        assert clock.now() == T  # it does not run on by itself
    assert _wall_clock()


def test_a_nested_block_restores_the_outer_simulated_time():
    with clock.simulated(T):
        with clock.simulated(T + timedelta(hours=1)):
            assert clock.now() == T + timedelta(hours=1)
        assert clock.now() == T


def test_the_time_before_is_restored_even_when_the_block_raises():
    with pytest.raises(RuntimeError), clock.simulated(T):
        raise RuntimeError("a step failed")
    assert _wall_clock()


def test_set_simulated_holds_until_set_to_none():
    try:
        clock.set_simulated(T)
        assert clock.now() == T
    finally:
        clock.set_simulated(None)
    assert _wall_clock()


def test_a_simulated_time_in_another_zone_is_read_in_utc():
    with clock.simulated(datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))):
        assert clock.now() == T
        assert clock.now().tzinfo == UTC
        assert clock.now().isoformat() == "2026-03-01T12:00:00+00:00"


def test_a_naive_time_is_refused_and_changes_nothing():
    with pytest.raises(ValueError, match="must be timezone-aware, got 2026-03-01T12:00:00"):
        clock.set_simulated(T.replace(tzinfo=None))
    assert _wall_clock()
    with clock.simulated(T):
        with pytest.raises(ValueError, match="timezone-aware"), clock.simulated(T.replace(tzinfo=None)):
            pass
        assert clock.now() == T
