"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The fastest of ``repeats`` timings: the least disturbed by a shared, noisy machine."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, measured: float, baseline: float, target: float, **details) -> dict:
    """Print and store one result; the ratio is what the target is about."""
    ratio = measured / baseline
    verdict = "OK" if ratio <= target else "OVER TARGET"
    print(
        f"{name}: {measured:.3f}s vs baseline {baseline:.3f}s = {ratio:.2f}x (target <= {target}x) {verdict}"
    )
    for key, value in details.items():
        print(f"    {key}: {value}")
    result = {
        "name": name,
        "seconds": measured,
        "baseline_seconds": baseline,
        "ratio": ratio,
        "target": target,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({**result, **details}, indent=2, default=str))
    return result
