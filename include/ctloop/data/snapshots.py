"""Content-addressed training-data snapshots: what a model saw, named by its sha256."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, TypedDict

from ctloop.data.training_window import TrainingData, read_training_data
from ctloop.errors import DataReadError
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.data.sampling import DataSample
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec


class Snapshot(TypedDict):
    """Where a snapshot lives, what it holds (its rows come from ``sources`` in order, ``source_rows``
    from each; the last ``labeled_sources`` are labeled production batches), whether this call
    wrote it and, with ``data.max_rows``, what the sample did (the snapshot is the sample)."""

    key: str
    uri: str
    sha256: str
    rows: int
    columns: list[str]
    sources: list[str]
    source_rows: list[int]
    labeled_sources: int
    created: bool
    sample: DataSample | None


def snapshot_key(pipeline: str, sha256: str) -> str:
    return f"snapshots/{pipeline}/{sha256}.parquet"


def take_snapshot(spec: PipelineSpec, settings: Settings, training: TrainingData | None = None) -> Snapshot:
    """Freeze the pipeline's current training data (``training``, when the caller has read it); an
    existing snapshot of the same content is kept as is. With ``data.max_rows`` the frozen data
    is the sample, so the sha256 is the sample's digest."""
    if training is None:
        training = read_training_data(spec, settings)
    frame, sources = training.frame, training.sources
    try:
        data = to_parquet_bytes(frame)
    except (TypeError, ValueError) as exc:  # pyarrow's errors subclass these and name the column
        raise DataReadError(f"{spec.data.uri}: cannot snapshot the data: {exc}") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    storage = home_storage(settings)
    key = snapshot_key(spec.name, sha256)
    created = not storage.exists(key)
    if created:
        storage.write_bytes(key, data)
    return {
        "key": key,
        "uri": storage.uri(key),
        "sha256": sha256,
        "rows": len(frame),
        "columns": list(frame.columns),
        "sources": sources,
        "source_rows": training.source_rows,
        "labeled_sources": training.labeled_sources,
        "created": created,
        "sample": training.sample,
    }


def load_snapshot(key: str, settings: Settings) -> pd.DataFrame:
    return from_parquet_bytes(home_storage(settings).read_bytes(key))
