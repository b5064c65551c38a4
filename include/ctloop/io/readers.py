"""Reading a pipeline's data files into one frame, with errors that name the file at fault."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ctloop.errors import CtloopError, DataReadError
from ctloop.io.storage import Storage, open_storage

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ctloop.settings import Settings
    from ctloop.spec.models import Columns, PipelineSpec

log = logging.getLogger(__name__)

SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def list_source(uri: str, fmt: str, settings: Settings) -> tuple[Storage, list[str]]:
    """The storage and the keys of the data files at ``uri``: one file, or a folder's files in order."""
    suffixes = SUFFIXES[fmt]  # in any case: a folder of .CSV files is read, not skipped
    if uri.rstrip("/").lower().endswith(suffixes):
        parent, _, name = uri.rstrip("/").rpartition("/")
        storage = open_storage(parent or ".", settings)
        keys = [name] if storage.exists(name) else []
    else:
        storage = open_storage(uri, settings)
        keys = [k for k in storage.list_keys() if k.lower().endswith(suffixes)]
    if not keys:
        raise DataReadError(f"{uri}: no {fmt} files found")
    return storage, keys


class ReadOptions(TypedDict):
    """How a pipeline's files are read, from its spec's column kinds: pass as ``**read_options(...)``."""

    string_columns: Sequence[str]
    numeric_columns: Sequence[str]
    na_values: Sequence[str]


def read_options(columns: Columns) -> ReadOptions:
    """Ids and categoricals as text, numeric columns checked finite, only the spec's NA tokens as null."""
    return {
        "string_columns": [*columns.id, *columns.categorical],
        "numeric_columns": list(columns.numeric),
        "na_values": list(columns.na_values),
    }


