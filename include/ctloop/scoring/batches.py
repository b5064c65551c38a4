"""Scoring production batches with the champion, each batch exactly once, into a prediction log.

A batch is a file of the spec's format in the pipeline's incoming area, its suffix matched in any
case (``.csv``, ``.CSV``, ``.Parquet``); its id is its path in that area without the suffix,
``/`` written as ``__`` (``2026-01-02/batch.csv`` is ``2026-01-02__batch``). Two files whose ids
coincide (``a.csv`` and ``a.CSV``, ``x/a.csv`` and ``x__a.csv``) are one batch id: the file it was
scored from, or else the first in key order, is the batch; the others are set aside to
``conflicts/``. Its predictions form one partition of the prediction log
(ctloop.scoring.prediction_log), so a re-run rewrites the same object.

A batch that fails its checks, or whose prediction or partition write fails, is moved to
``quarantine/<pipeline>/<id>/`` with ``reason.json`` beside it (the check or the stage that
failed) before the task fails: nothing is dropped silently, nothing fails again on every run. A
failure that is not the batch's (no champion, the model or the registry unavailable) leaves the
batch where it is, not scored, for the next run. A batch counts as scored only once its partition
is written (ctloop.scoring.scored_batches reserves before predicting, commits after writing).

A batch id is scored from one content only (ctloop.scoring.scored_batches). A file delivered again under
a scored id with the same content is left alone; with other content it is moved to
``conflicts/<pipeline>/<id>/`` and its task fails, so the log never mixes two versions of a batch
and the new version is not lost. The same content under a new id goes to ``duplicates/``.

Two other models may score the same rows without serving them (ctloop.monitoring.champion_watch):
the previous champion while the champion is watched, into the ``shadow_*`` columns, and the
``challenger`` (a candidate waiting for approval) into the ``challenger_*`` columns. A shadow that
cannot load or predict leaves its columns null and says so in the task's result: it never costs
the batch its predictions.

A batch of any size is scored in bounded memory: read in chunks of ``scoring.chunk_rows`` rows
(ctloop.io.chunks), each checked (ctloop.scoring.batch_checks: a failing chunk sets the whole
batch aside, naming its rows; checks that need the whole batch run on it column by column),
predicted and appended as a row group to a local Parquet file, published as the partition only
once every chunk passed. The steps are functions a task can run on a part of a batch:
:func:`claim_batch` (hash, refuse, reserve, and plan the :func:`parts` of a batch above
``scoring.fan_out_rows``, so that each reads only its chunks: by Parquet row groups, CSV byte
ranges or copies, :class:`Plan`), :func:`score_part` for each part (chunks ``i``, ``i + n``, ...;
staged under ``staging/``, with the hashes of the values that must be unique), then
:func:`publish` (verdict, assembly, commit); :func:`score_batch` is the three with one part,
reading the file as it streams.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, NotRequired, TypedDict

from ctloop import clock
from ctloop.errors import (
    BatchConflict,
    BatchQuarantined,
    CtloopError,
    DataReadError,
    NoChampion,
    StorageError,
)
from ctloop.evaluation.model_scores import outputs
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.io.chunks import Chunk, NotNumeric, iter_chunks, iter_tables, table_chunk
from ctloop.io.readers import SUFFIXES, read_options
from ctloop.io.storage import fingerprint_size, home_storage, open_storage
from ctloop.monitoring.champion_watch import watched_promotion
from ctloop.registry import mlflow_store as registry
from ctloop.registry import model_trust, tags
from ctloop.scoring import csv_ranges, scored_batches
from ctloop.scoring.batch_checks import check_chunk, duplicates, never_valued, run_suite, split_suite
from ctloop.scoring.input_files import input_name, move_file_aside
from ctloop.scoring.prediction_log import (
    CHALLENGER,
    PART,
    PREDICTIONS,
    PREVIOUS,
    SERVED,
    ModelColumns,
    partition_key,
)
from ctloop.scoring.value_hashes import value_hashes
from ctloop.training.estimator import changed_user_code
from ctloop.validation.champion_suite import suite_dir
from ctloop.validation.data_validation import suite_path
from ctloop.validation.schema import Failure, failure

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from numpy.typing import NDArray

    from ctloop.evaluation.model_scores import FittedModel
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)


class Batch(TypedDict):
    """One incoming file: its key in the incoming area, its batch id and its URI; ``collides_with``:
    the key of an earlier file of the same batch id (this one is set aside, not scored)."""

    key: str
    batch_id: str
    uri: str
    collides_with: NotRequired[str]


def logged_columns(spec: PipelineSpec) -> list[str]:
    """The input columns the prediction log keeps: ids, timestamp and features."""
    timestamp = [spec.columns.timestamp] if spec.columns.timestamp else []
    return [*spec.columns.id, *timestamp, *spec.columns.features]


def new_batches(spec: PipelineSpec, settings: Settings) -> list[Batch]:
    """The incoming files of the spec's format that were not scored yet, and those whose batch was
    scored from other content (score_batch sets them aside). A batch is scored when its partition
    is in the prediction log or its record says it was (retention may have deleted the partition:
    it is not scored again)."""
    incoming = open_storage(spec.incoming_uri, settings)
    storage = home_storage(settings)
    keys: dict[str, list[str]] = {}  # batch id -> its files, in key order
    skipped = []
    for key in sorted(incoming.list_keys()):
        batch_id = input_name(key, spec.scoring.format)
        if batch_id is None:
            skipped.append(key)
        else:
            keys.setdefault(batch_id, []).append(key)
    pending: list[Batch] = []
    for batch_id, files in keys.items():
        owner = _owner(storage, spec.name, batch_id, files)
        batch: Batch = {"key": owner, "batch_id": batch_id, "uri": incoming.uri(owner)}
        scored = storage.exists(partition_key(PREDICTIONS, spec.name, batch_id)) or scored_batches.committed(
            storage, spec.name, batch_id
        )
        if not scored or not scored_batches.unchanged_since_scored(storage, incoming, spec.name, batch):
            pending.append(batch)
        pending += [
            {"key": k, "batch_id": batch_id, "uri": incoming.uri(k), "collides_with": owner}
            for k in files
            if k != owner
        ]
    if skipped:
        log.warning(
            "%s: %d file(s) not of format %s (%s) are not batches, e.g. %s",
            spec.incoming_uri,
            len(skipped),
            spec.scoring.format,
            "/".join(SUFFIXES[spec.scoring.format]),
            ", ".join(skipped[:3]),
        )
    return pending


def _owner(storage: Storage, pipeline: str, batch_id: str, files: list[str]) -> str:
    """Which of the files of one batch id is the batch: the one it was scored from, else the first."""
    if len(files) == 1:
        return files[0]
    record = scored_batches.batch_record(storage, pipeline, batch_id) or {}
    return record["key"] if record.get("key") in files else files[0]


def set_aside(
    spec: PipelineSpec, settings: Settings, batch: Batch, sha256: str, area: str, reason: dict[str, Any]
) -> str:
    """Move the batch file (whose content has ``sha256``) to ``<area>/<pipeline>/<batch id>/`` with
    ``reason.json`` beside it (``<batch id>~<sha256 prefix>/`` when an earlier, different file of
    that id is already there); see :func:`ctloop.scoring.input_files.move_file_aside`."""
    incoming = open_storage(spec.incoming_uri, settings)
    prefix = f"{area}/{spec.name}/{batch['batch_id']}"
    return move_file_aside(settings, incoming, batch["key"], sha256, prefix, {"batch": batch, **reason})


def predict(model: FittedModel, frame: pd.DataFrame, spec: PipelineSpec) -> tuple[NDArray[Any], NDArray[Any]]:
    """The predicted label (or value) and the score the log keeps: the positive class's
    probability for binary models, the top probability for multiclass, the value for regression."""
    predictions = model_predictions(model, frame, spec)
    return predictions.predicted, predictions.score


def model_predictions(model: FittedModel, frame: pd.DataFrame, spec: PipelineSpec) -> Predictions:
    """What the log keeps of the model's output on ``frame`` (:func:`logged_predictions`)."""
    return logged_predictions(spec, model, *outputs(model, frame, spec))


