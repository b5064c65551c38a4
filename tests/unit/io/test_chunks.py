"""Chunked reading gives parse_frame's values and kinds, chunk after chunk, with fixed types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctloop.errors import DataReadError
from ctloop.io.chunks import NotNumeric, iter_chunks
from ctloop.io.readers import parse_frame

STRINGS = ["id", "plan"]
NUMERIC = ["amount", "count"]
OPTIONS = {"string_columns": STRINGS, "numeric_columns": NUMERIC, "na_values": [""]}

CSV = (
    "id,plan,amount,count,when,label\n"
    "007,NA,1.5,3,2026-01-01,0\n"
    '"0123456789012345678901234567890","multi\nline, quoted",,4,2026-01-02,1\n'
    "00042,null,2.25,,2026-01-03,\n"
    ',"",3,5,,1\n'
    "9007199254740993,n/a,-0.5,6,2026-01-05,0\n"
    '42,"say ""hi""",1e3,7,2026-01-06,1\n'
    "0042,basic,0,8,2026-01-07,0\n"
    "12345678901234567890123,NaN,7,9,2026-01-08,1\n"
    "1,premium,8,10,2026-01-09,0\n"
)


def _whole(data: bytes, fmt: str) -> pd.DataFrame:
    """parse_frame's frame, with numeric columns as float64 (what chunks always give them)."""
    frame = parse_frame(data, fmt, "f", STRINGS, numeric_columns=NUMERIC, na_values=[""])
    return frame.astype(dict.fromkeys(NUMERIC, "float64"))


def _chunked(path, fmt: str, rows: int, **kwargs) -> list[pd.DataFrame]:
    return [c.frame for c in iter_chunks(path, fmt, str(path), rows, OPTIONS, inferred=["label"], **kwargs)]


@pytest.mark.parametrize("rows", [1, 7, 100_000])
def test_csv_chunks_equal_parse_frame(tmp_path, rows):
    path = tmp_path / "batch.csv"
    path.write_bytes(CSV.encode())

    frames = _chunked(path, "csv", rows, block_bytes=128)  # several blocks per file
    assert [len(f) for f in frames] == [min(rows, 9 - i) for i in range(0, 9, rows)]
    whole = _whole(CSV.encode(), "csv")
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
    for frame in frames:  # one type per column in every chunk, whatever its values
        assert frame.dtypes.drop("label").to_dict() == whole.dtypes.drop("label").to_dict()
    assert whole.loc[0, "id"] == "007"
    assert whole.loc[0, "plan"] == "NA"
    assert pd.isna(whole.loc[3, "id"])
    assert whole.loc[4, "id"] == "9007199254740993"


@pytest.mark.parametrize("rows", [1, 7, 100_000])
def test_parquet_chunks_equal_parse_frame(tmp_path, rows):
    table = pa.table(
        {
            "id": pa.array([7, 12345678901234567, 0, 42, 1, 2, 3, 4, 5], pa.int64()),
            "plan": pa.array(["NA", "", None, "a", "b", "c", "d", "e", "f"]).dictionary_encode(),
            "amount": pa.array([1.5, None, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            "count": pa.array([1, 2, 3, None, 5, 6, 7, 8, 9], pa.int64()),  # float only in chunks with a null
            "when": pa.array(pd.date_range("2026-01-01", periods=9)),
        }
    )
    path = tmp_path / "batch.parquet"
    pq.write_table(table, path, row_group_size=4)

    frames = _chunked(path, "parquet", rows)
    assert [len(f) for f in frames] == [min(rows, 9 - i) for i in range(0, 9, rows)]
    whole = _whole(path.read_bytes(), "parquet")
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
    assert {str(f["count"].dtype) for f in frames} == {"float64"}
    assert whole.loc[1, "id"] == "12345678901234567"
    assert pd.isna(whole.loc[1, "plan"])


def test_only_the_columns_asked_for_and_the_chunks_kept_are_converted(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(CSV.encode())

    chunks = list(iter_chunks(path, "csv", "f", 2, OPTIONS, columns=["id"], keep=lambda k: k % 2 == 1))

    assert [(c.number, c.first_row, list(c.frame.columns)) for c in chunks] == [
        (1, 2, ["id"]),
        (3, 6, ["id"]),
    ]
    assert chunks[1].frame["id"].tolist() == ["0042", "12345678901234567890123"]
    assert chunks[1].rows == "rows 6-7"


def test_a_file_without_rows_is_one_empty_chunk(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(b"id,plan,amount,count\n")

    (chunk,) = iter_chunks(path, "csv", "f", 5, OPTIONS)

    assert chunk.frame.empty
    assert list(chunk.frame.columns) == ["id", "plan", "amount", "count"]


def test_errors_name_the_file_the_column_and_the_row(tmp_path):
    path = tmp_path / "batch.csv"
    rows = "".join(f"{i},a,{i},1\n" for i in range(20))
    path.write_bytes(f"id,plan,amount,count\n{rows}20,a,seventy,1\n".encode())
    with pytest.raises(
        NotNumeric, match=r"batch\.csv: numeric column 'amount' has a value .*'seventy'"
    ) as info:
        _chunked(path, "csv", 5)
    assert (info.value.column, info.value.value) == ("amount", "seventy")

    path.write_bytes(f"id,plan,amount,count\n{rows}20,a,inf,1\n".encode())
    with pytest.raises(DataReadError, match=r"'amount' has 1 infinite values \(first in data row 21\)"):
        _chunked(path, "csv", 5)
    path.write_bytes(b"id,id,amount\n1,2,3\n")
    with pytest.raises(DataReadError, match=r"column 'id' appears more than once"):
        _chunked(path, "csv", 5)
    path.write_bytes(b"id,plan\n1,2,3\n")
    with pytest.raises(DataReadError, match=r"batch\.csv: cannot read as csv"):
        _chunked(path, "csv", 5)
    path.write_bytes("id;plan\n1;2\n".encode("utf-16"))  # not UTF-8: the header cannot be decoded
    with pytest.raises(DataReadError, match=r"batch\.csv: cannot read as csv"):
        _chunked(path, "csv", 5)
    path.write_bytes(b"")
    with pytest.raises(DataReadError, match=r"file is empty \(0 bytes\)"):
        _chunked(path, "csv", 5)


def test_chunks_are_never_larger_than_asked(tmp_path):
    frame = pd.DataFrame({"id": np.arange(10_000).astype(str), "amount": np.arange(10_000) / 3})
    path = tmp_path / "batch.parquet"
    frame.to_parquet(path, row_group_size=3_000)

    sizes = [len(c.frame) for c in iter_chunks(path, "parquet", "f", 700, OPTIONS)]

    assert max(sizes) == 700
    assert sum(sizes) == 10_000
