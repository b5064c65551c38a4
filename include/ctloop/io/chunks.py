"""Reading a data file in chunks of rows, typed as :func:`ctloop.io.readers.parse_frame` types a
whole file, so a task holds one chunk whatever the file's size.

CSV streams through pyarrow's CSV reader (``block_bytes`` parsed at a time, quoted newlines
allowed), Parquet by record batches; both are cut into chunks of exactly ``chunk_rows`` rows (the
last may be shorter), so chunk ``k`` holds the file's data rows ``k * chunk_rows`` onwards
(0-based). A file without data rows is one empty chunk, whose schema check then says so.

Types are fixed before the first chunk, never inferred per chunk (a column could otherwise turn
from integers to floats or text between chunks): ids and categoricals are text with only the
spec's NA tokens null, as in :func:`parse_frame`; numeric columns are float64 (an integer column
too, so a chunk with a missing value keeps the type of the others); a CSV's other columns (the
timestamp) are text as written, a Parquet file's keep their stored type. The label, which the
spec does not type, is read like parse_frame reads it (numbers when every value of the chunk is
one); it is never written to the prediction log. Errors name the file and column as parse_frame's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from ctloop.errors import CtloopError, DataReadError
from ctloop.io.readers import check_finite, check_unique, text_columns

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import pyarrow.csv as pacsv

    from ctloop.io.readers import ReadOptions

DEFAULT_BLOCK_BYTES = 4 << 20
_NOT_A_NUMBER = re.compile(
    r"In CSV column #(?P<column>\d+): (?:Row #\d+: )?"
    r"CSV conversion error to double: invalid value '(?P<value>.*)'$",
    re.DOTALL,
)


class NotNumeric(DataReadError):
    """A numeric column holds a value that is not a number: the schema's ``numeric_dtype`` failure,
    found while reading (a chunked CSV column is typed before its values are seen)."""

    def __init__(self, name: str, column: str, value: str) -> None:
        self.column, self.value = column, value
        super().__init__(f"{name}: numeric column {column!r} has a value that is not a number: {value!r}")


class Chunk(NamedTuple):
    """Rows ``first_row`` to ``first_row + len(frame) - 1`` (0-based data rows) of a file.
    ``table``: the Arrow table the frame was made from, where it holds the same values in every
    column the spec types (a CSV file's), so rows written back to Arrow need not be converted
    again; None where the frame changed them (a Parquet file's text columns)."""

    number: int
    first_row: int
    frame: pd.DataFrame
    table: pa.Table | None = None

    @property
    def rows(self) -> str:
        """The rows as a person reads them in a failure: ``rows 250000-499999``."""
        return f"rows {self.first_row}-{self.first_row + max(len(self.frame), 1) - 1}"


def iter_chunks(
    path: Path,
    fmt: str,
    name: str,
    chunk_rows: int,
    options: ReadOptions,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    columns: Sequence[str] | None = None,
    inferred: Sequence[str] = (),
    keep: Callable[[int], bool] | None = None,
) -> Iterator[Chunk]:
    """The file at ``path`` (``name`` in errors) as chunks of ``chunk_rows`` rows; ``columns``:
    only those (all when None); ``inferred``: CSV columns typed per chunk as parse_frame would (the
    label); ``keep``: only the chunks whose index it accepts become frames (the others are still
    parsed, to count rows)."""
    for index, first_row, table in iter_tables(
        path, fmt, name, chunk_rows, options, block_bytes=block_bytes, columns=columns
    ):
        if keep is None or keep(index):
            yield table_chunk(table, fmt, name, index, first_row, options, inferred)


def iter_tables(
    path: Path,
    fmt: str,
    name: str,
    chunk_rows: int,
    options: ReadOptions,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[int, int, pa.Table]]:
    """``(index, first row, table)`` of :func:`iter_chunks`'s chunks before they become frames: a
    copy of these tables (a planning pass) reads back as the same chunks through :func:`table_chunk`."""
    if path.stat().st_size == 0:
        raise DataReadError(f"{name}: file is empty (0 bytes)")
    schema, batches = (
        _csv_batches(path, name, options, block_bytes, columns)
        if fmt == "csv"
        else _parquet_batches(path, name, chunk_rows, columns)
    )
    yield from _rechunk(schema, batches, chunk_rows)


def table_chunk(
    table: pa.Table,
    fmt: str,
    name: str,
    number: int,
    first_row: int,
    options: ReadOptions,
    inferred: Sequence[str] = (),
) -> Chunk:
    """Chunk ``number`` (from ``first_row``) of a file of format ``fmt``, typed from its table."""
    frame = _frame(table, fmt, name, first_row, options, inferred)
    return Chunk(number, first_row, frame, table if fmt == "csv" else None)


def _csv_batches(
    path: Path, name: str, options: ReadOptions, block_bytes: int, columns: Sequence[str] | None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.csv as pacsv

    parse = csv_parse_options()
    read = pacsv.ReadOptions(block_size=block_bytes)
    with read_errors(name, "csv"):
        names = pacsv.open_csv(path, read_options=read, parse_options=parse).schema.names
    check_unique(names, name)
    convert = csv_convert_options(names, options, columns)
    with csv_reading(name, names):  # the first block is parsed here already
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)

    def batches() -> Iterator[pa.RecordBatch]:
        with reader, csv_reading(name, names):
            yield from reader

    return reader.schema, batches()


def csv_parse_options() -> pacsv.ParseOptions:
    """How every CSV batch is split into rows: a quoted value may hold a line break."""
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(newlines_in_values=True)


def csv_convert_options(
    names: Sequence[str], options: ReadOptions, columns: Sequence[str] | None = None
) -> pacsv.ConvertOptions:
    """How a CSV file with the header ``names`` is typed (numeric columns float64, every other
    column text, the spec's NA tokens null), reading ``columns`` only (all when None)."""
    import pyarrow.csv as pacsv

    numeric = set(options["numeric_columns"])
    return pacsv.ConvertOptions(
        column_types={c: pa.float64() if c in numeric else pa.string() for c in names},
        null_values=list(options["na_values"]),
        strings_can_be_null=True,
        include_columns=list(columns) if columns is not None else list(names),
    )


@contextmanager
def csv_reading(name: str, names: list[str]) -> Iterator[None]:
    """A value that is not a number names its column as the schema check would; anything else makes
    the file unreadable, named like :func:`parse_frame`'s errors."""
    with read_errors(name, "csv"):
        try:
            yield
        except pa.ArrowInvalid as exc:
            found = _NOT_A_NUMBER.search(str(exc))
            if found is None:
                raise
            raise NotNumeric(name, names[int(found["column"])], found["value"]) from exc


def _parquet_batches(
    path: Path, name: str, chunk_rows: int, columns: Sequence[str] | None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.parquet as pq

    with read_errors(name, "parquet"):
        parquet = pq.ParquetFile(path)
    check_unique(parquet.schema_arrow.names, name)
    schema = (
        parquet.schema_arrow
        if columns is None
        else pa.schema([parquet.schema_arrow.field(c) for c in columns])
    )

    def batches() -> Iterator[pa.RecordBatch]:
        with parquet, read_errors(name, "parquet"):
            yield from parquet.iter_batches(batch_size=chunk_rows, columns=columns)

    return schema, batches()


@contextmanager
def read_errors(name: str, fmt: str) -> Iterator[None]:
    """Turn a pyarrow failure into a :class:`DataReadError` naming the file, as parse_frame does."""
    try:
        yield
    except CtloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc


def _rechunk(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], chunk_rows: int
) -> Iterator[tuple[int, int, pa.Table]]:
    """``(index, first row, table)`` of exactly ``chunk_rows`` rows each (the last may be shorter);
    one empty table when there are no rows."""
    pending: list[pa.RecordBatch] = []
    held = index = 0
    for batch in batches:
        while batch.num_rows:
            take = min(chunk_rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == chunk_rows:
                yield index, index * chunk_rows, pa.Table.from_batches(pending, schema)
                pending, held, index = [], 0, index + 1
    if held or index == 0:
        yield index, index * chunk_rows, pa.Table.from_batches(pending, schema)


def _frame(
    table: pa.Table, fmt: str, name: str, first_row: int, options: ReadOptions, inferred: Sequence[str]
) -> pd.DataFrame:
    numeric = set(options["numeric_columns"])
    if fmt == "parquet":  # a stored integer column would read as float in a chunk with a null only
        for position, field in enumerate(table.schema):
            kind = field.type
            if field.name in numeric and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                table = table.set_column(position, field.name, table.column(position).cast(pa.float64()))
            elif field.name in options["string_columns"] and pa.types.is_integer(kind):  # decimal text
                table = table.set_column(position, field.name, table.column(position).cast(pa.string()))
    frame = table.to_pandas()
    if fmt == "csv":
        for column in [c for c in frame.columns if c not in numeric]:  # null as parse_frame's NaN
            nulls = table.column(column).is_null().to_numpy(zero_copy_only=False)  # Arrow's bitmap
            if nulls.any():  # cheaper than pandas' isna over Python strings
                values = frame[column].to_numpy(dtype=object, copy=True)
                values[nulls] = np.nan
                frame[column] = values
        for column in [c for c in inferred if c in frame.columns]:
            frame[column] = _as_read(frame[column])
    else:
        text_columns(frame, name, options["string_columns"], options["na_values"])
    check_finite(frame, name, options["numeric_columns"], first_row + 1)
    return frame


def _as_read(values: pd.Series) -> pd.Series:
    """A column the spec does not type (the label), as pandas reads it: numbers when all are."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if bool((numbers.notna() | values.isna()).all()) else values