def logged_predictions(
    spec: PipelineSpec, model: FittedModel, predicted: NDArray[Any], probabilities: NDArray[Any]
) -> Predictions:
    """What the log keeps of a model's :func:`~ctloop.evaluation.model_scores.outputs`: the
    predicted label (or value) and :func:`predict`'s score; for a multiclass model also every
    class's probability, which its roc_auc and log_loss need once labels arrive."""
    if spec.task == "regression":
        return Predictions(predicted, predicted.astype(float))
    if probabilities.shape[1] == 2:
        return Predictions(predicted, probabilities[:, 1])
    return Predictions(predicted, probabilities.max(axis=1), probabilities, model.classes_)


class Part(TypedDict):
    """Part ``index`` of ``count`` of a batch: its chunks ``index``, ``index + count``, ... (chunk
    ``k`` holds rows ``k * scoring.chunk_rows`` onwards), so parts are even without a first pass
    counting rows. A batch scored in one task is part 0 of 1."""

    index: int
    count: int


ONE_PART: Part = {"index": 0, "count": 1}


class Plan(TypedDict):
    """How the parts of a batch above ``scoring.fan_out_rows`` read it, each only its share: chunk
    ``k`` (``chunk_rows[k]`` rows) is row group ``k`` of the batch file itself (a Parquet file with
    reasonable row groups), bytes ``ranges[k]`` of the batch file with its header (a CSV file whose
    line breaks all end rows, :mod:`ctloop.scoring.csv_ranges`), or else the one row group of
    ``copies[k]``, a Parquet copy in home storage that the claim's planning pass wrote."""

    parts: int
    chunk_rows: list[int]
    copies: list[str]
    ranges: list[list[int]]


class Claim(TypedDict):
    """A batch claimed for scoring (:func:`claim_batch`): its content (``source``: batch id, key,
    sha256, size, fingerprint) reserved under its id, the champion version that scores it, the
    champion's suite, and one scoring time for all its rows. Small JSON, for XCom."""

    batch: Batch
    source: dict[str, Any]
    champion: str
    suite_key: str | None
    scored_at: str
    user_code_changed: list[str]
    plan: NotRequired[Plan | None]


class PartResult(TypedDict):
    """What :func:`score_part` did with one part: the rows and chunks it scored into ``staging``
    (a key of home storage; None when it scored nothing), the checks that failed (a failing chunk
    stops the part), the input columns that had a value, and what each shadow model did."""

    part: Part
    chunks: int
    rows: int
    staging: str | None
    failures: list[Failure]
    with_values: list[str]
    shadow: dict[str, Any] | None
    challenger: dict[str, Any] | None