def parse_frame(
    data: bytes,
    fmt: str,
    name: str,
    string_columns: Sequence[str],
    *,
    numeric_columns: Sequence[str] = (),
    na_values: Sequence[str] = ("",),
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Parse one file's bytes; ``string_columns`` are read as text so ids and codes keep their form.
    Only ``columns`` (every column when None) are parsed: the others' values are never converted.

    Only ``na_values`` read as null (pandas' own list would turn a category "NA" or "null" into a
    missing value), in a Parquet file's text columns too. A repeated column name, or an infinite
    value in one of ``numeric_columns``, raises :class:`DataReadError` naming the file and column.
    """
    if not data:
        raise DataReadError(f"{name}: file is empty (0 bytes)")
    try:
        if fmt == "csv":
            check_unique(_csv_header(data), name)
            frame = pd.read_csv(
                io.BytesIO(data),
                dtype={c: "str" for c in string_columns},
                keep_default_na=False,
                na_values=list(na_values),
                usecols=None if columns is None else list(columns),
            )
        else:
            check_unique(pq.read_schema(io.BytesIO(data)).names, name)
            frame = pd.read_parquet(io.BytesIO(data), columns=None if columns is None else list(columns))
    except CtloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc
    if fmt == "parquet":  # typed already; text columns get the CSV's rules: text form and NA tokens
        text_columns(frame, name, string_columns, na_values)
    check_finite(frame, name, numeric_columns)
    return frame


def text_columns(
    frame: pd.DataFrame, name: str, string_columns: Sequence[str], na_values: Sequence[str]
) -> None:
    """Give a typed (Parquet) frame's ``string_columns`` a CSV's rules, in place: their text form, and
    ``na_values`` as null."""
    for column in [c for c in string_columns if c in frame.columns]:
        text = _as_text(frame[column], name, column)
        frame[column] = text.where(~text.isin(list(na_values)), np.nan)


def check_finite(frame: pd.DataFrame, name: str, numeric_columns: Sequence[str], first_row: int = 1) -> None:
    """Refuse an infinite value in ``numeric_columns``, naming the file, the column and the data row
    (``first_row``: the number of the frame's first row in the file, for a chunk of it)."""
    for column in [c for c in numeric_columns if c in frame.columns]:
        _check_finite(frame[column], name, column, first_row)


def _csv_header(data: bytes) -> list[str]:
    """The header's names as written; pandas renames a repeated one ("a", "a.1") when it reads the frame."""
    header = pd.read_csv(io.BytesIO(data), header=None, nrows=1, dtype="str", keep_default_na=False)
    return [str(v) for v in header.iloc[0]] if len(header) else []


def check_unique(names: list[str], name: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataReadError(f"{name}: column {repeated[0]!r} appears more than once in the header")


def _as_text(values: pd.Series, name: str, column: str) -> pd.Series:
    """A Parquet column the spec reads as text: text as it is, integers in their decimal form (exactly
    what a CSV holds); any other type is refused, since its text form would be a guess (1.0 or 1?)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("string").astype(object).where(values.notna(), np.nan)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values
    raise DataReadError(
        f"{name}: column {column!r} is read as text (an id or categorical) but is stored as {values.dtype};"
        " store it as strings or integers"
    )


def _check_finite(values: pd.Series, name: str, column: str, first_row: int) -> None:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return  # a column that is not numeric fails its schema check, which names an example value
    infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0]) + first_row
        count = int(infinite.sum())
        raise DataReadError(
            f"{name}: numeric column {column!r} has {count} infinite values (first in data row {row})"
        )


def iter_source_batches(spec: PipelineSpec, settings: Settings) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each of the pipeline's training data files as ``(uri, frame)``, in order, one at a time.

    Only the columns the spec declares are parsed (the suite, slices and training use no other),
    so a wide file costs its bytes while it is read, not its unused columns as a frame. Every file
    must have the first file's header and column kinds: a file that does not names the column.
    """
    storage, keys = list_source(spec.data.uri, spec.data.format, settings)
    options = read_options(spec.columns)
    declared = set(spec.columns.all_names())
    first: tuple[str, list[str], pd.DataFrame] | None = None  # its URI, header and typed columns
    for key in keys:
        uri = storage.uri(key)
        data = storage.read_bytes(key)
        header = _file_columns(data, spec.data.format, uri)
        wanted = [c for c in header if c in declared]
        frame = parse_frame(data, spec.data.format, uri, **options, columns=wanted)
        del data  # before the next file's bytes are read
        if first is None:
            first = (uri, header, frame.iloc[:0])
            if len(wanted) < len(header):
                log.info("%s: columns not in the spec, not read: %s", uri, sorted(set(header) - declared))
        else:
            _check_same_schema(frame, header, uri, first)
        yield uri, frame


def read_source_batches(spec: PipelineSpec, settings: Settings) -> list[tuple[str, pd.DataFrame]]:
    """Each of the pipeline's training data files as ``(uri, frame)``, in order, schemas checked."""
    return list(iter_source_batches(spec, settings))


def read_source(spec: PipelineSpec, settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """All of the pipeline's training data as one frame, and the URIs of the files read."""
    batches = read_source_batches(spec, settings)
    frames = [frame for _, frame in batches]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return combined, [uri for uri, _ in batches]


def _file_columns(data: bytes, fmt: str, name: str) -> list[str]:
    """A file's column names from its header (CSV) or schema (Parquet) alone; none for an empty
    file, which :func:`parse_frame` then names."""
    if not data:
        return []
    try:
        return _csv_header(data) if fmt == "csv" else list(pq.read_schema(io.BytesIO(data)).names)
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc


def _check_same_schema(
    frame: pd.DataFrame, header: list[str], uri: str, first: tuple[str, list[str], pd.DataFrame]
) -> None:
    """Batches of one source share columns (all of them, read or not) and column kinds; name the
    file and column that do not."""
    first_uri, first_header, first_frame = first
    if header != first_header:
        missing = sorted(set(first_header) - set(header))
        extra = sorted(set(header) - set(first_header))
        raise DataReadError(
            f"{uri}: columns differ from {first_uri}: missing {missing or 'none'}, extra {extra or 'none'}"
        )
    for column in frame.columns:
        numeric_here = pd.api.types.is_numeric_dtype(frame[column])
        if numeric_here != pd.api.types.is_numeric_dtype(first_frame[column]):
            kinds = f"is {frame[column].dtype} here but {first_frame[column].dtype} in {first_uri}"
            raise DataReadError(f"{uri}: column {column!r} {kinds}")


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame``; the same frame always gives the same bytes."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))
