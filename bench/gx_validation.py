"""(c) GX validation of 1M rows versus the same checks written directly in pandas. Target <= 5x.

The baseline implements each expectation type of the example suite in vectorised pandas and
counts unexpected values, as ctloop reports them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from bench.common import best_of, report
from ctloop.devtools.example_data import generate_batch
from ctloop.validation.data_validation import run_expectations

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "include" / "expectations" / "churn.json"


def pandas_checks(frame: pd.DataFrame, expectations: list[dict]) -> list[tuple[str, str, int]]:
    """(type, column, unexpected count) for every expectation that fails."""
    failures = []
    for expectation in expectations:
        kind, kwargs = expectation["type"], expectation["kwargs"]
        column = frame[kwargs["column"]]
        present = column.dropna()
        if kind == "expect_column_values_to_not_be_null":
            unexpected = int(column.isna().sum())
        elif kind == "expect_column_values_to_be_between":
            unexpected = int(((present < kwargs["min_value"]) | (present > kwargs["max_value"])).sum())
        elif kind == "expect_column_values_to_be_in_set":
            unexpected = int((~present.isin(kwargs["value_set"])).sum())
        elif kind == "expect_column_values_to_be_unique":
            unexpected = int(present.duplicated(keep=False).sum())
        else:
            raise ValueError(f"no pandas baseline for {kind}")
        if unexpected:
            failures.append((kind, kwargs["column"], unexpected))
    return failures


def main(rows: int = 1_000_000) -> dict:
    frame = pd.concat(
        [generate_batch(rows // 10, seed=1, batch_index=i) for i in range(10)], ignore_index=True
    )
    frame.loc[frame.index[::97], "age"] = -1.0  # one failing check, so both report unexpected values
    expectations = json.loads(SUITE.read_text())["expectations"]
    run_expectations(frame.head(1000), SUITE)  # warm-up: imports and GX's first-use caches

    gx_result: dict = {}
    gx_seconds = best_of(2, lambda: gx_result.update(run_expectations(frame, SUITE)))
    baseline: list = []
    pandas_seconds = best_of(3, lambda: baseline.__setitem__(slice(None), pandas_checks(frame, expectations)))
    gx_failed = sorted((f["check"], f["column"]) for f in gx_result["failures"])
    assert gx_failed == sorted((k, c) for k, c, _ in baseline), (gx_failed, baseline)
    return report(
        "gx_validation", gx_seconds, pandas_seconds, 5.0, rows=len(frame), expectations=len(expectations)
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
