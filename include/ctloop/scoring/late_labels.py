"""Joining late labels to the prediction log, so the monitor can measure model quality.

Label files land in the pipeline's labels area: the id columns and the target, one row per
labeled prediction. Every join recomputes the labeled partitions from all label files, so a
retry or a re-delivered file never counts a label twice. A label whose row id was never scored
is kept waiting (its batch may not have been scored yet) and reported, not dropped.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ctloop.errors import LabelError
from ctloop.io.readers import SUFFIXES, parse_frame, to_parquet_bytes
from ctloop.io.storage import home_storage, open_storage
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, partition_key, read_partitions

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

SAMPLE = 10


def read_labels(spec: PipelineSpec, settings: Settings) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every label, one per row id (a later file overrides an earlier one), and what was seen."""
    import pandas as pd

    ids, target = spec.columns.id, spec.columns.target
    if not ids:
        raise LabelError(f"{spec.name}: columns.id is empty; labels are joined by row id")
    storage = open_storage(spec.labels_uri, settings)
    keys = sorted(k for k in storage.list_keys() if k.endswith(SUFFIXES[spec.scoring.format]))
    frames = []
    for key in keys:
        uri = storage.uri(key)
        frame = parse_frame(storage.read_bytes(key), spec.scoring.format, uri, list(ids))
        missing = [c for c in (*ids, target) if c not in frame.columns]
        if missing:
            raise LabelError(f"{uri}: label file lacks column(s) {', '.join(missing)}")
        frames.append(frame[[*ids, target]])
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*ids, target])
    unlabeled = int(labels[target].isna().sum())
    labels = labels.dropna(subset=[target])
    distinct = labels.drop_duplicates()
    conflicting = int(distinct.duplicated(subset=ids, keep=False).sum())
    latest = labels.drop_duplicates(subset=ids, keep="last")
    seen = {
        "files": len(keys),
        "label_rows": len(labels) + unlabeled,
        "rows_without_label": unlabeled,
        "repeated_labels": len(labels) - len(distinct),
        "conflicting_label_rows": conflicting,
        "distinct_ids": len(latest),
    }
    return latest, seen


def join_labels(spec: PipelineSpec, settings: Settings) -> dict[str, Any]:
    """Rewrite the labeled partition of every scored batch whose labels changed; returns a summary."""
    import pandas as pd

    ids = spec.columns.id
    labels, seen = read_labels(spec, settings)
    storage = home_storage(settings)
    matched, updated, labeled_rows = [labels.iloc[:0][ids]], [], 0
    for batch_id in batch_ids(PREDICTIONS, spec.name, settings):
        predictions = read_partitions(PREDICTIONS, spec.name, [batch_id], settings)
        joined = predictions.merge(labels, on=ids, how="inner", validate="many_to_one")
        labeled_rows += len(joined)
        matched.append(joined[ids])
        key = partition_key(LABELED, spec.name, batch_id)
        if joined.empty:
            if storage.exists(key):
                storage.delete(key)
            continue
        data = to_parquet_bytes(joined)
        if not storage.exists(key) or _sha(storage.read_bytes(key)) != _sha(data):
            storage.write_bytes(key, data)
            updated.append(batch_id)
    matched_ids = pd.concat(matched, ignore_index=True).drop_duplicates()
    waiting = labels.merge(matched_ids, on=ids, how="left", indicator=True)
    waiting = waiting[waiting["_merge"] == "left_only"]
    return {
        **seen,
        "labeled_rows": labeled_rows,
        "batches_updated": updated,
        "waiting_for_unknown_ids": len(waiting),
        "waiting_sample": waiting[ids[0]].astype(str).head(SAMPLE).tolist(),
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
