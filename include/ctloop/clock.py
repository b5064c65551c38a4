"""The one clock ctloop's decisions read: cooldowns, windows, request and ledger times.

Real runs read the wall clock. ``ctloop replay`` sets a simulated time before each step, so a
backtest over months of batches sees the cooldowns and windows it would have seen live, in
seconds. Reading time anywhere else than here makes a decision that a replay cannot reproduce.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

_simulated: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware in UTC: the simulated one while a replay sets it."""
    return _simulated if _simulated is not None else datetime.now(UTC)


def set_simulated(moment: datetime | None) -> None:
    """Make :func:`now` return ``moment`` (timezone-aware) until set again; ``None``: the wall clock."""
    global _simulated
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"a simulated time must be timezone-aware, got {moment.isoformat()}")
    _simulated = moment.astimezone(UTC) if moment is not None else None


@contextlib.contextmanager
def simulated(moment: datetime) -> Iterator[None]:
    """Read ``moment`` as the current time inside the block, then whatever was before."""
    previous = _simulated
    set_simulated(moment)
    try:
        yield
    finally:
        set_simulated(previous)
