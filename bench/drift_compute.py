"""(e) Per-column drift of 1M rows x 25 columns: ``drift_stats`` versus numpy/scipy. Target <= 3x.

Reference and current frames of 20 numeric and 5 categorical columns, a few of them shifted and a
few with NaNs. The baseline computes the same tests (Evidently's choice above 1,000 reference
rows: normed Wasserstein, Jensen-Shannon on value frequencies) the straightforward way: scipy's
``wasserstein_distance``, ``np.unique`` for distinct values, ``value_counts`` for categories.
Decisions must equal the baseline's, and Evidently's ``DataDriftPreset`` on the 100k frames (on
1M too with BENCH_FULL=1: about 100 s). Peak memory is measured in fresh processes: one that only
builds the two frames, one that also runs ``column_drift``. Target <= 1.5x.

Only numpy and pandas are imported at module level, so the memory probe that builds frames
imports nothing else; scipy and ctloop are imported where they are used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = {"num_00", "num_05", "num_08", "num_14", "cat_0", "cat_3"}
WITH_NANS = {"num_01", "num_06", "cat_1"}  # 1% NaN in current only: frames of unequal size
_CATEGORIES = [
    (["basic", "standard", "premium"], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]),
    (["card", "bank", "check", "cash"], [0.4, 0.3, 0.2, 0.1], None),
    (["north", "south", "east", "west", "central"], [0.2] * 5, None),
    (["yes", "no"], [0.6, 0.4], [0.4, 0.6]),
    ([f"tier_{i}" for i in range(12)], [1 / 12] * 12, None),
]


def _numeric(rng: np.random.Generator, i: int, out: np.ndarray, shifted: bool) -> None:
    """Column i in place: continuous, integer-valued, 5-valued or binary, by i mod 4."""
    kind = i % 4
    if kind == 0:
        rng.standard_normal(out=out)
        if shifted:
            out += 0.3
    elif kind == 1:
        out[:] = rng.lognormal(3.0, 0.8 if shifted else 0.7, out.size)
    elif kind == 2:
        out[:] = rng.poisson(15 if shifted else 12, out.size)
    else:
        p = [0.1, 0.1, 0.2, 0.3, 0.3] if shifted else [0.2] * 5
        out[:] = rng.choice(5, out.size, p=p)


def _frame(rng: np.random.Generator, rows: int, current: bool) -> pd.DataFrame:
    # (columns, rows) C-order, so the frame's block holds each column contiguous and uncopied.
    values = np.empty((len(NUMERIC), rows))
    for i, name in enumerate(NUMERIC):
        _numeric(rng, i, values[i], shifted=current and name in SHIFTED)
        if current and name in WITH_NANS:
            values[i, rng.integers(0, rows, rows // 100)] = np.nan
    frame = pd.DataFrame(values.T, columns=NUMERIC, copy=False)
    for name, (labels, p, p_shifted) in zip(CATEGORICAL, _CATEGORIES, strict=True):
        codes = rng.choice(len(labels), rows, p=p_shifted if current and name in SHIFTED else p)
        column = np.asarray(labels, dtype=object)[codes]
        if current and name in WITH_NANS:
            column[rng.integers(0, rows, rows // 100)] = None
        frame[name] = column
    return frame


def make_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames, deterministic by seed."""
    rng = np.random.default_rng(seed)
    return _frame(rng, rows, current=False), _frame(rng, rows, current=True)


