"""Fault points: named instants where a test kills the process or makes a step fail, to prove that
whatever was half done there is finished or undone by the next run.

A point does nothing unless the ``CTLOOP_FAULT`` environment variable names it. ``CTLOOP_FAULT=
ledger.after_alias`` ends the process there as ``kill -9`` would (``os._exit``: no ``finally``, no
commit, no flush); ``CTLOOP_FAULT=ledger.after_alias:raise`` raises :class:`InjectedFault`
instead, as an unavailable service would. Several points may be named, separated by commas. The
environment is read at each point, so a test sets it for one subprocess and no signature carries
the hook.
"""

from __future__ import annotations

import os

ENV = "CTLOOP_FAULT"
KILLED_EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL


class InjectedFault(RuntimeError):
    """Raised at a fault point named with ``:raise``."""


def point(name: str) -> None:
    """Kill the process, or raise, if ``CTLOOP_FAULT`` names this point; otherwise do nothing."""
    for entry in os.environ.get(ENV, "").split(","):
        target, _, mode = entry.strip().partition(":")
        if target != name:
            continue
        if mode == "raise":
            raise InjectedFault(f"fault injected at {name}")
        os._exit(KILLED_EXIT_CODE)
