"""What every fuzz test shares: settings that keep CI stable and the invariant on errors.

Derandomized (the same examples on every run), a modest number of examples, no deadline (the
first parse imports pyarrow) and no example database, so a run depends on the code alone.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from ctloop.errors import CtloopError

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_names(error: CtloopError, *parts: str) -> None:
    """A typed error must say where the problem is: the file (and, when given, the column)."""
    message = str(error)
    missing = [part for part in parts if part not in message]
    assert not missing, f"{type(error).__name__} does not name {missing}: {message}"
