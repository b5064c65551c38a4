"""ctloop's row checks decide and describe exactly as GX does, on generated columns and kwargs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctloop.validation import data_validation, row_checks
from ctloop.validation.data_validation import run_expectations

WORDS = ["a", "b", "ab", "x1", "Zz", "", " "]
numbers_ = st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 1)))


def _gx(expectation: dict[str, Any], values: pd.Series) -> tuple[bool, str]:
    """GX's own verdict and description of ``expectation`` on ``values``."""
    suite = data_validation._build_suite("s", [expectation], Path("generated.json"))
    result = data_validation._validate(data_validation._batch_definition(), suite, values.to_frame())
    (item,) = result.results
    assert not data_validation._crash_message(item.exception_info)
    return bool(item.success), data_validation._describe(item.result)


def _ours(expectation: dict[str, Any], values: pd.Series) -> tuple[bool, str]:
    assert row_checks.handles(expectation)
    assert row_checks.applies_to(expectation, values)
    outcome = row_checks.check(expectation, values)
    return outcome.success, data_validation._describe(outcome.as_gx_result())


@st.composite
def numeric_cases(draw: st.DrawFn) -> tuple[dict[str, Any], pd.Series]:
    values = draw(st.lists(st.one_of(numbers_, st.just(np.nan)), min_size=1, max_size=30))
    column = pd.Series(values, name="v", dtype=draw(st.sampled_from(["float64", "object"])))
    if column.dtype == object:
        column = column.astype("float64")
    kind = draw(st.sampled_from(sorted(row_checks.OPTIONS)))
    kwargs: dict[str, Any] = {"column": "v"}
    if kind == row_checks.BETWEEN:
        low, high = draw(st.one_of(st.none(), numbers_)), draw(st.one_of(st.none(), numbers_))
        if low is None and high is None:
            low = 0
        if low is not None and high is not None and low > high:
            low, high = high, low
        kwargs |= {"min_value": low, "max_value": high}
        kwargs |= {k: draw(st.booleans()) for k in ("strict_min", "strict_max") if draw(st.booleans())}
    elif "value_set" in row_checks.OPTIONS[kind]:
        kwargs["value_set"] = draw(st.lists(numbers_, max_size=4))
    elif "regex" in row_checks.OPTIONS[kind]:
        kwargs["regex"] = draw(st.sampled_from([r"^-", r"\.5", r"^[0-3]", "0$"]))
    if draw(st.booleans()):
        kwargs["mostly"] = 1.0
    return {"type": kind, "kwargs": kwargs}, column


@st.composite
def text_cases(draw: st.DrawFn) -> tuple[dict[str, Any], pd.Series]:
    values = draw(
        st.lists(st.one_of(st.sampled_from(WORDS), st.none(), st.just(np.nan)), min_size=1, max_size=30)
    )
    column = pd.Series(values, name="v", dtype=object)
    kind = draw(st.sampled_from(sorted(set(row_checks.OPTIONS) - {row_checks.BETWEEN})))
    kwargs: dict[str, Any] = {"column": "v"}
    if "value_set" in row_checks.OPTIONS[kind]:
        kwargs["value_set"] = draw(st.lists(st.sampled_from(WORDS), max_size=4))
    elif "regex" in row_checks.OPTIONS[kind]:
        kwargs["regex"] = draw(st.sampled_from([r"^a", r"b$", r"\d", r"^$", r"[A-Z]", r"\s"]))
    return {"type": kind, "kwargs": kwargs}, column


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numeric_cases())
def test_numeric_columns_match_gx(case: tuple[dict[str, Any], pd.Series]) -> None:
    expectation, column = case
    assert _ours(expectation, column) == _gx(expectation, column)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_cases())
def test_text_columns_match_gx(case: tuple[dict[str, Any], pd.Series]) -> None:
    expectation, column = case
    assert _ours(expectation, column) == _gx(expectation, column)


@settings(max_examples=200, deadline=None)
@given(text_cases())
def test_text_columns_read_from_arrow_decide_as_from_python_strings(
    case: tuple[dict[str, Any], pd.Series],
) -> None:
    """A CSV chunk's text columns are checked on its Arrow strings (nulls from the bitmap, set
    membership on the bytes): the same verdict and description as on the frame's values."""
    import pyarrow as pa

    expectation, column = case
    text = pa.chunked_array([pa.array(column, type=pa.string(), from_pandas=True)])
    missing = row_checks.missing_values(column, text)

    assert missing.tolist() == column.isna().tolist()
    assert row_checks.check(expectation, column, missing, text) == row_checks.check(expectation, column)


@pytest.mark.parametrize(
    "expectation",
    [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "v"}},  # no bound: GX refuses
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "v", "min_value": 2, "max_value": 1},
        },
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "v", "min_value": "a"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "v", "min_value": True}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v", "mostly": 0.9}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v", "row_condition": "a>1"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "v", "value_set": None}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "v", "value_set": [[1]]}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "v", "regex": "("}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "v"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {}},
    ],
)
def test_what_gx_keeps(expectation: dict[str, Any]) -> None:
    """Options and forms ctloop does not compute, or that GX refuses or fails on, stay with GX."""
    assert not row_checks.handles(expectation)


def test_types_gx_compares_otherwise_stay_with_gx() -> None:
    between = {"type": row_checks.BETWEEN, "kwargs": {"column": "v", "min_value": 0}}
    in_set = {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "v", "value_set": ["2026"]}}
    stamps = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]))
    assert not row_checks.applies_to(between, pd.Series(["1", "2"], dtype=object))
    assert not row_checks.applies_to(in_set, stamps)
    assert row_checks.applies_to(between, pd.Series([1, 2]))
    assert row_checks.applies_to(between, pd.Series([1.5, np.nan]))


def _suite(tmp_path: Path, expectations: list[dict[str, Any]]) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "s", "expectations": expectations}), encoding="utf-8")
    return path


def test_run_expectations_mixes_row_checks_and_gx(tmp_path: Path) -> None:
    """A column GX must check (a mean) is run by GX; the others by the row checks, with the same
    failures, statistics and a result per expectation in GX's JSON shape."""
    frame = pd.DataFrame({"a": [1.0, 5.0, np.nan], "b": ["x", "y", None]})
    path = _suite(
        tmp_path,
        [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "max_value": 2}},
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "b", "value_set": ["x"]}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "b"}},
            {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "a", "min_value": 10}},
        ],
    )
    outcome = run_expectations(frame, path)
    assert [(f["check"], f["column"], f["detail"]) for f in outcome["failures"]] == [
        ("expect_column_values_to_be_between", "a", "1 unexpected values (50.00%), e.g. [5.0]"),
        ("expect_column_mean_to_be_between", "a", "observed 3.0"),
        ("expect_column_values_to_be_in_set", "b", "1 unexpected values (50.00%), e.g. ['y']"),
        ("expect_column_values_to_not_be_null", "b", "1 unexpected values (33.33%), e.g. [None]"),
    ]
    assert outcome["statistics"]["evaluated_expectations"] == 4
    assert outcome["statistics"]["unsuccessful_expectations"] == 4
    computed = [r for r in outcome["gx_result"]["results"] if r.get("meta", {}).get("computed_by")]
    assert len(computed) == 2  # column b's two; column a has a mean, so GX checks both of a's
    assert json.loads(json.dumps(computed))[1]["result"]["partial_unexpected_list"] == [None]
