"""Reading label files (scoring/late_labels.read_labels, its public reader): every file in the labels
area is read or set aside with reasons naming it, or a typed error names it; never an unhandled exception."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from ctloop.devtools.example_data import ID_COLUMN, TARGET, write_batches
from ctloop.errors import CtloopError
from ctloop.io.readers import to_parquet_bytes
from ctloop.scoring.late_labels import read_labels
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.fuzz.common import FUZZ
from tests.helpers import example_spec

CELLS = st.one_of(
    st.text(max_size=6),
    st.integers(-3, 3),
    st.floats(),
    st.none(),
    st.sampled_from(["0", "1", "2", "maybe", "NA", "null", "inf", "1.0"]),
)


def _read(fmt: str, files: list[bytes]) -> None:
    """Write ``files`` as one pipeline's label files and read them: every file is either read or
    set aside with reasons that name it, and an error is typed and names a label file."""
    with tempfile.TemporaryDirectory() as folder:
        labels = Path(folder) / "labels"
        labels.mkdir()
        names = [f"labels-{index}.{fmt}" for index in range(len(files))]
        for name, data in zip(names, files, strict=True):
            (labels / name).write_bytes(data)
        write_batches(Path(folder) / "training", range(1), rows=20)  # where the task's classes come from
        raw = example_spec(f"fz{uuid.uuid4().hex[:10]}", str(Path(folder) / "training"))
        raw["scoring"] = {"labels_uri": str(labels), "format": fmt}
        outcome = _outcome(PipelineSpec.model_validate(raw))
    if isinstance(outcome, CtloopError):
        assert any(name in str(outcome) for name in names), f"no label file named: {outcome}"
        return
    _, seen = outcome
    set_aside = seen["files_set_aside"]
    assert seen["files"] + len(set_aside) == len(files)  # no file lost
    for entry in set_aside:
        assert entry["failures"]
        assert any(name in entry["file"] for name in names)


def _outcome(spec: PipelineSpec) -> tuple[pd.DataFrame, dict[str, Any]] | CtloopError:
    try:
        return read_labels(spec, load_settings())
    except CtloopError as error:
        return error


@FUZZ
@given(
    files=st.lists(st.binary(max_size=200), min_size=1, max_size=3), fmt=st.sampled_from(["csv", "parquet"])
)
def test_any_label_bytes_read_or_name_the_file(files, fmt):
    _read(fmt, files)


@st.composite
def label_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Label files as an upstream system might write them: ids and labels of any value, repeated
    ids, extra or missing columns, any column order."""
    rows = draw(st.integers(0, 6))
    columns = draw(st.permutations([ID_COLUMN, TARGET, "note"]))
    keep = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    ids = st.sampled_from(["c1", "c2", "c3", "1", "NA", ""])
    return pd.DataFrame(
        {
            c: draw(st.lists(ids if c == ID_COLUMN else CELLS, min_size=rows, max_size=rows))
            for c in columns
            if c in keep
        }
    )


@FUZZ
@given(frames=st.lists(label_frames(), min_size=1, max_size=3), fmt=st.sampled_from(["csv", "parquet"]))
def test_any_label_table_reads_or_names_the_file(frames, fmt):
    def encode(frame: pd.DataFrame) -> bytes:
        if fmt == "csv":
            return frame.to_csv(index=False).encode()
        try:
            return to_parquet_bytes(frame)
        except (TypeError, ValueError):  # pyarrow cannot store mixed-type columns: write them as text
            return to_parquet_bytes(frame.astype(str))

    _read(fmt, [encode(frame) for frame in frames])