def score_batch(spec: PipelineSpec, settings: Settings, batch: Batch) -> dict[str, Any]:
    """Check, predict and log one batch in one task, chunk by chunk; returns a summary for XCom."""
    claim, model, done = _claim(spec, settings, batch)
    if done is not None:
        return done
    return publish(spec, settings, claim, [score_part(spec, settings, claim, ONE_PART, model=model)])


def claim_batch(spec: PipelineSpec, settings: Settings, batch: Batch) -> tuple[Claim, dict[str, Any] | None]:
    """Hash the batch (streaming), refuse a colliding or conflicting file, make sure the champion
    loads, reserve the content under the batch id and plan its parts (:func:`parts`). Returns the
    claim and, when nothing is left to score (a duplicate, set aside), the task's result."""
    if spec.scoring.format == "csv" and spec.scoring.max_parts > 1:
        return _claim_csv(spec, settings, batch)
    claim, _, done = _claim(spec, settings, batch)
    if done is None:
        claim["plan"] = _parquet_plan(spec, settings, claim) if spec.scoring.max_parts > 1 else None
    return claim, done


def parts(claim: Claim) -> list[Part]:
    """The parts :func:`score_part` scores a claimed batch in: one unless its plan fans it out."""
    plan = claim.get("plan")
    count = plan["parts"] if plan is not None else 1
    return [{"index": index, "count": count} for index in range(count)]


# A batch of more than ``scoring.fan_out_rows`` rows is split into parts of about that many rows (at
# most ``scoring.max_parts``, whole chunks each), so that each part reads only its chunks. The rows
# are counted cheaply first (a Parquet footer; a CSV's line breaks, at least its rows), so a smaller
# batch is left to one part reading the file as it streams (plan None). A larger one is read by the
# parts as it is where it can be: a Parquet file whose row groups are chunks already (at most
# ``chunk_rows`` rows, not many more groups than chunks) by row groups, a CSV file whose line breaks
# all end rows by byte ranges found in the pass that counted them. Otherwise it is read once here and
# its chunks copied, each to one Parquet file in staging. A file that cannot be read is left to one
# part too, which finds the fault and names it as for any batch.


def _claim_csv(spec: PipelineSpec, settings: Settings, batch: Batch) -> tuple[Claim, dict[str, Any] | None]:
    """Claim and plan a CSV batch in one pass over one copy of it: its sha256 and its line count
    together (on S3, one download instead of a hashing read and then a download)."""
    scoring, incoming = spec.scoring, open_storage(spec.incoming_uri, settings)
    fingerprint = incoming.fingerprint(batch["key"])  # before the read: a rewrite after it changes it
    with incoming.local_file(batch["key"]) as path:
        digest = hashlib.sha256()
        lines = csv_ranges.scan(path, scoring.chunk_rows, scoring.csv_block_mib << 20, digest)
        claim, _, done = _claim(spec, settings, batch, read=(fingerprint, digest.hexdigest()))
        if done is not None:
            return claim, done
        if lines.breaks <= scoring.fan_out_rows:  # at least its rows
            claim["plan"] = None
        elif lines.chunk_rows is not None and lines.ranges is not None:
            claim["plan"] = _planned(spec, lines.chunk_rows, ranges=lines.ranges)
        else:
            claim["plan"] = _copied_plan(spec, settings, claim, path)
    return claim, None


def _parquet_plan(spec: PipelineSpec, settings: Settings, claim: Claim) -> Plan | None:
    with open_storage(spec.incoming_uri, settings).local_file(claim["batch"]["key"]) as path:
        try:
            if _parquet_file(path).metadata.num_rows <= spec.scoring.fan_out_rows:
                return None
            if groups := _chunk_groups(spec, path):
                return _planned(spec, groups)
        except DataReadError:
            return None
        return _copied_plan(spec, settings, claim, path)


def _copied_plan(spec: PipelineSpec, settings: Settings, claim: Claim, path: Path) -> Plan | None:
    """The plan of parts reading copies of the batch's chunks (:func:`_copy_chunks`)."""
    try:
        counts, copies = _copy_chunks(spec, settings, claim, path)
    except DataReadError:
        return None
    plan = _planned(spec, counts, copies=copies)
    if plan is None:
        _drop(home_storage(settings), copies)
    return plan


