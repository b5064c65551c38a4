"""A CSV batch cut into byte ranges of whole chunks, so that the parts of a fanned-out batch each
parse only their own rows and no planning pass parses or copies the file.

A range starts right after a line break, which is a row boundary only when no value can hold a
line break and every line is a row: the file holds no quote character (pyarrow's reader lets a
value span lines only inside quotes), no carriage return that a line feed does not follow (a
lone ``\\r`` ends a row too) and no empty line (pyarrow skips those, so they are not rows). The
one pass that counts the file's line breaks checks all three; a file it cannot prove safe gets no
ranges, and the plan falls back to copying its parsed chunks. Chunk ``k`` of the ranges holds
exactly the rows chunk ``k`` of the streaming reader holds, so failures name the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ctloop.errors import DataReadError
from ctloop.io.chunks import csv_convert_options, csv_parse_options, csv_reading, read_errors
from ctloop.io.readers import check_unique

if TYPE_CHECKING:
    import hashlib
    from pathlib import Path

    import pyarrow as pa

    from ctloop.io.readers import ReadOptions
    from ctloop.io.storage import Storage


class Scan(NamedTuple):
    """What one pass over a CSV file found: ``breaks``, its line breaks (at least its data rows,
    a quoted line break counting too); when every line break ends a row, ``chunk_rows`` (each
    chunk's rows) and ``ranges`` (each chunk's bytes ``[start, end)``; the header is bytes 0 to
    the first start), else both None."""

    breaks: int
    chunk_rows: list[int] | None
    ranges: list[list[int]] | None


def scan(path: Path, chunk_rows: int, block_bytes: int, digest: hashlib._Hash | None = None) -> Scan:
    """Count the line breaks of the CSV file at ``path`` block by block, noting where every
    ``chunk_rows``-th data row starts and whether every line break is a row's end; ``digest``, if
    given, is updated with every block (the claim's sha256 in the same pass)."""
    import numpy as np

    breaks = offset = lone_returns = 0
    safe, previous = True, b"\n"  # as if a line ended before the file: an empty first line shows
    starts: list[int] = []  # the byte where data row ``len(starts) * chunk_rows`` starts
    with path.open("rb") as file:
        while block := file.read(block_bytes):
            if digest is not None:
                digest.update(block)
            count = block.count(b"\n")
            if safe:
                edge = previous[-2:] + block[:2]  # what spans the blocks' boundary
                empty = (b"\n\n", b"\n\r\n") if b"\r" in edge or b"\r" in block else (b"\n\n",)
                if len(empty) > 1:  # counting is slower than finding: only for files with returns
                    lone_returns += block.count(b"\r") - block.count(b"\r\n")
                    lone_returns -= previous.endswith(b"\r") and block.startswith(b"\n")
                safe = b'"' not in block and not any(e in part for e in empty for part in (block, edge))
            # the header's line break, then every chunk_rows rows' last one
            next_break = 1 + len(starts) * chunk_rows
            if safe and next_break <= breaks + count:
                positions = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
                while next_break <= breaks + count:
                    starts.append(offset + int(positions[next_break - breaks - 1]) + 1)
                    next_break += chunk_rows
            breaks, offset, previous = breaks + count, offset + len(block), block[-2:]
    if not safe or lone_returns or not starts:  # not starts: no data row (an empty file, a header)
        return Scan(breaks, None, None)
    rows = breaks - 1 if offset and previous.endswith(b"\n") else breaks
    starts = starts[: max(-(-rows // chunk_rows), 1)]  # a last start at the file's end begins no chunk
    ends = [*starts[1:], offset]
    return Scan(
        breaks,
        [min(chunk_rows, rows - k * chunk_rows) for k in range(len(starts))],
        [[start, end] for start, end in zip(starts, ends, strict=True)],
    )


def range_reader(
    storage: Storage, key: str, name: str, ranges: list[list[int]], options: ReadOptions, block_bytes: int
) -> Callable[[int, int], pa.Table]:
    """A function reading chunk ``k`` (``rows`` rows) from its byte range of the CSV object
    ``key``, typed as :func:`ctloop.io.chunks.iter_tables` types the file's chunks; the header is
    read once here."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = storage.read_range(key, 0, ranges[0][0])
    parse = csv_parse_options()
    with read_errors(name, "csv"):
        names = pacsv.read_csv(pa.py_buffer(header), parse_options=parse).schema.names
    check_unique(names, name)
    convert = csv_convert_options(names, options)
    read = pacsv.ReadOptions(column_names=names, block_size=block_bytes)

    def chunk(k: int, rows: int) -> pa.Table:
        data = pa.py_buffer(storage.read_range(key, *ranges[k]))
        with csv_reading(name, names):
            table = pacsv.read_csv(data, read_options=read, parse_options=parse, convert_options=convert)
        if table.num_rows != rows:  # a range that is not whole rows would shift every row number after it
            raise DataReadError(f"{name}: bytes {ranges[k]} hold {table.num_rows} rows, not {rows}")
        return table

    return chunk
