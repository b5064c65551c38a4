"""The commonest row-level expectations of a suite, computed on a whole column at once.

Scoring checks every chunk of a batch with the champion's suite, and GX spends about 0.1 s of
bookkeeping per expectation and chunk (a validator, a metric graph, a result object) around a
condition that pandas evaluates in a few milliseconds; its import alone takes 3 s of a task. The
expectations below are evaluated here with the very condition GX's pandas engine evaluates (the
source is cited on each), on the non-null values as GX's column map metrics do, and report GX's
figures: the unexpected count, its share of the non-null values (of all values for the null
checks) and the first unexpected values. Only the exact kwargs listed are handled (no
``row_condition``, no ``mostly`` below 1, bounds that are numbers on a numeric column); any other
expectation, or option, is left to GX. tests/unit/validation/test_row_checks.py checks that the
verdict and the description equal GX's on generated columns. Measured in bench/README.md (j).
"""

from __future__ import annotations

import numbers
import re
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

BETWEEN = "expect_column_values_to_be_between"
OPTIONS: dict[str, frozenset[str]] = {
    "expect_column_values_to_not_be_null": frozenset(),
    "expect_column_values_to_be_null": frozenset(),
    BETWEEN: frozenset({"min_value", "max_value", "strict_min", "strict_max"}),
    "expect_column_values_to_be_in_set": frozenset({"value_set"}),
    "expect_column_values_to_not_be_in_set": frozenset({"value_set"}),
    "expect_column_values_to_match_regex": frozenset({"regex"}),
    "expect_column_values_to_not_match_regex": frozenset({"regex"}),
}
"""The expectations handled here, each with the kwargs it may have besides ``column``."""

PARTIAL_COUNT = 5  # GX's BASIC result format keeps the first five unexpected values


class RowCheckResult(NamedTuple):
    """What GX's BASIC result reports of one column map expectation."""

    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None
    partial_unexpected_list: list[Any]

    def as_gx_result(self) -> dict[str, Any]:
        """The ``result`` part of GX's expectation result, as its ``_describe`` reads it."""
        return {
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "partial_unexpected_list": self.partial_unexpected_list,
        }


def handles(expectation: dict[str, Any]) -> bool:
    """Whether ``expectation`` is one of :data:`OPTIONS` with only its own, well-formed kwargs;
    one that is not (or that GX would refuse, such as a between without bounds) stays with GX."""
    kind = expectation.get("type")
    kwargs = expectation.get("kwargs") or {}
    if kind not in OPTIONS or not isinstance(kwargs.get("column"), str):
        return False
    if kwargs.get("mostly") not in (None, 1, 1.0) or not set(kwargs) <= {"column", "mostly", *OPTIONS[kind]}:
        return False
    if kind == BETWEEN:
        return _plain_bounds(kwargs)
    if "value_set" in OPTIONS[kind]:
        values = kwargs.get("value_set")
        return isinstance(values, list) and all(_scalar(v) for v in values)
    if "regex" in OPTIONS[kind]:
        return isinstance(kwargs.get("regex"), str) and _compiles(kwargs["regex"])
    return True


def applies_to(expectation: dict[str, Any], values: pd.Series) -> bool:
    """Whether GX's condition for this column's type is the one :func:`check` computes: a between
    only on integers or floats (``column.dtype in [int, float]`` in GX: other types are compared
    value by value, with their own errors), a value set not on timestamps."""
    import numpy as np
    import pandas as pd

    if expectation.get("type") == BETWEEN:
        return values.dtype in (np.dtype(int), np.dtype(float))
    # GX parses a set's text into timestamps for a datetime column (parse_value_set)
    return "value_set" not in OPTIONS[expectation["type"]] or not pd.api.types.is_datetime64_any_dtype(values)