def _planned(
    spec: PipelineSpec,
    chunk_rows: list[int],
    *,
    copies: list[str] | None = None,
    ranges: list[list[int]] | None = None,
) -> Plan | None:
    count = min(spec.scoring.max_parts, -(-sum(chunk_rows) // spec.scoring.fan_out_rows), len(chunk_rows))
    plan: Plan = {"parts": count, "chunk_rows": chunk_rows, "copies": copies or [], "ranges": ranges or []}
    return plan if count > 1 else None


def _parquet_file(path: Path) -> pq.ParquetFile:
    """The Parquet file at ``path``; one pyarrow cannot open is the batch's fault."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{path.name}: cannot read as parquet: {_error(exc)}") from exc


def _chunk_groups(spec: PipelineSpec, path: Path) -> list[int]:
    """The rows of each row group of a Parquet batch when they can be its chunks, else none."""
    metadata = _parquet_file(path).metadata
    rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    chunk = spec.scoring.chunk_rows
    fit = max(rows, default=0) <= chunk and len(rows) <= 2 * -(-metadata.num_rows // chunk)
    return rows if fit else []


def _copy_chunks(
    spec: PipelineSpec, settings: Settings, claim: Claim, path: Path
) -> tuple[list[int], list[str]]:
    """Stream the batch once, each chunk's table (as the reader typed it, before it becomes a
    frame) to a Parquet file of one row group in staging; returns each chunk's rows and key."""
    import pyarrow.parquet as pq

    storage = home_storage(settings)
    counts: list[int] = []
    copies: list[str] = []
    tables = iter_tables(
        path,
        spec.scoring.format,
        claim["batch"]["uri"],
        spec.scoring.chunk_rows,
        read_options(spec.columns),
        block_bytes=spec.scoring.csv_block_mib << 20,
    )
    with tempfile.TemporaryDirectory(prefix="ctloop-plan-") as work:
        try:
            for index, _, table in tables:
                output = Path(work) / "chunk.parquet"
                pq.write_table(table, output, row_group_size=max(table.num_rows, 1))
                key = f"{_staging_prefix(spec, claim)}/input/chunk-{index:06d}.parquet"
                copies.append(key)
                storage.publish_file(key, output)
                counts.append(table.num_rows)
        except DataReadError:
            _drop(storage, copies)
            raise
    return counts, copies


def _part_chunks(
    spec: PipelineSpec, settings: Settings, claim: Claim, part: Part
) -> Generator[Chunk, None, None]:
    """The chunks of ``part``: only its own, by row group, byte range or copy (:class:`Plan`),
    else read from the batch file as it streams (the others' chunks are parsed too, to count
    rows): without a plan, or when the copies are gone (a part cleared after its batch was
    published)."""
    batch, plan = claim["batch"], claim.get("plan")
    incoming = open_storage(spec.incoming_uri, settings)
    mine = range(part["index"], len(plan["chunk_rows"]) if plan else 0, part["count"])
    copies, storage = plan["copies"] if plan else [], home_storage(settings)
    if plan is None or any(not storage.exists(copies[k]) for k in mine if copies):
        with incoming.local_file(batch["key"]) as path:
            yield from _chunks(spec, path, batch["uri"], keep=lambda k: k % part["count"] == part["index"])
        return
    first = [0, *itertools.accumulate(plan["chunk_rows"])]
    options, fmt, name = read_options(spec.columns), spec.scoring.format, batch["uri"]

    def chunk(table: pa.Table, k: int) -> Chunk:
        return table_chunk(table, fmt, name, k, first[k], options, [spec.columns.target])

    if ranges := plan.get("ranges"):
        read = csv_ranges.range_reader(
            incoming, batch["key"], name, ranges, options, spec.scoring.csv_block_mib << 20
        )
        for k in mine:
            try:
                table = read(k, plan["chunk_rows"][k])
            except DataReadError as exc:  # the streaming reader cannot say where; a range can
                exc.add_note(f"in rows {first[k]}-{max(first[k + 1], first[k] + 1) - 1}")
                raise
            yield chunk(table, k)
        return
    if copies:
        for k in mine:
            with storage.local_file(copies[k]) as path:
                yield chunk(_parquet_file(path).read(), k)
        return
    with incoming.local_file(batch["key"]) as path:
        parquet = _parquet_file(path)
        for k in mine:
            yield chunk(_read_group(parquet, k, name), k)


def _read_group(parquet: pq.ParquetFile, group: int, name: str) -> pa.Table:
    try:
        return parquet.read_row_group(group)
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise DataReadError(f"{name}: cannot read as parquet: {_error(exc)}") from exc


def _claim(
    spec: PipelineSpec, settings: Settings, batch: Batch, *, read: tuple[str, str] | None = None
) -> tuple[Claim, FittedModel, dict[str, Any] | None]:
    """``read``: the batch's fingerprint (taken before the caller read it) and sha256, when the
    caller hashed it already; else both are taken here."""
    champion = registry.get_champion(registry.client(settings), spec.name)
    if champion is None:
        raise NoChampion(f"{spec.name}: no model is champion yet; run {spec.name}__train first")
    incoming = open_storage(spec.incoming_uri, settings)
    if read is None:
        fingerprint = incoming.fingerprint(batch["key"])  # before the read: a rewrite after it changes it
        read = fingerprint, incoming.sha256(batch["key"])
    fingerprint, sha256 = read
    _refuse_collision(spec, settings, batch, sha256)
    _refuse_conflict(spec, settings, batch, sha256)
    # not the batch's fault if loading fails: it stays, unreserved
    model = registry.load_version(settings, champion, model_trust.policy(spec))
    code_changed = changed_user_code(spec, champion.tags)
    for change in code_changed:  # the fitted state is the version's, the methods today's code
        log.warning("%s v%s: scoring with changed code: %s", spec.name, champion.version, change)
    source = {
        "batch_id": batch["batch_id"],
        "key": batch["key"],
        "sha256": sha256,
        "size": fingerprint_size(fingerprint),
        "fingerprint": fingerprint,
    }
    claim: Claim = {
        "batch": batch,
        "source": source,
        "champion": str(champion.version),
        "suite_key": champion.tags.get(tags.SUITE_KEY),
        "scored_at": clock.now().isoformat(),
        "user_code_changed": code_changed,
    }
    first = scored_batches.reserve(settings, spec.name, source)
    if first is None:
        return claim, model, None
    why = {"duplicate_of": first, "sha256": sha256}
    where = set_aside(spec, settings, batch, sha256, "duplicates", why)
    return claim, model, {**batch, "action": "duplicate", **why, "moved_to": where}


def staging_key(spec: PipelineSpec, claim: Claim, part: Part) -> str:
    """Where a part's predictions wait for :func:`publish`: one key per content and part, so a
    retried part rewrites its own file and a new content of the batch id never mixes with it."""
    return f"{_staging_prefix(spec, claim)}/part-{part['index']:05d}-of-{part['count']:05d}.parquet"


def _staging_prefix(spec: PipelineSpec, claim: Claim) -> str:
    source = claim["source"]
    return f"staging/{spec.name}/{source['batch_id']}/{source['sha256'][:16]}"


def score_part(
    spec: PipelineSpec, settings: Settings, claim: Claim, part: Part, *, model: FittedModel | None = None
) -> PartResult:
    """Read, check and predict the part's chunks of a claimed batch, one chunk in memory at a time,
    as row groups of a local Parquet file published to :func:`staging_key`. The batch's failures
    (unreadable, a check, a prediction, the write) are returned, not raised: only
    :func:`publish` sets the batch aside, once every part has run. A failure that is not the batch's
    (the model or the registry unavailable) raises, and the part can be retried as it is."""

    batch = claim["batch"]
    incoming = open_storage(spec.incoming_uri, settings)
    if incoming.fingerprint(batch["key"]) != claim["source"]["fingerprint"]:
        raise CtloopError(
            f"{batch['uri']}: rewritten since it was claimed; it is scored again on the next run"
        )
    if model is None:
        version = registry.client(settings).get_model_version(spec.name, claim["champion"])
        model = registry.load_version(settings, version, model_trust.policy(spec))
    shadows = _shadow_models(spec, settings, claim["champion"])
    result: PartResult = {
        "part": part,
        "chunks": 0,
        "rows": 0,
        "staging": None,
        "failures": [],
        "with_values": [],
        "shadow": shadows[0].outcome,
        "challenger": shadows[1].outcome,
    }
    with_values: set[str] = set()
    chunks = _part_chunks(spec, settings, claim, part)
    with tempfile.TemporaryDirectory(prefix="ctloop-score-") as work, contextlib.closing(chunks):
        suite = split_suite(suite_path(spec, suite_dir(spec, settings, claim["suite_key"])), Path(work))
        logged_names = set(logged_columns(spec))
        hashed = [c for c in suite.unique if c in logged_names] if part["count"] > 1 else []
        output = Path(work) / "part.parquet"
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in chunks:
                verdict = check_chunk(chunk, spec, suite.chunk_suite)
                with_values |= verdict.with_values
                if verdict.failures:
                    result["failures"] = verdict.failures
                    break
                try:
                    logged = _predictions(spec, claim, model, chunk.frame)
                except Exception as exc:  # the batch's rows make the model fail: it is set aside
                    result["failures"] = [failure("prediction", None, f"{_error(exc)} (in {chunk.rows})")]
                    break
                for shadow in shadows:
                    shadow.score(spec, chunk.frame, logged)
                table = _arrow_table(spec, chunk, logged)
                for column in hashed:
                    table = table.append_column(HASHED + column, _row_hashes(table.column(column)))
                writer = _append(writer, output, table)
                result["chunks"] += 1
                result["rows"] += len(logged)
        except DataReadError as exc:
            result["failures"] = [_read_failure(exc)]
        finally:
            if writer is not None:
                writer.close()
        if writer is not None and not result["failures"]:
            key = staging_key(spec, claim, part)
            try:
                home_storage(settings).publish_file(key, output)
            except StorageError as exc:
                result["failures"] = [failure("write", None, _error(exc))]
            else:
                result["staging"] = key
    result["with_values"] = sorted(with_values)
    result["shadow"], result["challenger"] = shadows[0].outcome, shadows[1].outcome
    return result


def publish(spec: PipelineSpec, settings: Settings, claim: Claim, parts: list[PartResult]) -> dict[str, Any]:
    """Once every part has run: set the batch aside if any part failed or a whole-batch check fails;
    else assemble the parts' row groups in chunk order into the batch's partition (one row group at
    a time), publish it atomically, commit the claim and drop the staged parts and the plan's
    copies. Retried once it has committed and dropped them, it only returns the result."""
    import pyarrow.parquet as pq

    batch, source = claim["batch"], claim["source"]
    count = {p["part"]["count"] for p in parts}
    if count != {len(parts)} or sorted(p["part"]["index"] for p in parts) != list(range(len(parts))):
        raise CtloopError(
            f"{batch['uri']}: publish needs every part's result, got {[p['part'] for p in parts]}"
        )
    parts = sorted(parts, key=lambda p: p["part"]["index"])
    storage = home_storage(settings)
    rows = sum(p["rows"] for p in parts)
    staged = [p["staging"] for p in parts if p["staging"] is not None]
    copies = plan["copies"] if (plan := claim.get("plan")) is not None else []
    key = partition_key(PREDICTIONS, spec.name, batch["batch_id"])
    gone = any(not storage.exists(k) for k in staged)  # dropped by this publish, before a retry
    if gone and scored_batches.scored_from(storage, spec.name, batch["batch_id"], source["sha256"]):
        _drop(storage, staged)  # a part cleared after the commit staged its chunks again
        return _scored(claim, parts, storage.uri(key))
    with tempfile.TemporaryDirectory(prefix="ctloop-publish-") as work, contextlib.ExitStack() as files:
        failures = [f for p in parts for f in p["failures"]]
        if not failures:
            failures = never_valued(spec, {c for p in parts for c in p["with_values"]}, rows)
        if not failures:
            local = [files.enter_context(storage.local_file(key)) for key in staged]
            failures = _whole_batch_failures(spec, settings, claim, local, rows, Path(work))
        if failures:
            _drop(storage, [*staged, *copies])
            _quarantine(spec, settings, claim, failures)
        output = Path(work) / PART
        with _set_aside_on_failure(spec, settings, claim, "write"):
            if len(parts) > 1:  # a part of several holds hashes too (HASHED)
                _assemble([pq.ParquetFile(path) for path in local], output)
            uri = storage.publish_file(key, output if len(parts) > 1 else local[0])
    scored_batches.commit(settings, spec.name, source, uri)
    _drop(storage, [*staged, *copies])
    return _scored(claim, parts, uri)


def _scored(claim: Claim, parts: list[PartResult], uri: str) -> dict[str, Any]:
    """The task's result for a scored batch."""
    code_changed = claim["user_code_changed"]
    return {
        **claim["batch"],
        "action": "scored",
        "rows": sum(p["rows"] for p in parts),
        "model_version": claim["champion"],
        "partition": uri,
        "sha256": claim["source"]["sha256"],
        "shadow": _outcome([p["shadow"] for p in parts]),
        "challenger": _outcome([p["challenger"] for p in parts]),
        **({"user_code_changed": code_changed} if code_changed else {}),
    }


def _chunks(
    spec: PipelineSpec,
    path: Path,
    uri: str,
    *,
    columns: list[str] | None = None,
    keep: Callable[[int], bool] | None = None,
) -> Iterator[Chunk]:
    return iter_chunks(
        path,
        spec.scoring.format,
        uri,
        spec.scoring.chunk_rows,
        read_options(spec.columns),
        block_bytes=spec.scoring.csv_block_mib << 20,
        columns=columns,
        inferred=[spec.columns.target],
        keep=keep,
    )


def _read_failure(exc: DataReadError) -> Failure:
    """A value that is not a number is the schema's ``numeric_dtype`` failure; anything else makes
    the file unreadable."""
    where = "".join(f" ({note})" for note in getattr(exc, "__notes__", []))
    if isinstance(exc, NotNumeric):
        detail = f"numeric column {exc.column!r} has a value that is not a number (e.g. value {exc.value!r})"
        return failure("numeric_dtype", exc.column, detail + where)
    return failure("readable", None, str(exc) + where)


HASHED = "ctloop:hash:"
"""The prefix of a staged part's column holding a 64-bit hash of each value of a column whose
values must be unique across the batch (a fanned-out batch's parts hash their own rows, in
parallel; :func:`publish` then compares hashes and reads the values only when two hashes meet).
Never in the partition."""


def _row_hashes(values: pa.ChunkedArray) -> pa.Array:
    """Each value's 64-bit hash (:func:`ctloop.scoring.value_hashes.value_hashes`), null where the
    value is (nulls are not values to be unique)."""
    import numpy as np
    import pyarrow as pa

    present = values.is_valid().to_numpy(zero_copy_only=False)
    hashes = np.zeros(len(values), dtype=np.uint64)
    hashes[present] = value_hashes(values)
    return pa.array(hashes, type=pa.uint64(), mask=~present)


def _whole_batch_failures(
    spec: PipelineSpec, settings: Settings, claim: Claim, staged: list[Path], rows: int, work: Path
) -> list[Failure]:
    """The suite's whole-batch expectations, each group on the columns it names read alone: from
    the staged predictions when they hold them (Parquet column projection), else from the batch.
    Uniqueness is first checked on the parts' hashes (:data:`HASHED`) when every part has them:
    no repeated hash, no repeated value; otherwise on the values themselves."""
    import pandas as pd
    import pyarrow.parquet as pq

    suite = split_suite(suite_path(spec, suite_dir(spec, settings, claim["suite_key"])), work)
    logged = set(logged_columns(spec))
    failures: list[Failure] = []
    for column in suite.unique:

        def read(column: str = column) -> Iterator[pd.Series | pa.ChunkedArray]:
            if column in logged:
                for path in staged:
                    parquet = pq.ParquetFile(path)
                    for group in range(parquet.num_row_groups):
                        yield parquet.read_row_group(group, columns=[column]).column(column)
            else:
                yield from (frame[column] for frame in _source_columns(spec, settings, claim, [column]))

        def read_hashes(column: str = HASHED + column) -> Iterator[pd.Series]:
            for path in staged:
                yield pd.Series(pq.read_table(path, columns=[column]).column(0).drop_null().to_numpy())

        hashed = bool(staged) and all(HASHED + column in pq.ParquetFile(p).schema_arrow.names for p in staged)
        if not hashed or duplicates(HASHED + column, read_hashes):
            failures += duplicates(column, read)
    for columns, group in suite.whole.items():
        if not columns:  # table-level (a row count): the batch's rows, without their values
            failures += run_suite(pd.DataFrame(index=pd.RangeIndex(rows)), spec, group)
            continue
        if set(columns) <= logged:
            frames = [pq.read_table(path, columns=list(columns)).to_pandas() for path in staged]
        elif spec.columns.target in columns and not _has_column(spec, settings, claim, spec.columns.target):
            continue  # expectations on the label, and the batch has none yet
        else:
            frames = _source_columns(spec, settings, claim, list(columns))
        frame = pd.concat(frames, ignore_index=True)
        del frames
        failures += run_suite(frame, spec, group)
    return failures


def _source_columns(
    spec: PipelineSpec, settings: Settings, claim: Claim, columns: list[str]
) -> list[pd.DataFrame]:
    batch = claim["batch"]
    with open_storage(spec.incoming_uri, settings).local_file(batch["key"]) as path:
        return [c.frame for c in _chunks(spec, path, batch["uri"], columns=columns)]


def _has_column(spec: PipelineSpec, settings: Settings, claim: Claim, column: str) -> bool:
    batch = claim["batch"]
    with open_storage(spec.incoming_uri, settings).local_file(batch["key"]) as path:
        first = next(iter(_chunks(spec, path, batch["uri"], keep=lambda k: k == 0)))
    return column in first.frame.columns


def _assemble(parts: list[Any], output: Path) -> None:
    """The parts' row groups in chunk order (chunk ``k`` is row group ``k // n`` of part ``k % n``)
    into one Parquet file, one row group in memory at a time, without the parts' hashes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.unify_schemas([p.schema_arrow for p in parts], promote_options="permissive")
    schema = pa.schema([f for f in schema if not f.name.startswith(HASHED)], metadata=schema.metadata)
    total = sum(p.num_row_groups for p in parts)
    with pq.ParquetWriter(output, schema) as writer:
        for k in range(total):
            part = parts[k % len(parts)]
            columns = [c for c in part.schema_arrow.names if not c.startswith(HASHED)]
            table = part.read_row_group(k // len(parts), columns=columns)
            writer.write_table(_conform(table, schema), row_group_size=max(table.num_rows, 1))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns and types; a column it lacks (a shadow that stopped
    scoring) is null."""
    import pyarrow as pa

    columns = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata()).cast(schema)


