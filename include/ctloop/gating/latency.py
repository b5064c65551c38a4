"""Prediction latency of a model loaded as its users load it, against the limits in the spec.

A candidate that is more accurate but too slow for the scoring path is a regression too; the
measurement uses the pyfunc model (schema enforcement included), not the bare estimator.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from ctloop.gating.decision import GateVerdict, LatencyReport, Percentiles

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.spec.models import LatencyRule


class Predictor(Protocol):
    def predict(self, data: pd.DataFrame) -> object: ...


LIMITS = (
    ("single_p50_ms", "single_ms", "p50"),
    ("single_p95_ms", "single_ms", "p95"),
    ("batch_p50_ms", "batch_ms", "p50"),
    ("batch_p95_ms", "batch_ms", "p95"),
)


def measure_latency(model: Predictor, sample: pd.DataFrame, rule: LatencyRule) -> LatencyReport:
    """Time ``model.predict`` on one row and on a batch of ``rule.batch_rows``, ``rule.repeats``
    times each, after one warm-up call of each.

    The report has one ``latency`` verdict per limit the rule sets. The one-row calls cycle
    through the rows of ``sample``; the batch is ``sample`` repeated (or cut) to ``batch_rows``.
    """
    import numpy as np

    if sample.empty:
        raise ValueError("a latency sample needs at least one row")
    batch = sample.iloc[np.arange(rule.batch_rows) % len(sample)].reset_index(drop=True)
    rows = [sample.iloc[[i % len(sample)]] for i in range(rule.repeats)]
    model.predict(rows[0])
    model.predict(batch)
    single = _timed(model, rows)
    batched = _timed(model, [batch] * rule.repeats)
    measured = {"single_ms": _percentiles(single), "batch_ms": _percentiles(batched)}
    verdicts = []
    for limit, shape, quantile in LIMITS:
        bound = getattr(rule, limit)
        if bound is None:
            continue
        value = getattr(measured[shape], quantile)
        passed = value <= bound
        what = "one-row" if shape == "single_ms" else f"{rule.batch_rows}-row"
        note = (
            f"{quantile} of {rule.repeats} {what} predictions took {value:.2f} ms, which must be"
            f" <= {bound:.2f} ms: {'passed' if passed else 'failed'}"
        )
        verdicts.append(
            GateVerdict(
                rule="latency",
                metric=limit,
                kind="at_most",
                value=value,
                bound=bound,
                passed=bool(passed),
                note=note,
            )
        )
    return LatencyReport(
        single_ms=measured["single_ms"],
        batch_ms=measured["batch_ms"],
        batch_rows=rule.batch_rows,
        repeats=rule.repeats,
        verdicts=verdicts,
    )


def _timed(model: Predictor, inputs: list[pd.DataFrame]) -> list[float]:
    """Milliseconds of each ``predict`` call."""
    elapsed = []
    for frame in inputs:
        start = time.perf_counter()
        model.predict(frame)
        elapsed.append((time.perf_counter() - start) * 1000)
    return elapsed


def _percentiles(milliseconds: list[float]) -> Percentiles:
    import numpy as np

    p50, p95 = np.percentile(milliseconds, [50, 95])
    return Percentiles(p50=float(p50), p95=float(p95))
