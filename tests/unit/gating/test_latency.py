"""The latency rule on stand-in models; tests/unit/gating/test_model_validity.py times a registered one."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ctloop.gating.latency import measure_latency
from ctloop.spec.models import LatencyRule

SAMPLE = pd.DataFrame({"a": np.arange(7.0), "b": np.arange(7.0) * 2})


class Recorder:
    """Predicts zeros, sleeping ``per_call`` seconds; remembers the size of every input."""

    def __init__(self, per_call: float = 0.0) -> None:
        self.per_call = per_call
        self.rows: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.rows.append(len(frame))
        if self.per_call:
            time.sleep(self.per_call)
        return np.zeros(len(frame))


def test_a_fast_model_passes_and_unset_limits_are_not_checked():
    model = Recorder()
    rule = LatencyRule(batch_rows=25, repeats=5, single_p95_ms=1000, batch_p50_ms=1000)
    result = measure_latency(model, SAMPLE, rule)
    assert [v.metric for v in result.verdicts] == ["single_p95_ms", "batch_p50_ms"]
    assert all(v.passed is True and v.rule == "latency" for v in result.verdicts)
    assert result.batch_rows == 25
    assert result.repeats == 5
    assert 0 <= result.single_ms.p50 <= result.single_ms.p95 < 1000
    # one warm-up of each shape, then the timed calls: one row each, and batches cut to 25 rows
    assert model.rows == [1, 25] + [1] * 5 + [25] * 5


def test_a_slow_model_fails_with_its_time_and_limit():
    rule = LatencyRule(repeats=5, single_p50_ms=5.0, batch_p95_ms=10_000)
    result = measure_latency(Recorder(per_call=0.02), SAMPLE, rule)
    single, batch = result.verdicts
    assert single.passed is False
    assert single.value >= 20.0
    assert single.bound == 5.0
    assert "must be <= 5.00 ms: failed" in single.note
    assert batch.passed is True
    assert result.single_ms.p50 == single.value


def test_a_batch_larger_than_the_sample_repeats_its_rows():
    seen: list[pd.DataFrame] = []

    class Keeper(Recorder):
        def predict(self, frame):
            seen.append(frame)
            return super().predict(frame)

    measure_latency(Keeper(), SAMPLE, LatencyRule(batch_rows=16, repeats=5))
    batch = seen[1]
    assert len(batch) == 16
    assert batch["a"].tolist() == [*range(7), *range(7), 0, 1]


def test_an_empty_sample_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        measure_latency(Recorder(), SAMPLE.head(0), LatencyRule())
