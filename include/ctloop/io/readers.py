"""Reading a pipeline's data files into one frame, with errors that name the file at fault."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

from ctloop.errors import DataReadError
from ctloop.io.storage import Storage, open_storage

if TYPE_CHECKING:
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def list_source(uri: str, fmt: str, settings: Settings) -> tuple[Storage, list[str]]:
    """The storage and the keys of the data files at ``uri``: one file, or a folder's files in order."""
    suffixes = SUFFIXES[fmt]
    if uri.rstrip("/").endswith(suffixes):
        parent, _, name = uri.rstrip("/").rpartition("/")
        storage = open_storage(parent or ".", settings)
        keys = [name] if storage.exists(name) else []
    else:
        storage = open_storage(uri, settings)
        keys = [k for k in storage.list_keys() if k.endswith(suffixes)]
    if not keys:
        raise DataReadError(f"{uri}: no {fmt} files found")
    return storage, keys


def parse_frame(data: bytes, fmt: str, name: str, string_columns: list[str]) -> pd.DataFrame:
    """Parse one file's bytes; ``string_columns`` are read as text so ids and codes keep their form."""
    if not data:
        raise DataReadError(f"{name}: file is empty (0 bytes)")
    try:
        if fmt == "csv":
            return pd.read_csv(io.BytesIO(data), dtype={c: "str" for c in string_columns})
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc


def read_source_batches(spec: PipelineSpec, settings: Settings) -> list[tuple[str, pd.DataFrame]]:
    """Each of the pipeline's training data files as ``(uri, frame)``, in order, schemas checked."""
    storage, keys = list_source(spec.data.uri, spec.data.format, settings)
    string_columns = [*spec.columns.id, *spec.columns.categorical]
    batches: list[tuple[str, pd.DataFrame]] = []
    for key in keys:
        uri = storage.uri(key)
        frame = parse_frame(storage.read_bytes(key), spec.data.format, uri, string_columns)
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
