"""What a training run trains on: the pipeline's data files plus the production batches whose
labels have arrived, narrowed to the window the spec's ``retrain.data`` asks for.

Labeled production batches let a retrain learn what production looks like now; a recent window
(last N batches or days) lets a model recover from concept drift instead of averaging it away.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ctloop.errors import DataReadError
from ctloop.io.readers import read_source_batches
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import LABELED, batch_ids, partition_key, read_partitions

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec


def labeled_batches(
    spec: PipelineSpec, settings: Settings, columns: list[str]
) -> list[tuple[str, pd.DataFrame]]:
    """The labeled production batches, oldest first, with the training files' columns."""
    storage = home_storage(settings)
    batches = []
    for batch_id in batch_ids(LABELED, spec.name, settings):
        frame = read_partitions(LABELED, spec.name, [batch_id], settings)
        uri = storage.uri(partition_key(LABELED, spec.name, batch_id))
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataReadError(f"{uri}: labeled batch lacks training column(s) {', '.join(missing)}")
        batches.append((uri, frame[columns]))
    return batches


def read_training_data(spec: PipelineSpec, settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """The frame to snapshot and the URIs it came from."""
    import pandas as pd

    batches = read_source_batches(spec, settings)
    batches += labeled_batches(spec, settings, list(batches[0][1].columns))
    window = spec.retrain.data  # its validator requires ``last`` exactly for "batches" and "days"
    if window.window == "batches" and window.last is not None:
        batches = batches[-window.last :]
    frame = pd.concat([f for _, f in batches], ignore_index=True) if len(batches) > 1 else batches[0][1]
    if window.window == "days" and window.last is not None:
        times = pd.to_datetime(frame[spec.columns.timestamp], errors="coerce", utc=True)
        frame = frame[times >= times.max() - timedelta(days=window.last)].reset_index(drop=True)
    return frame, [uri for uri, _ in batches]
