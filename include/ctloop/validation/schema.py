"""Schema checks from the pipeline spec: rows, columns and column kinds.

These run before any expectation suite: GX passes row-level expectations vacuously on an empty
frame and crashes on a missing column, so emptiness and schema are checked here explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Callable

    from ctloop.spec.models import PipelineSpec


class Failure(TypedDict):
    """One failed check; ``column`` is None for a check of the whole table."""

    check: str
    column: str | None
    detail: str


def failure(check: str, column: str | None, detail: str) -> Failure:
    """One failed check, as it is reported in XCom, MLflow and error messages."""
    return {"check": check, "column": column, "detail": detail}


def _first_unparseable(values: pd.Series, parse: Callable[[pd.Series], pd.Series]) -> object:
    parsed = parse(values)
    bad = values[parsed.isna() & values.notna()]
    return bad.iloc[0] if len(bad) else None


def _first_untimestamp(values: pd.Series) -> object:
    """The first value pandas cannot read as a timestamp in any format it knows (``mixed``), trying
    ISO 8601 first: three times faster on the values that are, the others are tried again."""
    iso = pd.to_datetime(values, errors="coerce", format="ISO8601")
    rest = values[iso.isna() & values.notna()]
    return _first_unparseable(rest, lambda s: pd.to_datetime(s, errors="coerce", format="mixed"))


def check_schema(
    frame: pd.DataFrame, spec: PipelineSpec, *, require_target: bool = True, valued_per_column: bool = True
) -> list[Failure]:
    """Every way ``frame`` departs from the spec's columns; empty when it conforms. Without
    ``valued_per_column`` an input column with no value is not a failure here (a chunk's caller
    decides it over the whole batch)."""
    columns = spec.columns
    expected = [c for c in columns.all_names() if require_target or c != columns.target]
    failures: list[Failure] = []
    if frame.empty:
        failures.append(failure("has_rows", None, "the data has no rows"))
    missing = [c for c in expected if c not in frame.columns]
    failures += [failure("column_present", c, f"required column {c!r} is missing") for c in missing]
    allowed = set(columns.all_names())
    unexpected = [str(c) for c in frame.columns if c not in allowed]
    failures += [
        failure("no_unexpected_columns", c, f"column {c!r} is not declared in the pipeline spec")
        for c in unexpected
    ]
    if frame.empty:  # every column of a file without rows reads as text: kinds say nothing here
        return failures
    inputs = [*columns.id, *([columns.timestamp] if columns.timestamp else []), *columns.features]
    failures += [
        failure("not_all_null", c, f"column {c!r} has no value in any of its {len(frame)} rows")
        for c in inputs
        if valued_per_column and c in frame.columns and frame[c].isna().all()
    ]
    for column in columns.numeric:
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            example = _first_unparseable(frame[column], lambda s: pd.to_numeric(s, errors="coerce"))
            failures.append(
                failure(
                    "numeric_dtype",
                    column,
                    f"numeric column {column!r} has dtype {frame[column].dtype}"
                    + (f" (e.g. value {example!r})" if example is not None else ""),
                )
            )
    if columns.timestamp and columns.timestamp in frame.columns:
        values = frame[columns.timestamp]
        if not pd.api.types.is_datetime64_any_dtype(values):
            example = _first_untimestamp(values)
            if example is not None:
                failures.append(
                    failure("timestamp_parseable", columns.timestamp, f"value {example!r} is not a timestamp")
                )
    if require_target:
        failures += _training_failures(frame, spec)
    return failures


def _training_failures(frame: pd.DataFrame, spec: PipelineSpec) -> list[Failure]:
    """What makes data unfit to train on whatever its values: too few rows, a missing or infinite
    label, a single class."""
    target = spec.columns.target
    failures: list[Failure] = []
    if len(frame) < spec.data.min_rows:
        failures.append(
            failure("min_rows", None, f"{len(frame)} rows, fewer than data.min_rows {spec.data.min_rows}")
        )
    if target not in frame.columns:
        return failures
    values = frame[target]
    if values.isna().any():
        failures.append(failure("target_labeled", target, f"{int(values.isna().sum())} rows have no label"))
    infinite = (
        int(np.isinf(values.to_numpy(dtype="float64", na_value=np.nan)).sum())
        if pd.api.types.is_float_dtype(values)
        else 0
    )
    if infinite:
        failures.append(failure("target_finite", target, f"{infinite} rows have an infinite label"))
    classes = values.dropna().unique().tolist()
    if spec.task == "classification" and len(classes) == 1:
        failures.append(
            failure(
                "target_classes", target, f"every labeled row has the class {classes[0]!r}: nothing to learn"
            )
        )
    return failures
