"""What a training run trains on: the pipeline's data files plus the production batches whose
labels have arrived, narrowed to the window the spec's ``retrain.data`` asks for, less the most
recent labeled rows, which are set aside as the recent holdout.

Labeled production batches let a retrain learn what production looks like now; a recent window
(last N batches or days) lets a model recover from concept drift instead of averaging it away.
The recent holdout is what no candidate trains on, so candidate and champion can both be judged
on the present (``gates.recent_holdout``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from itertools import chain
from typing import TYPE_CHECKING

from ctloop.data.sampling import sample_batches
from ctloop.errors import DataReadError
from ctloop.io.readers import iter_source_batches
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import LABELED, batch_ids, partition_key, read_partitions

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

    from ctloop.data.sampling import DataSample
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

Batches = list[tuple[str, "pd.DataFrame"]]  # (URI, rows), oldest first
RECENT_PURPOSE = "recent"  # the hash purpose of the recent holdout's share: independent of the frozen one's


@dataclass(frozen=True)
class TrainingData:
    """The frame to snapshot and the URIs it came from, with how many of its rows each gave, in
    order (the last ``labeled_sources`` are labeled production batches: a window can be cut from
    the snapshot later); the recent holdout set aside from it (None when not used) with the
    labeled partitions it holds, and a line saying what it is or why there is none; what the
    ``data.max_rows`` sample did, when the spec sets it."""

    frame: pd.DataFrame
    sources: list[str]
    source_rows: list[int]
    labeled_sources: int
    recent: pd.DataFrame | None
    recent_sources: list[str]
    recent_note: str
    sample: DataSample | None


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


def set_aside_recent(spec: PipelineSpec, labeled: Batches) -> tuple[Batches, Batches, str]:
    """(the recent holdout, the labeled batches trained on, a line saying which or why none).

    The recent holdout is a share (``gates.recent_holdout.fraction``, by a seeded hash of the row
    ids) of the last ``gates.recent_holdout.batches`` labeled batches, so the rest of the newest
    rows can be trained on: right after a change in the world they are the only rows that show
    it. When that share is under ``min_rows`` rows (or of one class) the whole batches are held
    out; when even they are, nothing is, and they are trained on.
    """
    from ctloop.data.holdout import id_share

    policy = spec.gates.recent_holdout
    if not labeled:
        return [], labeled, "not used: no labeled production batch yet"
    newest, older = labeled[-policy.batches :], labeled[: -policy.batches]
    whole = f"the last {len(newest)} labeled batch(es) hold {_rows(newest)} rows"
    names = ", ".join(batch_id_of(uri) for uri, _ in newest)
    shares = [(uri, frame, id_share(frame, spec, policy.fraction, RECENT_PURPOSE)) for uri, frame in newest]
    held = [(uri, frame[share]) for uri, frame, share in shares]
    if policy.fraction < 1.0 and not _why_not(spec, held):
        rest = [(uri, frame[~share]) for uri, frame, share in shares if (~share).any()]
        note = f"{_rows(held)} of the {_rows(newest)} rows of the last {len(newest)} labeled batch(es)"
        note += f" (gates.recent_holdout.fraction {policy.fraction:g}), set aside from training: {names};"
        return held, older + rest, f"{note} the rest is trained on"
    why = _why_not(spec, newest)
    if why:
        return [], labeled, f"not used: {whole} {why}; trained on"
    return newest, older, f"{whole}, set aside from training: {names}"


def _rows(batches: Batches) -> int:
    return sum(len(frame) for _, frame in batches)


def _why_not(spec: PipelineSpec, batches: Batches) -> str:
    """Why ``batches`` cannot serve as the recent holdout ("" when they can)."""
    rows, least = _rows(batches), spec.gates.recent_holdout.min_rows
    if rows < least:
        return f"< gates.recent_holdout.min_rows {least}"
    if spec.task == "classification":
        classes = {v for _, frame in batches for v in frame[spec.columns.target].dropna().unique()}
        if len(classes) < 2:
            return "of one class only"
    return ""


def read_training_data(spec: PipelineSpec, settings: Settings) -> TrainingData:
    """The frame to snapshot, its sources and the recent holdout set aside from it.

    The recent holdout is taken first, whatever ``retrain.data`` says, and is never sampled; the
    window then applies to the rest, so a window of the last N batches still trains on N batches;
    ``data.max_rows`` samples what the window keeps (:mod:`ctloop.data.sampling`), so the frozen
    holdout is later drawn from the sample. Memory: the source files are read one at a time, and
    with the window "all" and ``data.max_rows`` each is sampled and let go before the next is read;
    a window of the last N batches holds those N, one of days holds every batch while it finds
    the newest time. Labeled production batches are read whole (their recent share is set aside).
    """
    files = iter_source_batches(spec, settings)
    head = next(files)  # list_source found at least one file
    labeled = labeled_batches(spec, settings, list(head[1].columns))
    recent, trained_on, note = set_aside_recent(spec, labeled)
    stream: Iterable[tuple[str, pd.DataFrame]] = chain([head], files, trained_on)
    del head
    window = spec.retrain.data  # its validator requires ``last`` exactly for "batches" and "days"
    if window.window == "batches" and window.last is not None:
        stream = deque(stream, maxlen=window.last)
    elif window.window == "days" and window.last is not None:
        stream = _last_days(spec, list(stream), window.last)
    sample = None
    if spec.data.max_rows is not None:
        batches, sample = sample_batches(stream, spec)
    else:
        batches = list(stream)
    return TrainingData(
        frame=_concat(batches),
        sources=[uri for uri, _ in batches],
        source_rows=[len(f) for _, f in batches],
        labeled_sources=min(len(trained_on), len(batches)),
        recent=_concat(recent) if recent else None,
        recent_sources=[uri for uri, _ in recent],
        recent_note=note,
        sample=sample,
    )


def _last_days(spec: PipelineSpec, batches: Batches, days: int) -> Batches:
    """Each batch's rows within ``days`` of the newest timestamp of all of them (a batch may keep none)."""
    import numpy as np
    import pandas as pd

    frame = _concat(batches)
    times = pd.to_datetime(frame[spec.columns.timestamp], errors="coerce", utc=True)
    kept = (times >= times.max() - timedelta(days=days)).to_numpy()
    owner = np.repeat(np.arange(len(batches)), [len(f) for _, f in batches])
    frame = frame[kept].reset_index(drop=True)
    counts = np.bincount(owner[kept], minlength=len(batches)).tolist()
    ends = np.cumsum(counts).tolist()
    return [(uri, frame.iloc[end - n : end]) for (uri, _), n, end in zip(batches, counts, ends, strict=True)]


def _concat(batches: Batches) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([f for _, f in batches], ignore_index=True) if len(batches) > 1 else batches[0][1]
