"""Joining late labels to the prediction log, so the monitor can measure model quality.

Label files land in the pipeline's labels area (``scoring.labels_uri``, files of the scoring
format, suffix in any case): the id columns and the target, one row per labeled prediction.
Every join recomputes the labeled partitions from all label files, so a retry or a re-delivered
file never counts a label twice.

A label file is input like a batch, and checked before any of its rows is used: readable, the id
columns and the target present, every id present; every label value a class the champion knows
(classification: read from the champion model, or the training data's target before there is a
champion; values are taken in the classes' type, so ``"1"`` and ``1.0`` are the class ``1``) or a
finite number (regression); no id with two different labels in the file. A file that fails is
moved to ``quarantine-labels/<pipeline>/<file name>/`` with ``reason.json`` (the checks that
failed), the other files are joined, and the task then fails naming the file: a bad label file
never reaches the labeled partitions the monitor and training read. A row whose label is empty
is counted (``rows_without_label``) and not joined.

One label per scored row, under one rule:

- A label file's arrival is the time a join first saw it with its current content
  (``label-arrivals/<pipeline>/``); files are read in arrival order, then name order.
- A label joins, by id, the scored rows of one batch: the latest batch holding the id that was
  scored before the label file arrived; when none was, the first batch holding the id scored
  after (its labels waited for it). So an id reused by a later batch never takes an older
  batch's label, and a label never joins two batches (``labels_matching_several_batches``).
- For one id of one batch, the label of the latest file wins (``labels_replaced`` counts the
  labels a later file replaced; ``conflicting_label_rows`` the rows whose id has two different
  labels across files); the same label again is counted in ``repeated_labels``.
- A label whose id no scored batch holds waits (``waiting_for_unknown_ids``) and joins once its
  batch is scored.

Each join writes its summary to ``label-joins/<pipeline>/<time>.json``.

A batch of any size is joined a row group at a time (:func:`join_partition`): only the id columns
of the prediction partition are decoded to match labels, the rows are copied in their stored
types, and the labeled partition is written to a local temporary file, then published under its
key in one atomic step when its content changed: a reader sees the old partition or the new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop import clock
from ctloop.errors import CtloopError, LabelError
from ctloop.io.readers import parse_frame, read_source
from ctloop.io.storage import home_storage, open_storage
from ctloop.scoring.input_files import input_name, move_aside
from ctloop.scoring.prediction_log import (
    LABELED,
    PART,
    PREDICTIONS,
    batch_ids,
    local_partitions,
    partition_key,
    read_partitions,
)
from ctloop.validation.schema import Failure, failure

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)

SAMPLE = 10
QUARANTINE = "quarantine-labels"
ARRIVALS = "label-arrivals"
JOINS = "label-joins"
ARRIVED, ORDER = "_arrived", "_file"  # the columns read_labels adds: the file's arrival and rank


class _Classes:
    """The classes label values must be among, read once per join and only when a file needs them."""

    def __init__(self, spec: PipelineSpec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.values: NDArray[Any] | None = None
        self.source = ""

    def get(self) -> NDArray[Any]:
        if self.values is None:
            self.values, self.source = known_classes(self.spec, self.settings)
        return self.values


def known_classes(spec: PipelineSpec, settings: Settings) -> tuple[NDArray[Any], str]:
    """The classes the champion knows (its ``classes_``), or before there is a champion the
    training data's target values; and where they were read from."""
    import numpy as np

    from ctloop.registry import mlflow_store as registry
    from ctloop.registry import model_trust

    champion = registry.get_champion(registry.client(settings), spec.name)
    if champion is not None:
        model = registry.load_version(settings, champion, model_trust.policy(spec))
        return np.asarray(model.classes_), f"champion v{champion.version}"
    try:
        frame, uris = read_source(spec, settings)
    except CtloopError as exc:
        raise LabelError(
            f"{spec.name}: label values cannot be checked: no champion yet, and the training data "
            f"cannot be read: {exc}"
        ) from exc
    if spec.columns.target not in frame.columns:
        raise LabelError(
            f"{spec.name}: label values cannot be checked: no champion yet, and {uris[0]} "
            f"has no column {spec.columns.target!r}"
        )
    return np.sort(frame[spec.columns.target].dropna().unique()), f"training data {', '.join(uris)}"


