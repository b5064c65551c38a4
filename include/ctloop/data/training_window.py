"""What a training run trains on: the pipeline's data files plus the production batches whose
labels have arrived, narrowed to the window the spec's ``retrain.data`` asks for, less the most
recent labeled batches, which are set aside as the recent holdout.

Labeled production batches let a retrain learn what production looks like now; a recent window
(last N batches or days) lets a model recover from concept drift instead of averaging it away.
The recent holdout is what no candidate trains on, so candidate and champion can both be judged
on the present (``gates.recent_holdout``).
"""

from __future__ import annotations

from dataclasses import dataclass
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

Batches = list[tuple[str, "pd.DataFrame"]]  # (URI, rows), oldest first


@dataclass(frozen=True)
class TrainingData:
    """The frame to snapshot and the URIs it came from, with how many of its rows each gave, in
    order (the last ``labeled_sources`` are labeled production batches: a window can be cut from
    the snapshot later); the recent holdout set aside from it (None when not used) with the
    labeled partitions it holds, and a line saying what it is or why there is none."""

    frame: pd.DataFrame
    sources: list[str]
    source_rows: list[int]
    labeled_sources: int
    recent: pd.DataFrame | None
    recent_sources: list[str]
    recent_note: str


def labeled_batches(spec: PipelineSpec, settings: Settings, columns: list[str]) -> Batches:
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


def batch_id_of(uri: str) -> str:
    """The batch id of a labeled partition's URI (``.../batch_id=<id>/part-0.parquet``)."""
    return uri.rstrip("/").split("/")[-2].removeprefix("batch_id=")


def set_aside_recent(spec: PipelineSpec, labeled: Batches) -> tuple[Batches, str]:
    """The last ``gates.recent_holdout.batches`` labeled batches when they are enough to judge on,
    else none; and a line saying which, or why not."""
    policy = spec.gates.recent_holdout
    if not labeled:
        return [], "not used: no labeled production batch yet"
    recent = labeled[-policy.batches :]
    rows = sum(len(frame) for _, frame in recent)
    held = f"the last {len(recent)} labeled batch(es) hold {rows} rows"
    if rows < policy.min_rows:
        return [], f"not used: {held} < gates.recent_holdout.min_rows {policy.min_rows}; trained on"
    if spec.task == "classification":
        classes = {v for _, frame in recent for v in frame[spec.columns.target].dropna().unique()}
        if len(classes) < 2:
            return [], f"not used: {held} of one class only; trained on"
    names = ", ".join(batch_id_of(uri) for uri, _ in recent)
    return recent, f"{held}, set aside from training: {names}"


def read_training_data(spec: PipelineSpec, settings: Settings) -> TrainingData:
    """The frame to snapshot, its sources and the recent holdout set aside from it.

    The recent holdout is taken first, whatever ``retrain.data`` says; the window then applies to
    the rest, so a window of the last N batches still trains on N batches.
    """
    import numpy as np
    import pandas as pd

    batches = read_source_batches(spec, settings)
    labeled = labeled_batches(spec, settings, list(batches[0][1].columns))
    recent, note = set_aside_recent(spec, labeled)
    trained_on = labeled[: len(labeled) - len(recent)]
    batches += trained_on
    window = spec.retrain.data  # its validator requires ``last`` exactly for "batches" and "days"
    if window.window == "batches" and window.last is not None:
        batches = batches[-window.last :]
    frame = _concat(batches)
    source_rows = [len(f) for _, f in batches]
    if window.window == "days" and window.last is not None:
        times = pd.to_datetime(frame[spec.columns.timestamp], errors="coerce", utc=True)
        kept = (times >= times.max() - timedelta(days=window.last)).to_numpy()
        owner = np.repeat(np.arange(len(batches)), source_rows)
        source_rows = np.bincount(owner[kept], minlength=len(batches)).tolist()
        frame = frame[kept].reset_index(drop=True)
    return TrainingData(
        frame=frame,
        sources=[uri for uri, _ in batches],
        source_rows=source_rows,
        labeled_sources=min(len(trained_on), len(batches)),
        recent=_concat(recent) if recent else None,
        recent_sources=[uri for uri, _ in recent],
        recent_note=note,
    )


def _concat(batches: Batches) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([f for _, f in batches], ignore_index=True) if len(batches) > 1 else batches[0][1]
