"""Reading a pipeline's data files into one frame, with errors that name the file at fault."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ctloop.errors import CtloopError, DataReadError
from ctloop.io.storage import Storage, open_storage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ctloop.settings import Settings
    from ctloop.spec.models import Columns, PipelineSpec

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
) -> pd.DataFrame:
    """Parse one file's bytes; ``string_columns`` are read as text so ids and codes keep their form.

    Only ``na_values`` read as null (pandas' own list would turn a category "NA" or "null" into a
    missing value), in a Parquet file's text columns too. A repeated column name, or an infinite
    value in one of ``numeric_columns``, raises :class:`DataReadError` naming the file and column.
    """
    if not data:
        raise DataReadError(f"{name}: file is empty (0 bytes)")
    try:
        if fmt == "csv":
            _check_unique(_csv_header(data), name)
            frame = pd.read_csv(
                io.BytesIO(data),
                dtype={c: "str" for c in string_columns},
                keep_default_na=False,
                na_values=list(na_values),
            )
        else:
            _check_unique(pq.read_schema(io.BytesIO(data)).names, name)
            frame = pd.read_parquet(io.BytesIO(data))
    except CtloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc
    if fmt == "parquet":  # typed already; text columns get the CSV's rules: text form and NA tokens
        for column in [c for c in string_columns if c in frame.columns]:
            text = _as_text(frame[column], name, column)
            frame[column] = text.where(~text.isin(list(na_values)), np.nan)
    for column in [c for c in numeric_columns if c in frame.columns]:
        _check_finite(frame[column], name, column)
    return frame


def _csv_header(data: bytes) -> list[str]:
    """The header's names as written; pandas renames a repeated one ("a", "a.1") when it reads the frame."""
    header = pd.read_csv(io.BytesIO(data), header=None, nrows=1, dtype="str", keep_default_na=False)
    return [str(v) for v in header.iloc[0]] if len(header) else []


def _check_unique(names: list[str], name: str) -> None:
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


def _check_finite(values: pd.Series, name: str, column: str) -> None:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return  # a column that is not numeric fails its schema check, which names an example value
    infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0]) + 1
        count = int(infinite.sum())
        raise DataReadError(
            f"{name}: numeric column {column!r} has {count} infinite values (first in data row {row})"
        )


def read_source_batches(spec: PipelineSpec, settings: Settings) -> list[tuple[str, pd.DataFrame]]:
    """Each of the pipeline's training data files as ``(uri, frame)``, in order, schemas checked."""
    storage, keys = list_source(spec.data.uri, spec.data.format, settings)
    options = read_options(spec.columns)
    batches: list[tuple[str, pd.DataFrame]] = []
    for key in keys:
        uri = storage.uri(key)
        frame = parse_frame(storage.read_bytes(key), spec.data.format, uri, **options)
        if batches:
            _check_same_schema(frame, uri, batches[0][1], batches[0][0])
        batches.append((uri, frame))
    return batches


def read_source(spec: PipelineSpec, settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """All of the pipeline's training data as one frame, and the URIs of the files read."""
    batches = read_source_batches(spec, settings)
    frames = [frame for _, frame in batches]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return combined, [uri for uri, _ in batches]


def _check_same_schema(frame: pd.DataFrame, uri: str, first: pd.DataFrame, first_uri: str) -> None:
    """Batches of one source share columns and column kinds; name the file and column that do not."""
    if list(frame.columns) != list(first.columns):
        missing = sorted(set(first.columns) - set(frame.columns))
        extra = sorted(set(frame.columns) - set(first.columns))
        raise DataReadError(
            f"{uri}: columns differ from {first_uri}: missing {missing or 'none'}, extra {extra or 'none'}"
        )
    for column in frame.columns:
        numeric_here = pd.api.types.is_numeric_dtype(frame[column])
        if numeric_here != pd.api.types.is_numeric_dtype(first[column]):
            kinds = f"is {frame[column].dtype} here but {first[column].dtype} in {first_uri}"
            raise DataReadError(f"{uri}: column {column!r} {kinds}")


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame``; the same frame always gives the same bytes."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))