def _canonical(value: Any) -> str:
    """One spelling per class: ``1``, ``1.0`` and ``"1"`` are the same label."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _checked_target(
    spec: PipelineSpec, values: pd.Series, classes: _Classes
) -> tuple[pd.Series, list[Failure]]:
    """The non-null ``values`` as labels of the task (the classes' type, or float), and what fails."""
    import numpy as np
    import pandas as pd

    target = spec.columns.target
    if spec.task == "regression":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values[numbers.isna() | ~np.isfinite(numbers.fillna(0.0).astype(float))]
        why = "not a finite number"
        result = numbers.astype(float)
    else:
        known = classes.get()
        lookup = {_canonical(c.item() if hasattr(c, "item") else c): c for c in known}
        spelled = values.map(lambda v: _canonical(v.item() if hasattr(v, "item") else v))
        bad = values[~spelled.isin(list(lookup))]
        why = f"not among the classes of {classes.source} {[_canonical(c) for c in known][:SAMPLE]}"
        taken = [lookup[s] for s in spelled] if bad.empty else []
        result = pd.Series(
            np.asarray(taken, dtype=known.dtype), index=values.index[: len(taken)], name=target
        )
    if bad.empty:
        return result, []
    shown = ", ".join(repr(v) for v in bad.astype(str).unique()[:SAMPLE])
    return result, [failure("label_value", target, f"{len(bad)} label(s) {why}, e.g. {shown}")]


def _checked_file(
    spec: PipelineSpec, data: bytes, uri: str, classes: _Classes
) -> tuple[pd.DataFrame | None, int, list[Failure]]:
    """The file's labeled rows (ids and target, in the task's type), its rows without a label,
    and what fails; no frame when anything fails."""
    ids, target = list(spec.columns.id), spec.columns.target
    try:
        frame = parse_frame(data, spec.scoring.format, uri, ids, na_values=spec.columns.na_values)
    except CtloopError as exc:
        return None, 0, [failure("readable", None, str(exc))]
    missing = [c for c in (*ids, target) if c not in frame.columns]
    if missing:
        return (
            None,
            0,
            [failure("column_present", missing[0], f"label file lacks column(s) {', '.join(missing)}")],
        )
    frame = frame[[*ids, target]]
    failures = []
    for column in ids:
        nulls = frame[column].isna()
        if nulls.any():
            first = int(nulls.to_numpy().argmax()) + 2  # the file's line: a header, then rows from 1
            failures.append(
                failure("id_not_null", column, f"{int(nulls.sum())} row(s) without an id, e.g. line {first}")
            )
    unlabeled = int(frame[target].isna().sum())
    frame = frame.dropna(subset=[target])
    frame[target], wrong = _checked_target(spec, frame[target], classes)
    failures += wrong
    if not failures:
        distinct = frame.drop_duplicates()
        twice = distinct[distinct.duplicated(subset=ids, keep=False)][ids].drop_duplicates()
        if len(twice):
            shown = twice[ids[0]].astype(str).head(SAMPLE).tolist()
            detail = f"{len(twice)} id(s) with two different labels in this file, e.g. {shown}"
            failures.append(failure("one_label_per_id", ids[0], detail))
    return (None if failures else frame), unlabeled, failures


def _arrival(storage: Storage, spec: PipelineSpec, key: str, data: bytes) -> str:
    """When the file was first seen with this content (now, if it is new or changed)."""
    record_key = f"{ARRIVALS}/{spec.name}/{key}.json"
    sha256 = hashlib.sha256(data).hexdigest()
    if storage.exists(record_key):
        record = json.loads(storage.read_bytes(record_key))
        if record.get("sha256") == sha256:
            return str(record["arrived"])
    arrived = clock.now().isoformat()
    storage.write_bytes(record_key, json.dumps({"sha256": sha256, "arrived": arrived}).encode())
    return arrived


def read_labels(spec: PipelineSpec, settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every accepted label row with its file's arrival and rank (``_arrived``, ``_file``), files
    in arrival order; bad files set aside; and what was seen."""
    import pandas as pd

    ids, target = list(spec.columns.id), spec.columns.target
    if not ids:
        raise LabelError(f"{spec.name}: columns.id is empty; labels are joined by row id")
    source, storage = open_storage(spec.labels_uri, settings), home_storage(settings)
    keys = sorted(k for k in source.list_keys() if input_name(k, spec.scoring.format) is not None)
    classes = _Classes(spec, settings)
    files, set_aside, unlabeled = [], [], 0
    for key in keys:
        uri, data = source.uri(key), source.read_bytes(key)
        frame, without, failures = _checked_file(spec, data, uri, classes)
        if frame is None:
            prefix = f"{QUARANTINE}/{spec.name}/{input_name(key, spec.scoring.format)}"
            where = move_aside(settings, source, key, data, prefix, {"file": uri, "failures": failures})
            set_aside.append({"file": uri, "moved_to": where, "failures": failures})
            continue
        unlabeled += without
        files.append((_arrival(storage, spec, key, data), key, frame))
    frames = []
    for rank, (arrived, _, frame) in enumerate(sorted(files, key=lambda f: (f[0], f[1]))):
        frames.append(frame.assign(**{ARRIVED: pd.Timestamp(arrived), ORDER: rank}))
    columns = [*ids, target, ARRIVED, ORDER]
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    distinct = labels[[*ids, target]].drop_duplicates()
    seen = {
        "files": len(files),
        "files_set_aside": set_aside,
        "classes_from": classes.source or None,
        "label_rows": len(labels) + unlabeled,
        "rows_without_label": unlabeled,
        "repeated_labels": len(labels) - len(distinct),
        "conflicting_label_rows": int(distinct.duplicated(subset=ids, keep=False).sum()),
        "distinct_ids": len(distinct.drop_duplicates(subset=ids)),
    }
    return labels, seen


def _assign(
    spec: PipelineSpec, settings: Settings, labels: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(each label with the batch it joins, the labels no batch holds, the labels whose id is in
    several batches), under the module's rule."""
    import pandas as pd

    ids = list(spec.columns.id)
    scored = [
        read_partitions(PREDICTIONS, spec.name, [b], settings, [*ids, "scored_at"]).assign(batch_id=b)
        for b in batch_ids(PREDICTIONS, spec.name, settings)
    ]
    index = (
        pd.concat(scored, ignore_index=True).groupby([*ids, "batch_id"], as_index=False)["scored_at"].min()
        if scored
        else pd.DataFrame(columns=[*ids, "batch_id", "scored_at"])
    )
    rows = labels.reset_index(names="_row")
    candidates = rows.merge(index, on=ids, how="inner")
    several = int((candidates.groupby("_row")["batch_id"].nunique() > 1).sum())
    after = candidates["scored_at"] > candidates[ARRIVED]
    nanos = pd.to_datetime(candidates["scored_at"], utc=True).astype("int64")
    candidates = candidates.assign(_after=after, _rank=nanos.where(after, -nanos))
    chosen = candidates.sort_values(["_row", "_after", "_rank", "batch_id"]).drop_duplicates("_row")
    waiting = rows[~rows["_row"].isin(chosen["_row"])]
    return chosen, waiting, several


def join_labels(spec: PipelineSpec, settings: Settings) -> dict[str, Any]:
    """Rewrite the labeled partition of every scored batch whose labels changed; returns a summary
    (also written to ``label-joins/``). Raises LabelError naming the files set aside, after
    joining the others."""
    ids, target = list(spec.columns.id), spec.columns.target
    labels, seen = read_labels(spec, settings)
    storage = home_storage(settings)
    chosen, waiting, several = _assign(spec, settings, labels)
    latest = chosen.sort_values(ORDER, kind="stable").drop_duplicates(subset=["batch_id", *ids], keep="last")
    updated, labeled_rows = [], 0
    for batch_id in batch_ids(PREDICTIONS, spec.name, settings):
        key = partition_key(LABELED, spec.name, batch_id)
        mine = latest[latest["batch_id"] == batch_id]
        if mine.empty:
            if storage.exists(key):
                storage.delete(key)
            continue
        with tempfile.TemporaryDirectory(prefix="ctloop-labels-") as directory:
            joined = Path(directory) / PART
            with local_partitions(PREDICTIONS, spec.name, [batch_id], settings) as (scored,):
                labeled_rows += join_partition(scored, mine, ids, target, joined)
            if not storage.exists(key) or storage.sha256(key) != _sha(joined):
                storage.publish_file(key, joined)
                updated.append(batch_id)
    waiting = waiting.drop_duplicates(subset=ids, keep="last")
    summary = {
        **seen,
        "labeled_rows": labeled_rows,
        "batches_updated": updated,
        "labels_replaced": len(chosen) - len(latest),
        "labels_matching_several_batches": several,
        "waiting_for_unknown_ids": len(waiting),
        "waiting_sample": waiting[ids[0]].astype(str).head(SAMPLE).tolist(),
    }
    at = clock.now()
    record = f"{JOINS}/{spec.name}/{at.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    summary["record"] = storage.write_bytes(
        record, json.dumps({**summary, "at": at.isoformat()}, default=str).encode()
    )
    if seen["files_set_aside"]:
        log.warning("%s: labels joined without the files set aside: %s", spec.name, summary)
        raise LabelError("; ".join(_why(f) for f in seen["files_set_aside"]))
    return summary


def _why(set_aside: dict[str, Any]) -> str:
    failures = "; ".join(
        f["detail"]
        if f["check"] in ("readable", "column_present")
        else f"{f['check']}[{f['column'] or 'table'}]: {f['detail']}"
        for f in set_aside["failures"]
    )
    return f"{set_aside['file']}: {failures} (moved to {set_aside['moved_to']})"


def join_partition(scored: Path, labels: pd.DataFrame, ids: list[str], target: str, out: Path) -> int:
    """Write the rows of the partition file ``scored`` whose ids have a label (``target``) in
    ``labels`` (one per id), in their order, with the label as a last column, to ``out``; returns
    their count.

    Read and written a row group at a time, each row group's columns kept in their stored types,
    so a partition of any size costs one row group and its labeled rows: the result is the inner
    join of the whole partition with the labels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = labels[[*ids, target]]
    label_type = pa.Array.from_pandas(labels[target]).type
    written = 0
    with pq.ParquetFile(scored) as partition:
        schema = partition.schema_arrow.append(pa.field(target, label_type))
        with pq.ParquetWriter(out, schema) as writer:
            for group in range(partition.num_row_groups):
                table = partition.read_row_group(group)
                keys = table.select(ids).to_pandas().reset_index(names="_position")
                matched = keys.merge(labels, on=ids, how="inner", validate="many_to_one").sort_values(
                    "_position", kind="stable"
                )
                label = pa.Array.from_pandas(matched[target], type=label_type)
                writer.write_table(
                    table.take(matched["_position"].to_numpy()).append_column(schema.field(-1), label)
                )
                written += len(matched)
    return written


def _sha(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
