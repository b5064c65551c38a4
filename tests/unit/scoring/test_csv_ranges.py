"""A CSV file is cut into byte ranges of whole chunks only where every line break ends a row, and
each range reads back as exactly the chunk the streaming reader makes of the same rows."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from ctloop.errors import DataReadError
from ctloop.io.chunks import iter_tables
from ctloop.io.readers import ReadOptions
from ctloop.io.storage import LocalStorage
from ctloop.scoring.csv_ranges import range_reader, scan

OPTIONS: ReadOptions = {"string_columns": ["id", "kind"], "numeric_columns": ["x"], "na_values": ["", "NA"]}


def _csv(rows: int, newline: str = "\n", final: bool = True) -> bytes:
    lines = ["id,x,kind", *(f"r{i},{i * 1.5},{'ab'[i % 2]}" for i in range(rows))]
    text = newline.join(lines) + (newline if final else "")
    return text.encode()


@pytest.mark.parametrize("block_bytes", [3, 7, 1 << 20])  # line breaks on and across block boundaries
@pytest.mark.parametrize(("newline", "final"), [("\n", True), ("\r\n", True), ("\n", False), ("\r\n", False)])
def test_ranges_hold_whole_chunks_of_rows_as_the_streaming_reader_cuts_them(
    newline, final, block_bytes, tmp_path
):
    path = tmp_path / "b.csv"
    path.write_bytes(_csv(23, newline, final))

    found = scan(path, 10, block_bytes)

    assert found.chunk_rows == [10, 10, 3]
    assert found.ranges is not None
    assert found.breaks == 23 + final
    data = path.read_bytes()
    assert data[: found.ranges[0][0]] == f"id,x,kind{newline}".encode()
    assert found.ranges[-1][1] == len(data)
    storage = LocalStorage(tmp_path)
    read = range_reader(storage, "b.csv", "b.csv", found.ranges, OPTIONS, 1 << 20)
    streamed = list(iter_tables(path, "csv", "b.csv", 10, OPTIONS))
    for k, (_, _, table) in enumerate(streamed):
        assert read(k, found.chunk_rows[k]).equals(table)


@pytest.mark.parametrize(
    "content",
    [
        b'id,x,kind\nr0,1,"a"\nr1,2,b\nr2,3,a\n',  # a quote: a value could hold a line break
        b"id,x,kind\nr0,1,a\n\nr1,2,b\nr2,3,a\n",  # an empty line is no row
        b"\nid,x,kind\nr0,1,a\nr1,2,b\nr2,3,a\n",  # an empty first line
        b"id,x,kind\nr0,1,a\rr1,2,b\nr2,3,a\n",  # a lone carriage return ends a row too
    ],
)
@pytest.mark.parametrize("block_bytes", [2, 1 << 20])
def test_a_file_whose_line_breaks_may_not_end_rows_gets_no_ranges(content, block_bytes, tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(content)

    found = scan(path, 2, block_bytes)

    assert (found.chunk_rows, found.ranges) == (None, None)
    assert found.breaks == content.count(b"\n")  # still at least the rows, as before


def test_a_header_only_file_is_one_empty_chunk(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"id,x,kind\n")

    found = scan(path, 10, 1 << 20)

    assert (found.breaks, found.chunk_rows, found.ranges) == (1, [0], [[10, 10]])


def test_a_range_that_is_not_the_rows_the_plan_counted_is_unreadable(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(_csv(5))
    found = scan(path, 10, 1 << 20)
    assert found.ranges is not None
    read = range_reader(LocalStorage(tmp_path), "b.csv", "b.csv", found.ranges, OPTIONS, 1 << 20)

    assert read(0, 5).num_rows == 5
    with pytest.raises(DataReadError, match=r"hold 5 rows, not 4"):
        read(0, 4)


def test_a_range_reads_values_with_the_streaming_readers_types_and_nulls(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"id,x,kind\nr0,NA,a\n007,2,\nr2,3,NA\n")
    found = scan(path, 2, 1 << 20)
    assert found.ranges is not None
    read = range_reader(LocalStorage(tmp_path), "b.csv", "b.csv", found.ranges, OPTIONS, 1 << 20)

    first, second = read(0, 2), read(1, 1)

    assert first.schema == pa.schema({"id": pa.string(), "x": pa.float64(), "kind": pa.string()})
    expected = pd.DataFrame({"id": ["r0", "007"], "x": [None, 2.0], "kind": ["a", None]})
    pd.testing.assert_frame_equal(first.to_pandas(), expected)
    assert second.to_pylist() == [{"id": "r2", "x": 3.0, "kind": None}]


@pytest.mark.parametrize("content", [b"", b"id,x,kind"])
def test_a_file_without_a_data_row_or_a_line_break_gets_no_ranges(content, tmp_path):
    """An empty file, or a header without its line break, is left to the streaming reader, which
    names the fault (the batch is set aside as for any unreadable file)."""
    path = tmp_path / "b.csv"
    path.write_bytes(content)

    assert scan(path, 10, 1 << 20) == (0, None, None)