def check(
    expectation: dict[str, Any],
    values: pd.Series,
    missing: pd.Series | None = None,
    text: pa.ChunkedArray | None = None,
) -> RowCheckResult:
    """``expectation`` (one :func:`handles` accepts) on ``values``, as GX's pandas engine decides it;
    ``missing``: ``values.isna()`` if the caller has it (a column's checks share it); ``text``: the
    same values as an Arrow string column (:func:`missing_values`), where set membership is
    tested on the bytes instead of on Python strings."""
    kind, kwargs = expectation["type"], expectation.get("kwargs") or {}
    missing = values.isna() if missing is None else missing
    if kind == "expect_column_values_to_not_be_null":
        return _result(values, missing, len(values))
    if kind == "expect_column_values_to_be_null":
        return _result(values, ~missing, len(values))
    present = values[~missing]
    if text is not None and "value_set" in kwargs and all(isinstance(v, str) for v in kwargs["value_set"]):
        expected = _in_text_set(text, kwargs["value_set"], missing, present.index)
        condition = expected if kind == "expect_column_values_to_be_in_set" else ~expected
    else:
        condition = _condition(kind, kwargs, present)
    return _result(present, ~condition, len(present), total=len(values))


def missing_values(values: pd.Series, text: pa.ChunkedArray | None) -> pd.Series:
    """``values.isna()``, read from ``text``'s null bitmap when the caller has the column as Arrow
    strings holding the same values (pandas' null test walks every Python string)."""
    import pandas as pd
    import pyarrow as pa

    if text is None or not pa.types.is_string(text.type) or len(text) != len(values):
        return values.isna()
    return pd.Series(text.is_null().to_numpy(zero_copy_only=False), index=values.index)


def _in_text_set(
    text: pa.ChunkedArray, value_set: list[str], missing: pd.Series, index: pd.Index
) -> pd.Series:
    """``isin`` of the present values (at ``index``) of a string column, on Arrow's bytes: equal
    text is equal bytes, as Python's ``str`` equality in pandas' ``isin``."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.is_in(text, value_set=pa.array(value_set, pa.string())).to_numpy(zero_copy_only=False)
    return pd.Series(found[~missing.to_numpy()], index=index)


def _condition(kind: str, kwargs: dict[str, Any], values: pd.Series) -> pd.Series:
    """GX's ``column_condition_partial`` for pandas of each kind: True where a value is expected."""
    if kind == BETWEEN:  # ColumnValuesBetween._pandas_vectorized
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        above = True if low is None else (low < values) if kwargs.get("strict_min") else (low <= values)
        below = True if high is None else (values < high) if kwargs.get("strict_max") else (values <= high)
        return above & below  # at least one side is a Series
    if kind == "expect_column_values_to_be_in_set":  # ColumnValuesInSet._pandas
        return values.isin(kwargs["value_set"])
    if kind == "expect_column_values_to_not_be_in_set":  # ColumnValuesNotInSet._pandas
        return ~values.isin(kwargs["value_set"])
    matches = values.astype(str).str.contains(kwargs["regex"])  # ColumnValuesMatchRegex._pandas
    return matches if kind == "expect_column_values_to_match_regex" else ~matches


def _result(
    values: pd.Series, unexpected: pd.Series, counted: int, *, total: int | None = None
) -> RowCheckResult:
    """GX's figures: the share of ``counted`` values (the non-null ones, or all for the null
    checks) that are unexpected, and the first few of them as Python values."""
    count = int(unexpected.sum())
    return RowCheckResult(
        success=count == 0,
        element_count=len(values) if total is None else total,
        unexpected_count=count,
        unexpected_percent=100.0 * count / counted if counted else None,
        partial_unexpected_list=values[unexpected].head(PARTIAL_COUNT).tolist() if count else [],
    )


def _plain_bounds(kwargs: dict[str, Any]) -> bool:
    """Numbers (not booleans), at least one, the lower not above the upper; strictness a bool."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bounds = [b for b in (low, high) if b is not None]
    if not bounds or not all(_number(b) for b in bounds):
        return False
    if low is not None and high is not None and low > high:
        return False
    return all(isinstance(kwargs.get(k, False), bool) for k in ("strict_min", "strict_max"))


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _scalar(value: object) -> bool:
    return isinstance(value, str) or _number(value)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True
