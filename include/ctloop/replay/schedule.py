"""When things happen in a replay: which files land at each step, and the simulated time of each task.

Production batches land one per step, in file-name order; the labels of batch ``i`` land with
batch ``i + label_delay``; the labels still outstanding after the last batch land together in
one last step. Step 0 is the first training; batch ``i`` lands ``i + 1`` intervals later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ctloop import clock
from ctloop.errors import DataReadError

# Fixed (a Monday, midnight), so two replays of one history see the same clock and schedules.
DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)
DEFAULT_INTERVAL = timedelta(minutes=60)
MIN_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Delivery:
    """What lands at one step: a batch file (None at the last, labels-only step) and label files."""

    step: int
    batch: Path | None
    labels: tuple[Path, ...]


def data_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files of ``directory`` ending in one of ``suffixes``, in file-name order."""
    if not directory.is_dir():
        raise DataReadError(f"{directory}: not a directory")
    return sorted(
        (p for p in directory.iterdir() if p.is_file() and p.name.endswith(suffixes) and p.name[0] != "."),
        key=lambda p: p.name,
    )


def deliveries(batches: list[Path], labels: list[Path], label_delay: int) -> list[Delivery]:
    """The replay's steps, from step 1 (step 0 is the first training).

    A label file belongs to the batch of the same file name; a batch without one is never
    labeled, a label file without a batch is a mistake in the folders and fails, naming it.
    """
    if label_delay < 0:
        raise ValueError(f"label_delay must be 0 or more, got {label_delay}")
    if not batches:
        raise DataReadError("no production batch files to replay")
    names = {batch.name for batch in batches}
    stray = sorted(p.name for p in labels if p.name not in names)
    if stray:
        raise DataReadError(f"label file(s) {', '.join(stray)} match no batch file of the same name")
    by_name = {p.name: p for p in labels}
    label_of = [by_name.get(batch.name) for batch in batches]
    steps = []
    for index, batch in enumerate(batches):
        due = label_of[index - label_delay] if index >= label_delay else None
        steps.append(Delivery(index + 1, batch, (due,) if due else ()))
    outstanding = tuple(p for p in label_of[max(len(batches) - label_delay, 0) :] if p is not None)
    if outstanding:
        steps.append(Delivery(len(batches) + 1, None, outstanding))
    return steps


def cron_interval(cron: str | None, start: datetime) -> timedelta:
    """The time between the first two fire times of ``cron`` after ``start``; an hour without a cron."""
    if cron is None:
        return DEFAULT_INTERVAL
    from croniter import croniter

    fires = croniter(cron, start)
    first: datetime = fires.get_next(datetime)
    second: datetime = fires.get_next(datetime)
    return second - first


def cron_fires(cron: str | None, after: datetime, until: datetime) -> bool:
    """Whether ``cron`` fires in ``(after, until]``: a schedule due in that step, run once, as
    Airflow runs only the latest missed point of a DAG without catchup."""
    if cron is None:
        return False
    from croniter import croniter

    following: datetime = croniter(cron, after).get_next(datetime)
    return following <= until


class SimulatedTime:
    """The moments of a replay: step ``n`` starts at ``start + n * interval``, and each task in a
    step takes one simulated second, so records written in one step keep their order."""

    def __init__(self, start: datetime, interval: timedelta) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the replay's start must be timezone-aware, got {start.isoformat()}")
        if interval < MIN_INTERVAL:  # a step's tasks take a simulated second each
            raise ValueError(f"the replay's interval must be at least {MIN_INTERVAL}, got {interval}")
        self.start = start
        self.interval = interval
        self._step = 0
        self._tasks = 0

    def step_start(self, step: int) -> datetime:
        return self.start + step * self.interval

    def begin(self, step: int) -> None:
        """Move to the start of ``step``."""
        self._step, self._tasks = step, 0

    def next(self) -> datetime:
        """The moment of the next task in this step."""
        moment = self.step_start(self._step) + timedelta(seconds=self._tasks)
        self._tasks += 1
        return moment

    @contextlib.contextmanager
    def task(self) -> Iterator[datetime]:
        """Run a task at its simulated moment (what :func:`ctloop.clock.now` returns inside)."""
        moment = self.next()
        with clock.simulated(moment):
            yield moment