def _append(writer: pq.ParquetWriter | None, output: Path, table: pa.Table) -> pq.ParquetWriter:
    """Write ``table`` as one row group of ``output``, opening the writer on the first chunk."""
    import pyarrow.parquet as pq

    if writer is None:
        writer = pq.ParquetWriter(output, table.schema)
    writer.write_table(_conform(table, writer.schema), row_group_size=max(table.num_rows, 1))
    return writer


def _arrow_table(spec: PipelineSpec, chunk: Chunk, logged: pd.DataFrame) -> pa.Table:
    """A chunk's log rows as Arrow: its inputs (from the chunk's own Arrow table where it has one),
    then the models' ``logged`` outputs, with a type for every column even where a chunk holds only
    nulls (a model's predictions take the champion's type, text columns string, others float)."""
    import pyarrow as pa

    inputs = _logged_inputs(spec, chunk)
    outputs = pa.Table.from_pandas(logged, preserve_index=False, nthreads=1)
    table = pa.Table.from_arrays(
        [*inputs.columns, *outputs.columns], names=[*inputs.column_names, *outputs.column_names]
    )
    served = table.schema.field(SERVED.prediction).type
    text = {*spec.columns.id, *spec.columns.categorical, spec.columns.timestamp, "batch_id"}
    text |= {c.version for c in (SERVED, PREVIOUS, CHALLENGER)}
    for position, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            kind = (
                served
                if field.name.endswith("prediction")
                else pa.string()
                if field.name in text
                else pa.float64()
            )
            table = table.set_column(position, field.name, table.column(position).cast(kind))
    return table


