"""Training data files are read for the spec's columns only: an unused column is never parsed."""

from __future__ import annotations

import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.errors import DataReadError
from ctloop.io.readers import parse_frame, read_options, read_source
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec

ROWS, NOTE_CHARS = 4000, 2000  # an unused text column of 8 MB
SPEC_COLUMNS = ["row_id", "x", "color", "label"]


def _spec(folder: Path, fmt: str) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": f"rc{uuid.uuid4().hex[:10]}",
            "data": {"uri": str(folder), "format": fmt},
            "columns": {"target": "label", "id": ["row_id"], "numeric": ["x"], "categorical": ["color"]},
            "expectation_suite": "s",
            "estimator": {"class_path": "sklearn.linear_model.LogisticRegression"},
        }
    )


def _frame(rows: int, note_chars: int, seed: int = 0) -> pd.DataFrame:
    """The spec's columns with an undeclared ``notes`` column between them; ``color`` holds "NA",
    a category the spec's reading keeps as text."""
    rng = np.random.default_rng(seed)
    letters = rng.integers(ord("a"), ord("h"), size=(rows, note_chars), dtype=np.uint8)
    return pd.DataFrame(
        {
            "row_id": [f"{i:05d}" for i in range(rows)],
            "notes": [row.tobytes().decode() for row in letters],
            "x": rng.normal(size=rows),
            "color": rng.choice(["red", "NA", "blue"], size=rows),
            "label": rng.integers(0, 2, size=rows),
        }
    )


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_column_the_spec_does_not_name_is_never_parsed(tmp_path, fmt):
    path = tmp_path / "d" / f"batch-0000.{fmt}"
    _write(_frame(ROWS, NOTE_CHARS), path, fmt)
    spec = _spec(path.parent, fmt)
    unused_text = ROWS * NOTE_CHARS

    tracemalloc.start()
    try:
        frame, _ = read_source(spec, load_settings())
        projected_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        everything = parse_frame(path.read_bytes(), fmt, "f", **read_options(spec.columns))
        full_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert list(frame.columns) == SPEC_COLUMNS
    assert frame.equals(everything[SPEC_COLUMNS])  # the same typing: ids as text, "NA" a category
    assert (frame["color"] == "NA").any()
    assert full_peak > path.stat().st_size + unused_text  # parsing the column costs its text again
    assert projected_peak < path.stat().st_size + unused_text // 4  # only the file's bytes, briefly


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_whose_header_differs_from_the_first_is_named_even_for_an_unread_column(tmp_path, fmt):
    folder = tmp_path / "d"
    _write(_frame(30, 5), folder / f"batch-0000.{fmt}", fmt)
    _write(_frame(30, 5).drop(columns=["notes"]), folder / f"batch-0001.{fmt}", fmt)

    with pytest.raises(DataReadError, match=rf"batch-0001\.{fmt}: columns differ .*missing \['notes'\]"):
        read_source(_spec(folder, fmt), load_settings())


def test_a_declared_column_absent_from_every_file_is_left_for_validation_to_name(tmp_path):
    from ctloop.validation.schema import check_schema

    folder = tmp_path / "d"
    for index in range(2):
        _write(_frame(30, 5, seed=index).drop(columns=["color"]), folder / f"batch-000{index}.csv", "csv")
    spec = _spec(folder, "csv")

    frame, _ = read_source(spec, load_settings())

    assert list(frame.columns) == ["row_id", "x", "label"]
    assert {"check": "column_present", "column": "color", "detail": "required column 'color' is missing"} in (
        check_schema(frame, spec)
    )
