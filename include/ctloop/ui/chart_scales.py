"""The charts' scales: the time axis every chart of the pipeline page shares (round moments,
labelled for their step, in UTC) and each panel's y scale (round ticks, log10 for p-values).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ctloop.ui.chart_shapes import LEFT, RIGHT, SMALL, WIDTH, Rule, Text, round_coord

MAX_TICKS, MAX_Y_TICKS = 10, 5
LOG_FLOOR = -12
"""Smallest p-value decade drawn: a p-value of 0 (a value new in current) sits on the floor."""

# --- the time axis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A tick interval: ``count`` of ``unit`` (minute, hour, day, week, month, year)."""

    unit: str
    count: int

    @property
    def fixed(self) -> timedelta | None:
        seconds = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}.get(self.unit)
        return timedelta(seconds=seconds * self.count) if seconds else None


STEPS = [
    *(Step("minute", n) for n in (1, 2, 5, 10, 15, 30)),
    *(Step("hour", n) for n in (1, 2, 3, 6, 12)),
    *(Step("day", n) for n in (1, 2)),
    Step("week", 1),
    Step("week", 2),
    *(Step("month", n) for n in (1, 2, 3, 6)),
    *(Step("year", n) for n in (1, 2, 5, 10, 20, 50, 100)),
]


@dataclass(frozen=True)
class Tick:
    at: datetime
    label: str
    date: str | None  # a second line where the day (or, for day ticks, the year) changes


def time_ticks(start: datetime, end: datetime) -> tuple[Step, list[Tick]]:
    """The finest step with at most MAX_TICKS ticks in [start, end], and its labelled ticks."""
    for step in STEPS:
        moments = list(_moments(step, start, end, MAX_TICKS + 1))
        if len(moments) <= MAX_TICKS:
            return step, _labels(step, moments)
    raise ValueError(f"a span from {start} to {end} is beyond any tick step")


def _moments(step: Step, start: datetime, end: datetime, most: int) -> Iterator[datetime]:
    """The step's aligned moments in [start, end], stopping after ``most``."""
    at = _first(step, start)
    for _ in range(most):
        if at > end:
            return
        yield at
        at = _next(step, at)


def _first(step: Step, start: datetime) -> datetime:
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if step.unit in ("minute", "hour"):
        size = step.fixed
        assert size is not None
        return midnight + size * math.ceil((start - midnight) / size)
    if step.unit in ("day", "week"):
        day = midnight if midnight == start else midnight + timedelta(days=1)
        if step.unit == "week":  # Mondays, every other Monday by ISO week number
            day += timedelta(days=-day.weekday() % 7)
            return day + timedelta(weeks=day.isocalendar().week % step.count)
        return day + timedelta(days=-day.toordinal() % step.count)
    months = start.year * 12 + start.month - 1 + (start != midnight.replace(day=1))
    if step.unit == "year":
        years = months // 12 + (months % 12 > 0)
        return datetime(years + (-years % step.count), 1, 1, tzinfo=start.tzinfo)
    months += -(months % 12) % step.count
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=start.tzinfo)


def _next(step: Step, at: datetime) -> datetime:
    if step.fixed is not None:
        return at + step.fixed
    months = at.year * 12 + at.month - 1 + step.count * (12 if step.unit == "year" else 1)
    return at.replace(year=months // 12, month=months % 12 + 1)


def _labels(step: Step, moments: list[datetime]) -> list[Tick]:
    """Labels formatted for the step, with a second line where the date (for day ticks, the year)
    changes; the year is said on the first tick and where it changes."""
    formats = {"minute": ("%H:%M", "%a %d %b"), "hour": ("%H:%M", "%a %d %b"), "day": ("%d %b", "%Y")}
    formats |= {"week": ("%d %b", "%Y"), "month": ("%b", "%Y"), "year": ("%Y", "")}
    label, context = formats[step.unit]
    ticks, previous, year = [], "", 0
    for at in moments:
        said = at.strftime(context)
        line = f"{said} {at:%Y}" if "%Y" not in context and at.year != year else said
        ticks.append(Tick(at, at.strftime(label), line if said != previous else None))
        previous, year = said, at.year
    return ticks


@dataclass(frozen=True)
class TimeScale:
    """Moments to x, shared by every chart of the page."""

    start: datetime
    end: datetime

    @classmethod
    def over(cls, moments: list[datetime]) -> TimeScale:
        """The moments' span with a little room at both ends (an hour around a single moment)."""
        start, end = min(moments), max(moments)
        pad = max((end - start) * 0.02, timedelta(minutes=1)) if end > start else timedelta(minutes=30)
        return cls(start - pad, end + pad)

    @property
    def ticks(self) -> list[Tick]:
        return time_ticks(self.start, self.end)[1]

    def x(self, at: datetime) -> float:
        return round_coord(LEFT + (at - self.start) / (self.end - self.start) * (WIDTH - LEFT - RIGHT))

    def axis(self, tops: list[tuple[float, float]], bottom: float) -> tuple[list[Rule], list[Text]]:
        """Vertical grid lines through each (top, height) panel, and the labels under ``bottom``."""
        ticks = self.ticks
        rules = [
            Rule(self.x(t.at), top, self.x(t.at), top + height, "ct-grid")
            for t in ticks
            for top, height in tops
        ]
        texts = [Text(self.x(t.at), bottom + 20, t.label, anchor="middle") for t in ticks]
        texts += [Text(self.x(t.at), bottom + 37, t.date, anchor="middle") for t in ticks if t.date]
        texts.append(Text(WIDTH - 6, bottom + 20, "UTC", anchor="end"))
        return rules, texts


AXIS_HEIGHT = 44
"""The room under a chart's last panel for the axis labels and their date line."""


# --- y scales --------------------------------------------------------------------------------------


def nice_ticks(low: float, high: float, most: int = MAX_Y_TICKS) -> list[float]:
    """At most ``most`` round values (1, 2, 2.5 or 5 times a power of ten apart) covering [low, high]."""
    if high - low < 1e-12:
        pad = abs(low) * 0.05 or 0.05
        low, high = low - pad, high + pad
    exponent = math.floor(math.log10((high - low) / most))
    for power in range(exponent, exponent + 3):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0**power
            first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
            if last - first + 1 <= most:
                return [_tidy(k * step) for k in range(first, last + 1)]
    raise AssertionError("unreachable: a step of 10x the span covers it in two ticks")


def _tidy(value: float) -> float:
    return float(f"{value:.10g}") + 0.0  # + 0.0: no negative zero


def tick_label(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class YScale:
    """Values to y in a panel of ``height`` at ``top``, linear or log10 (p-values)."""

    top: float
    height: float
    low: float
    high: float
    log: bool = False

    def y(self, value: float) -> float:
        v = max(math.log10(max(value, 10.0**LOG_FLOOR)), LOG_FLOOR) if self.log else value
        return round_coord(
            self.top + self.height - (v - self.low) / ((self.high - self.low) or 1.0) * self.height
        )

    def ticks(self, values: list[float], labels: list[str]) -> tuple[list[Rule], list[Text]]:
        """Horizontal grid lines at ``values`` (decades on a log scale) and their labels in the left
        margin."""
        ys = [self.y(10.0**v if self.log else v) for v in values]
        rules = [Rule(LEFT, y, WIDTH - RIGHT, y, "ct-grid") for y in ys]
        return rules, [
            Text(LEFT - 6, round_coord(y + 4), label, SMALL, "end")
            for y, label in zip(ys, labels, strict=True)
        ]