def _logged_inputs(spec: PipelineSpec, chunk: Chunk) -> pa.Table:
    """The input columns the log keeps of a chunk. Taken from its Arrow table when it has one,
    which spares converting every text value back from Python (a third of a chunk's logging); a
    number that is not a number there (NaN as written) is null, as pandas' conversion makes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = logged_columns(spec)
    if chunk.table is None:
        return pa.Table.from_pandas(chunk.frame[names], preserve_index=False, nthreads=1)
    table = chunk.table.select(names)
    for position, column in enumerate(table.columns):
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            table = table.set_column(position, names[position], pc.if_else(pc.is_nan(column), None, column))
    return table


def _drop(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        storage.delete(key)


def _quarantine(spec: PipelineSpec, settings: Settings, claim: Claim, failures: list[Failure]) -> NoReturn:
    """Release the claim and set the batch aside with ``failures`` as its reason."""
    batch = claim["batch"]
    scored_batches.release(settings, spec.name, claim["source"])
    where = set_aside(spec, settings, batch, claim["source"]["sha256"], "quarantine", {"failures": failures})
    listed = "; ".join(f"{f['check']}[{f['column'] or 'table'}]: {f['detail']}" for f in failures)
    raise BatchQuarantined(f"{batch['uri']}: moved to {where}: {listed}")


@contextlib.contextmanager
def _set_aside_on_failure(spec: PipelineSpec, settings: Settings, claim: Claim, stage: str) -> Iterator[None]:
    """Quarantine the batch, naming ``stage`` and the error, when the block fails on it: a batch
    left in place would fail the same way on every run. Its reservation is released first, so
    the batch is not scored and a corrected copy under another id is not taken for a duplicate."""
    try:
        yield
    except Exception as exc:
        _quarantine(spec, settings, claim, [failure(stage, None, _error(exc))])


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _predictions(spec: PipelineSpec, claim: Claim, model: FittedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """A chunk's champion outputs as the log keeps them, its version, the batch id and the scoring
    time, one row per row of ``frame`` (:func:`_arrow_table` puts the chunk's inputs before them)."""
    import pandas as pd

    outputs = model_predictions(model, frame, spec).columns(SERVED.prediction, SERVED.score)
    logged = pd.DataFrame(outputs, index=pd.RangeIndex(len(frame)))
    logged[SERVED.version] = claim["champion"]
    logged["batch_id"] = claim["batch"]["batch_id"]
    logged["scored_at"] = pd.Timestamp(claim["scored_at"])
    return logged


class _Shadow:
    """A model that scores the batch's rows without serving them, into ``columns``: loaded once,
    then each chunk; the first failure (loading or predicting) leaves its columns null from there
    on and is recorded in :attr:`outcome` (None when there is no such version)."""

    def __init__(
        self, spec: PipelineSpec, settings: Settings, version: str | None, columns: ModelColumns
    ) -> None:
        self.version, self.columns = version, columns
        self.model: FittedModel | None = None
        self.outcome: dict[str, Any] | None = None
        if version is None:
            return
        try:
            mlflow_client = registry.client(settings)
            self.model = registry.load_version(
                settings, mlflow_client.get_model_version(spec.name, version), model_trust.policy(spec)
            )
        except Exception as exc:  # a shadow is evidence, not service: the champion's rows are logged anyway
            self._failed(spec, exc)
        else:
            self.outcome = {"version": version, "scored": True}

    def score(self, spec: PipelineSpec, frame: pd.DataFrame, logged: pd.DataFrame) -> None:
        """Fill this model's columns of ``logged`` with its outputs on ``frame`` (null if it cannot)."""
        columns = self.columns
        logged[columns.prediction], logged[columns.score], logged[columns.version] = None, float("nan"), None
        if self.model is None:
            return
        try:
            predictions = model_predictions(self.model, frame, spec)
        except Exception as exc:  # a shadow is evidence, not service
            self._failed(spec, exc)
            return
        for column, values in predictions.columns(columns.prediction, columns.score).items():
            logged[column] = values
        logged[columns.version] = self.version

    def _failed(self, spec: PipelineSpec, exc: Exception) -> None:
        error = _error(exc)
        log.warning(
            "%s: shadow v%s did not score this batch; its %s columns stay null: %s",
            spec.name,
            self.version,
            self.columns.version.removesuffix("_version"),
            error,
        )
        self.model, self.outcome = None, {"version": self.version, "scored": False, "error": error}


def _shadow_models(spec: PipelineSpec, settings: Settings, champion: str) -> tuple[_Shadow, _Shadow]:
    """The previous champion, while the champion is watched, and the challenger, as shadows."""
    promotion = watched_promotion(settings, spec.name, champion) if spec.monitoring.watch.enabled else None
    previous = promotion.from_version if promotion is not None else None
    challenger = registry.get_alias(registry.client(settings), spec.name, registry.CHALLENGER)
    waiting = str(challenger.version) if challenger is not None else None
    return (
        _Shadow(spec, settings, previous, PREVIOUS),
        _Shadow(spec, settings, waiting if waiting != champion else None, CHALLENGER),
    )


def _outcome(outcomes: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """A shadow's outcome over the batch: its first failure in any part, else how it scored."""
    failed = [o for o in outcomes if o is not None and not o["scored"]]
    return failed[0] if failed else outcomes[0]


def _refuse_collision(spec: PipelineSpec, settings: Settings, batch: Batch, sha256: str) -> None:
    """Set the file aside and fail when an earlier incoming file has the same batch id: scoring
    both would write one partition twice, dropping it would lose a file."""
    if "collides_with" not in batch:
        return
    detail = (
        f"batch id {batch['batch_id']!r} is also the id of {batch['collides_with']!r} in the incoming area; "
        f"this file was not scored. Deliver it under a name whose batch id is new."
    )
    why = {"collides_with": batch["collides_with"], "sha256": sha256, "detail": detail}
    where = set_aside(spec, settings, batch, sha256, "conflicts", why)
    raise BatchConflict(f"{batch['uri']}: moved to {where}: {detail}")


def _refuse_conflict(spec: PipelineSpec, settings: Settings, batch: Batch, sha256: str) -> None:
    """Set the file aside and fail when its batch id was already scored from other content:
    scoring it would mix two versions of one batch, dropping it would lose the new version."""
    storage = home_storage(settings)
    key = partition_key(PREDICTIONS, spec.name, batch["batch_id"])
    if (
        not storage.exists(key)
        or scored_batches.reserved(storage, spec.name, batch["batch_id"])  # never finished: not scored
        or scored_batches.scored_from(storage, spec.name, batch["batch_id"], sha256)
    ):
        return
    record = scored_batches.batch_record(storage, spec.name, batch["batch_id"]) or {}
    scored_sha = record.get("sha256", "not recorded")
    detail = (
        f"batch {batch['batch_id']!r} was already scored from other content (sha256 {scored_sha}) into "
        f"{storage.uri(key)}; this file (sha256 {sha256}) was not scored. To replace the scored batch, "
        "delete that partition and deliver the file again; to add its rows, deliver it under a new batch id."
    )
    why = {
        "conflicts_with": storage.uri(key),
        "scored_sha256": scored_sha,
        "sha256": sha256,
        "detail": detail,
    }
    where = set_aside(spec, settings, batch, sha256, "conflicts", why)
    raise BatchConflict(f"{batch['uri']}: moved to {where}: {detail}")