def baseline_drift(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, float, bool]]:
    """The same tests written directly with numpy and scipy (reference > 1,000 rows regime)."""
    from scipy import stats
    from scipy.spatial import distance

    results = {}
    for column in NUMERIC:
        ref = reference[column].dropna().to_numpy()
        cur = current[column].dropna().to_numpy()
        keys, counts = np.unique(np.concatenate([ref, cur]), return_counts=True)
        if len(keys) > 5:
            score = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
            results[column] = ("wasserstein", float(score), bool(score >= 0.1))
        else:
            ref_counts = np.array([np.sum(ref == k) for k in keys])
            score = distance.jensenshannon(ref_counts / ref.size, (counts - ref_counts) / cur.size)
            results[column] = ("jensenshannon", float(score), bool(score >= 0.1))
    for column in CATEGORICAL:
        ref = reference[column].value_counts()
        cur = current[column].value_counts()
        keys = ref.index.union(cur.index)
        ref, cur = ref.reindex(keys, fill_value=0), cur.reindex(keys, fill_value=0)
        score = distance.jensenshannon(ref / ref.sum(), cur / cur.sum())
        results[column] = ("jensenshannon", float(score), bool(score >= 0.1))
    return results


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict, float]:
    """Evidently's DataDriftPreset on the full frames: per column (stattest, score, drifted); seconds."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations import stattests
    from evidently.presets import DataDriftPreset

    names = {
        t.display_name: t.name for t in (stattests.wasserstein_stat_test, stattests.jensenshannon_stat_test)
    }
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    result = snapshot.dict()
    failed = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in result["tests"] if t["id"] == "drift"
    }
    columns = {
        m["config"]["column"]: (names[m["config"]["method"]], float(m["value"]), failed[m["id"]])
        for m in result["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
    }
    return columns, seconds


def _same(ours: dict, theirs: dict) -> list[str]:
    """Columns whose test or decision differ, or whose scores differ beyond rounding."""
    return [
        c
        for c in ours
        if ours[c][0] != theirs[c][0]
        or ours[c][2] != theirs[c][2]
        or not np.isclose(ours[c][1], theirs[c][1], rtol=1e-7, atol=1e-12)
    ]


# Peak RSS is read from VmHWM, the high-water mark of this process's own memory. getrusage's
# ru_maxrss survives fork + exec: a probe started from this (large) process reported 506 MiB for
# frames that peak at 146 MiB on their own.
_PROBE = """
import sys
from bench.drift_compute import CATEGORICAL, NUMERIC, make_frames

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

reference, current = make_frames({rows})
held = status("VmRSS:")
if "{mode}" != "frames":
    from ctloop.monitoring.drift_stats import column_drift
if "{mode}" == "drift":
    column_drift(reference, current, NUMERIC, CATEGORICAL)
print(held, status("VmHWM:"))
"""


def peak_memory(rows: int, mode: str) -> tuple[int, int]:
    """(RSS once the frames are built, peak RSS) in KiB of a fresh process: frames, import or drift."""
    code = _PROBE.format(rows=rows, mode=mode)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    held, peak = done.stdout.split()
    return int(held), int(peak)


def timings(rows: int, full: bool) -> tuple[float, float, dict]:
    """Seconds of ours and of the baseline on the same frames, with their decisions compared."""
    from bench.common import best_of
    from ctloop.monitoring.drift_stats import column_drift

    reference, current = make_frames(rows)
    column_drift(reference.head(2000), current.head(2000), NUMERIC, CATEGORICAL)  # warm-up
    ours: list = []
    base: dict = {}

    def run_ours() -> None:
        ours[:] = column_drift(reference, current, NUMERIC, CATEGORICAL)

    ours_seconds = best_of(3, run_ours)
    base_seconds = best_of(2, lambda: base.update(baseline_drift(reference, current)))
    mine = {r.column: (r.stattest, r.score, r.drifted) for r in ours}
    details: dict = {
        "rows": rows,
        "columns": f"{len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical",
        "drifted": sorted(c for c, v in mine.items() if v[2]),
        "differ_from_baseline": _same(mine, base),
    }
    if rows <= 100_000 or full:
        theirs, evidently_seconds = evidently_drift(reference, current)
        details["evidently_seconds"] = round(evidently_seconds, 1)
        details["evidently_vs_ours"] = f"{evidently_seconds / ours_seconds:.0f}x"
        details["differ_from_evidently"] = _same(mine, theirs)
    return ours_seconds, base_seconds, details


def main(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict:
    from bench.common import report

    result: dict = {}
    for rows in sizes:
        ours_seconds, base_seconds, details = timings(rows, os.environ.get("BENCH_FULL") == "1")
        frames_held, frames_peak = peak_memory(rows, "frames")
        _, import_peak = peak_memory(rows, "import")
        _, drift_peak = peak_memory(rows, "drift")
        details["memory_mib"] = (
            f"frames held {frames_held // 1024}, peak: frames only {frames_peak // 1024}, "
            f"+ import drift_stats {import_peak // 1024}, + column_drift {drift_peak // 1024}"
        )
        details["memory_ratio"] = f"{drift_peak / frames_peak:.2f}x (target <= 1.5x)"
        result = report(f"drift_compute_{rows}", ours_seconds, base_seconds, 3.0, **details)
        assert not details["differ_from_baseline"], "decisions or scores differ from the baseline"
        assert not details.get("differ_from_evidently"), "decisions or scores differ from Evidently's"
    return result


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (100_000, 1_000_000))
