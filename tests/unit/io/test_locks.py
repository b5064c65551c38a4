"""Locks held across commits (SQLite): another process is kept out, and a holder that dies frees them."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from sqlalchemy import text

from ctloop.io.locks import LockBusy, held_lock
from ctloop.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


def _hold_then_die(settings, held, release) -> None:
    with held_lock(settings, "p", "promotion"):
        held.set()
        release.wait(30)
        os._exit(137)


def test_a_held_lock_keeps_others_out_across_commits_and_dies_with_its_holder(settings):
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_then_die, args=(settings, held, release))
    holder.start()
    assert held.wait(30)
    with (
        pytest.raises(LockBusy, match="held by another process"),
        held_lock(settings, "p", "promotion", wait=False),
    ):
        pytest.fail("the lock was granted twice")
    with held_lock(settings, "other", "promotion", wait=False):
        pass  # another pipeline's lock is free
    release.set()
    holder.join(30)
    assert holder.exitcode == 137
    with held_lock(settings, "p", "promotion", wait=False) as connection:
        for value in (1, 2):  # each transaction commits, the lock stays
            with connection.begin():
                connection.execute(text("CREATE TABLE IF NOT EXISTS t (v INTEGER)"))
                connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        with pytest.raises(LockBusy), held_lock(settings, "p", "promotion", wait=False):
            pytest.fail("the lock was granted twice")
