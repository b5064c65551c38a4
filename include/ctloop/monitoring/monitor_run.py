"""One monitor run: recent production data against the champion's own training snapshot.

Drift and quality are decided by ctloop.monitoring.drift_stats on the full data; people read an
Evidently report built from a sample of the same frames (ctloop.monitoring.drift_report). Both
land under the run's storage prefix and in MLflow, the decision goes into the pipeline's monitor
history, and a confirmed alert opens (or joins) a retrain request. While the champion is the
version promoted most recently, its served quality is compared with the previous champion's on
the same rows (ctloop.monitoring.champion_watch); a significant regression rolls it back through
the ledger, with the monitor as the user, and asks for a retrain. A challenger waiting for
approval is compared with the champion the same way, for its reviewer; that decides nothing.

Memory does not grow with the window's width, and only by one column with its length: each
drift test reads its one column of the window's partitions and of the reference (Parquet column
projection) a row group at a time, gathers a numeric column into one buffer (8 bytes a row) or
counts a categorical one as it goes, and drops it; quality reads only the labeled columns it needs
(ids, label, each model's outputs), a row group at a time; the report's samples are taken a row
group at a time at seeded positions, its known classes as each row group's distinct values. The
whole window is never one frame, and the reference is built from the training snapshot a row
group at a time. Label shift (ctloop.monitoring.label_shift) and the performance estimate
(ctloop.monitoring.performance_estimate) reduce the reference, the champion's holdout and the
window's score columns to counts and per-class sums, a row group at a time, plus seeded samples of
bounded size (``monitoring.estimate.bootstrap_rows`` window rows for the estimate's interval, at
most 100,000 labels a side for a regression label's distribution).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict

from ctloop import clock, notifications
from ctloop.data.snapshots import snapshot_key
from ctloop.errors import RollbackRefused
from ctloop.evaluation.model_scores import logged_metrics
from ctloop.evaluation.weighted_metrics import CLASS_SEPARATOR, Predictions
from ctloop.io.storage import home_storage
from ctloop.monitoring import label_shift, performance_estimate, retrain_requests
from ctloop.monitoring.champion_watch import (
    PairedComparison,
    compare,
    compare_challenger,
    gate_judged_on,
    promoted_on,
    watched_promotion,
)
from ctloop.monitoring.drift_stats import Side, drift_share, stream_column_drift
from ctloop.monitoring.quality_rules import RuleOutcome, assess
from ctloop.monitoring.retrain_policy import ATTACH, HOLD, RETRAIN, ROLLBACK, Evidence, decide
from ctloop.registry import ledger, model_trust, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.rollback import rollback
from ctloop.scoring.batches import model_predictions
from ctloop.scoring.prediction_log import (
    CHALLENGER,
    LABELED,
    PREDICTIONS,
    PREVIOUS,
    SERVED,
    batch_ids,
    file_columns,
    file_rows,
    iter_column,
    iter_row_groups,
    local_partitions,
    read_positions,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from numpy.typing import NDArray

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.steps import RunContext

log = logging.getLogger(__name__)

MONITOR_USER = ledger.MONITOR  # the ledger's "by" of a rollback the monitor makes
REPORT_SEED = 0  # the report's samples: a retried run draws the same rows
BATCH_ID = "batch_id"  # the log's column naming each row's batch


class Window(TypedDict):
    """The monitored window: its batch ids, the champion's labeled rows in it, every labeled row
    the champion served (its watch compares on all of them), and a key that changes when the
    window's rows or labels do. Labeled rows hold only the columns quality reads
    (:func:`quality_columns`); the window's logged rows stay in their partitions, read a column or
    a row group at a time (:class:`Sides`)."""

    batches: list[str]
    labeled: pd.DataFrame
    served: pd.DataFrame
    window_key: str


@dataclass(frozen=True)
class Sides:
    """The two sides a run compares, as local Parquet files: the reference (the champion's training
    snapshot with its predictions) and the window's partitions. Each test reads the one column it
    tests, a row group at a time, so a run holds about one column of the window plus the
    reference's, whatever its width."""

    reference: Path
    current: list[Path]

    @property
    def reference_columns(self) -> Side:
        return _columns([self.reference])

    @property
    def current_columns(self) -> Side:
        return _columns(self.current)


def _columns(paths: list[Path]) -> Side:
    """Partition files as one side of the drift tests: any column, a row group at a time."""
    return Side(sum(file_rows(paths)), partial(iter_column, paths))


def history_prefix(pipeline: str) -> str:
    return f"monitor/{pipeline}/history"


def reference_key(spec: PipelineSpec, settings: Settings, champion: ModelVersion) -> str:
    """The key of the champion's training snapshot with its predictions on it (as the log keeps
    them: a multiclass model's every class probability too, which the performance estimate
    calibrates), written once per version. The snapshot's features and target are read a row group
    at a time, predicted and written as they come: the snapshot is never held whole, nor its other
    columns read."""
    key = f"monitor/{spec.name}/reference/v{champion.version}.parquet"
    if home_storage(settings).exists(key):  # a version's reference is written once
        return key
    snapshot = snapshot_key(spec.name, champion.tags[tags.DATA_SHA256])
    return _with_predictions(spec, settings, champion, snapshot, key)


def holdout_reference_key(spec: PipelineSpec, settings: Settings, champion: ModelVersion) -> str | None:
    """The key of the champion's frozen holdout with its predictions on it, written once per version
    as :func:`reference_key` writes the snapshot's: labeled rows the champion never trained on, which
    the performance estimate calibrates on and the predicted-rate label shift takes its baseline
    from (on its own training rows a model that overfits looks surer and more right than it is).
    None for a version without a stored holdout (registered without a training run, say)."""
    holdout = champion.tags.get(tags.HOLDOUT_KEY)
    if not holdout or not home_storage(settings).exists(holdout):
        return None
    key = f"monitor/{spec.name}/reference/v{champion.version}-holdout.parquet"
    return _with_predictions(spec, settings, champion, holdout, key)


def _with_predictions(
    spec: PipelineSpec, settings: Settings, champion: ModelVersion, source_key: str, key: str
) -> str:
    """``key``: the features and target of the Parquet file ``source_key`` with the champion's
    outputs on each row, unless it is there already."""
    import tempfile
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    storage = home_storage(settings)
    if storage.exists(key):
        return key
    model = registry.load_version(settings, champion, model_trust.policy(spec))
    columns = [*spec.columns.features, spec.columns.target]
    with storage.local_file(source_key) as source_path, tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "reference.parquet"
        with pq.ParquetFile(source_path) as source:
            writer: pq.ParquetWriter | None = None
            for group in range(source.num_row_groups):
                table = source.read_row_group(group, columns=columns, use_pandas_metadata=True)
                predictions = model_predictions(model, table.to_pandas(), spec)
                # the snapshot's own column types, whatever a row group holds (an all-null one, say)
                table = table.replace_schema_metadata(None)
                for name, values in predictions.columns(SERVED.prediction, SERVED.score).items():
                    kind = None if name == SERVED.prediction else pa.float64()
                    table = table.append_column(name, pa.array(values, type=kind))
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
            if writer is None:
                raise ValueError(f"{source_key}: the champion's training data has no rows")
            writer.close()
        storage.publish_file(key, path)
    return key


def quality_columns(spec: PipelineSpec, columns: list[str]) -> list[str]:
    """The columns of a labeled partition that quality and the paired comparisons read, in its
    order: ids, batch id, label, and each model's prediction, score, version and class
    probabilities (``<score>__<class>``)."""
    models = (SERVED, PREVIOUS, CHALLENGER)
    wanted = {*spec.columns.id, BATCH_ID, spec.columns.target, *(c for m in models for c in m)}
    classes = tuple(f"{m.score}{CLASS_SEPARATOR}" for m in models)
    return [c for c in columns if c in wanted or c.startswith(classes)]


def current_window(spec: PipelineSpec, settings: Settings, champion_version: str) -> Window:
    """The last ``window_batches`` scored batches, and the latest labeled rows the champion scored."""
    n = spec.monitoring.window_batches
    window = batch_ids(PREDICTIONS, spec.name, settings)[-n:]
    served = _served(spec, settings, champion_version)
    labeled = served
    if not served.empty:
        recent = sorted(served[BATCH_ID].unique())[-n:]
        labeled = served[served[BATCH_ID].isin(recent)]
    key_parts = {
        "batches": window,
        "labeled": labeled.groupby(BATCH_ID).size().to_dict() if not labeled.empty else {},
    }
    window_key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    return {"batches": window, "labeled": labeled, "served": served, "window_key": window_key}


def _served(spec: PipelineSpec, settings: Settings, champion_version: str) -> pd.DataFrame:
    """Every labeled row the champion served, its :func:`quality_columns` only, read one partition
    and row group at a time and filtered as it goes."""
    import pandas as pd

    parts = []
    for batch_id in batch_ids(LABELED, spec.name, settings):
        with local_partitions(LABELED, spec.name, [batch_id], settings) as files:
            columns = quality_columns(spec, file_columns(files[0]))
            parts += [
                chunk[chunk[SERVED.version].astype(str) == champion_version]
                for chunk in iter_row_groups(files, columns)
            ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def quality(spec: PipelineSpec, labeled: pd.DataFrame) -> dict[str, float] | None:
    """Model quality on the labeled rows, from the logged predictions: the metrics defined there."""
    return None if labeled.empty else logged_metrics(spec, *_served_outputs(spec, labeled))[0]


def _served_outputs(spec: PipelineSpec, labeled: pd.DataFrame) -> tuple[NDArray[Any], Predictions]:
    """The labels of rows the champion served and its logged predictions of them (a multiclass
    model's probability metrics read every class's logged probability); none for no rows."""
    import numpy as np

    if labeled.empty:  # no labeled partition at all has no columns either
        return np.array([]), Predictions(np.array([]), np.array([]))
    y = labeled[spec.columns.target].to_numpy()
    return y, Predictions.from_frame(labeled, SERVED.prediction, SERVED.score)


def prediction_columns(task: TaskKind) -> tuple[list[str], list[str]]:
    """The model's output columns tested for drift, (numeric, categorical): a classifier's score
    and predicted class (binary or multiclass, labels of any type); a regressor's predicted value,
    as a number (its score is the same value)."""
    if task == "regression":
        return [SERVED.prediction], []
    return [SERVED.score], [SERVED.prediction]


def run_monitor(spec: PipelineSpec, settings: Settings, ctx: RunContext) -> dict[str, Any]:
    """Measure, report, decide and record; returns the summary (small enough for XCom)."""
    mlflow_client = registry.client(settings)
    champion = registry.get_champion(mlflow_client, spec.name)
    if champion is None:  # a cron tick before the first training: nothing to compare, not an error
        why = f"no champion yet; nothing to monitor until {spec.name}__train promotes one"
        return {
            "pipeline": spec.name,
            "run_key": ctx.run_key,
            "decision": {"action": HOLD, "alert": False, "why": why},
        }
    version = str(champion.version)
    window = current_window(spec, settings, version)
    storage = home_storage(settings)
    summary: dict[str, Any] = {
        "pipeline": spec.name,
        "run_key": ctx.run_key,
        "at": clock.now().isoformat(timespec="seconds"),
        "champion_version": version,
    }
    with local_partitions(PREDICTIONS, spec.name, window["batches"], settings) as current:
        summary["window"] = {"batches": window["batches"], "rows": sum(file_rows(current))}
        if summary["window"]["rows"] == 0:
            summary["decision"] = {"action": HOLD, "alert": False, "why": "no batch has been scored yet"}
            return summary
        with storage.local_file(reference_key(spec, settings, champion)) as reference:
            sides = Sides(reference, current)
            summary |= _measure(spec, sides, window, mlflow_client, champion)
            summary |= _label_signals(spec, settings, champion, sides, window, summary)
            summary |= _write_report(spec, settings, ctx, sides, window, summary)
    comparison = _watch(spec, settings, version, window)
    if comparison is not None:
        summary["champion_vs_previous"] = comparison.model_dump()
    challenger = _challenger(spec, settings, mlflow_client, version, window)
    if challenger is not None:
        summary["challenger_vs_champion"] = challenger.model_dump()
    entries = _entries(storage, spec.name)
    history = _history(entries, version)
    summary["recent_decisions"] = _recent(spec, entries, version)
    requests = retrain_requests.all_requests(storage, spec.name)
    evidence = Evidence(
        window_key=window["window_key"],
        current_rows=summary["window"]["rows"],
        drift_share=summary["drift"]["share"],
        drifted_features=[c["column"] for c in summary["drift"]["drifted_columns"]],
        labeled_rows=summary["quality"]["labeled_rows"],
        quality_rules=tuple(RuleOutcome.model_validate(r) for r in summary["quality"]["rules"]),
        regression=comparison.why if comparison is not None and comparison.verdict == ROLLBACK else None,
        label_shift=summary["label_shift"],
        estimate=summary["estimate"],
    )
    decision = decide(spec, evidence, history, requests, clock.now())
    if decision["action"] == ROLLBACK and comparison is not None:
        decision |= _roll_back(spec, settings, ctx, comparison)
    if decision["action"] in (RETRAIN, ATTACH) or decision.get("retrain"):
        outcome, request = retrain_requests.request_retrain(settings, spec.name, _reason(summary, decision))
        decision |= {"request": outcome, "request_id": request["id"]}
    summary_key = f"{ctx.storage_prefix}/summary.json"
    summary |= {"decision": decision, "summary_uri": storage.uri(summary_key)}
    storage.write_bytes(summary_key, json.dumps(summary, indent=2, default=str).encode())
    _record(storage, spec.name, summary)
    _log_to_mlflow(spec, settings, mlflow_client, ctx, summary)
    return summary


def _watch(spec: PipelineSpec, settings: Settings, version: str, window: Window) -> PairedComparison | None:
    """The champion against the champion it replaced, while it is the one promoted most recently,
    judged as the gate that promoted it judged it."""
    promotion = watched_promotion(settings, spec.name, version) if spec.monitoring.watch.enabled else None
    if promotion is None or promotion.from_version is None:
        return None
    return compare(spec, window["served"], version, promotion.from_version, promoted_on(settings, promotion))


def _challenger(
    spec: PipelineSpec, settings: Settings, mlflow_client: MlflowClient, version: str, window: Window
) -> PairedComparison | None:
    """The candidate waiting for approval against the champion, on the rows both scored, compared
    as its gate judged it."""
    challenger = registry.get_alias(mlflow_client, spec.name, registry.CHALLENGER)
    if challenger is None or str(challenger.version) == version:
        return None
    waiting = str(challenger.version)
    judged = gate_judged_on(settings, spec.name, waiting, challenger.run_id)
    return compare_challenger(spec, window["served"], version, waiting, judged)


def _roll_back(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, comparison: PairedComparison
) -> dict[str, Any]:
    """Move ``champion`` back to the previous champion through the ledger and notify; a refused
    move (the champion moved since, say) is recorded as a hold, without a retrain."""
    versions = comparison.versions
    try:
        outcome = rollback(
            settings,
            spec.name,
            target=versions["previous"],
            reason=f"monitor: {comparison.why}",
            user=MONITOR_USER,
            run_key=ctx.run_key,
        )
    except RollbackRefused as exc:
        log.warning("%s: the monitor's rollback was refused: %s", spec.name, exc)
        why = f"{comparison.why}; rollback refused: {exc}"
        return {"action": HOLD, "retrain": False, "why": why, "rollback": {"moved": False, "why": str(exc)}}
    fields = {
        "version": outcome.from_version,
        "to": outcome.to,
        "action": outcome.action,
        "by": MONITOR_USER,
        "reason": comparison.why,
    }
    sent = notifications.emit(notifications.ROLLBACK, spec.name, spec.notifications.conn_id, fields)
    return {"rollback": {**outcome.model_dump(mode="json"), "notification": sent}}


def _measure(
    spec: PipelineSpec,
    sides: Sides,
    window: Window,
    mlflow_client: MlflowClient,
    champion: ModelVersion,
) -> dict[str, Any]:
    read = (sides.reference_columns, sides.current_columns)
    features = stream_column_drift(*read, spec.columns.numeric, spec.columns.categorical)
    predictions = stream_column_drift(*read, *prediction_columns(spec.task))
    # a version registered without a run has no holdout value: quality is then left undecided
    champion_metrics = mlflow_client.get_run(champion.run_id).data.metrics if champion.run_id else {}
    return {
        "reference": {
            "snapshot_sha256": champion.tags.get(tags.DATA_SHA256),
            "rows": file_rows([sides.reference])[0],
        },
        "drift": {
            "share": drift_share(features),
            "drifted_columns": [c.as_dict() for c in features if c.drifted],
            "columns": [c.as_dict() for c in features],
        },
        "prediction_drift": [c.as_dict() for c in predictions],
        "quality": _quality_summary(spec, window["labeled"], champion_metrics),
    }


def _quality_summary(
    spec: PipelineSpec, labeled: pd.DataFrame, champion_metrics: dict[str, float]
) -> dict[str, Any]:
    """The champion's metrics on the window's labeled rows and every quality rule judged on them
    (``rules``); ``metric``, ``value`` and ``champion_value`` are the first rule's (its reference)."""
    y, served = _served_outputs(spec, labeled)
    metrics, undefined = logged_metrics(spec, y, served) if not labeled.empty else (None, {})
    rules = assess(spec, y, served, (metrics or {}, undefined), champion_metrics)
    return {
        "metric": rules[0].metric,
        "value": rules[0].value,
        "champion_value": rules[0].reference,
        "labeled_rows": len(labeled),
        "labeled_batches": sorted(labeled[BATCH_ID].unique().tolist()) if not labeled.empty else [],
        "metrics": metrics,
        "undefined": undefined,
        "rules": [r.model_dump() for r in rules],
    }


def _label_signals(
    spec: PipelineSpec,
    settings: Settings,
    champion: ModelVersion,
    sides: Sides,
    window: Window,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """Label shift (the window's labeled rows against the training data's labels, and against the
    champion's predictions on its holdout) and the estimate of the champion's quality on the
    window's rows from its probabilities calibrated on the holdout, beside the realised quality;
    each reads its few columns of the reference, the holdout and the window a row group at a time."""
    from contextlib import ExitStack

    columns = [spec.columns.target, SERVED.prediction]
    holdout_key = holdout_reference_key(spec, settings, champion)
    storage = home_storage(settings)
    with ExitStack() as stack:
        holdout = None if holdout_key is None else stack.enter_context(storage.local_file(holdout_key))
        return {
            "label_shift": label_shift.measure(
                spec,
                iter_row_groups([sides.reference], columns),
                None if holdout is None else iter_row_groups([holdout], columns),
                window["labeled"],
                SERVED.prediction,
            ),
            "estimate": performance_estimate.estimate(
                spec, holdout, sides.current, SERVED, measured["quality"].get("metrics")
            ),
        }


def _write_report(
    spec: PipelineSpec,
    settings: Settings,
    ctx: RunContext,
    sides: Sides,
    window: Window,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """The Evidently report on seeded samples read from the partitions, with the tests the
    decision used (``measured``): the samples are all it holds of the rows."""
    from ctloop.monitoring.drift_report import (
        ReportData,
        build_sampled_report,
        column_kinds,
        sample_frame,
        sample_positions,
    )

    target, rows, seed = spec.columns.target, spec.monitoring.report_sample_rows, REPORT_SEED
    kinds = column_kinds(spec.columns.numeric, spec.columns.categorical, spec.task)
    columns = list(kinds)
    reference_rows, current_rows = measured["reference"]["rows"], measured["window"]["rows"]
    labeled = _labeled_current(spec, sides.current, window["labeled"])
    classes: list[Any] = []  # the known classes: every predicted class, and the reference's labels
    if spec.task == "classification":
        classes += _labels(sides.current_columns, SERVED.prediction)
        classes += _labels(sides.reference_columns, SERVED.prediction)
        if target in file_columns(sides.reference):
            classes += _labels(sides.reference_columns, target)
    data = ReportData(
        reference=read_positions(
            [sides.reference], columns, sample_positions(reference_rows, rows, seed, stream=0)
        ),
        current=read_positions(sides.current, columns, sample_positions(current_rows, rows, seed, stream=1)),
        labeled=None if labeled is None else sample_frame(labeled, rows, seed, stream=2),
        reference_rows=reference_rows,
        current_rows=current_rows,
        labeled_rows=0 if labeled is None else len(labeled),
        methods=_report_tests(sides, kinds, measured),
        classes=classes,
    )
    html, evidently_summary = build_sampled_report(
        data,
        numeric=spec.columns.numeric,
        categorical=spec.columns.categorical,
        target=target,
        task=spec.task,
        sample_rows=rows,
        seed=seed,
        drift_share=spec.monitoring.drift.share,
        title=f"{spec.name} drift report, {ctx.run_id}",
    )
    uri = home_storage(settings).write_bytes(f"{ctx.storage_prefix}/report.html", html.encode())
    return {"report_uri": uri, "evidently": evidently_summary}


def _labels(side: Side, column: str) -> list[Any]:
    """The column's distinct class labels (``distinct_labels``), from each row group's distinct
    values: what is held is one row group and the values."""
    import pandas as pd

    from ctloop.monitoring.drift_report import distinct_labels

    found = [pd.Series(piece.unique()) for piece in side.pieces(column)]
    return distinct_labels(pd.concat(found, ignore_index=True)) if found else []


def _report_tests(sides: Sides, kinds: dict[str, str], measured: dict[str, Any]) -> dict[str, str]:
    """Each reported column's drift test: the one the decision ran, which is Evidently's choice on
    all the rows; a column the decision does not test (a regressor's score, its prediction again)
    is tested the same way, reading that column alone, for its choice."""
    tests = {
        c["column"]: c["stattest"] for c in [*measured["drift"]["columns"], *measured["prediction_drift"]]
    }
    return {column: tests.get(column) or _stattest(sides, column, kind) for column, kind in kinds.items()}


def _stattest(sides: Sides, column: str, kind: str) -> str:
    """The test Evidently picks for ``column`` on all the rows (the drift engine's choice, one
    column held as the decision's tests hold it)."""
    numeric, categorical = ([column], []) if kind == "numeric" else ([], [column])
    (tested,) = stream_column_drift(sides.reference_columns, sides.current_columns, numeric, categorical)
    return tested.stattest


def _labeled_current(spec: PipelineSpec, current: list[Path], labeled: pd.DataFrame) -> pd.DataFrame | None:
    """The window's rows whose label arrived and that have a prediction (label, prediction, score):
    the window joined with the champion's labels by id a row group at a time, so what is held is
    those rows, never the window. None when there are none."""
    import pandas as pd

    if labeled.empty:
        return None
    ids, target = list(spec.columns.id), spec.columns.target
    labels, parts = labeled[[*ids, target]], []
    for chunk in iter_row_groups(current, [*ids, SERVED.prediction, SERVED.score]):
        joined = chunk.merge(labels, on=ids, how="inner")
        kept = joined[target].notna() & joined[SERVED.prediction].notna()
        parts.append(joined.loc[kept, [target, SERVED.prediction, SERVED.score]])
    found = pd.concat(parts, ignore_index=True) if parts else None
    return None if found is None or found.empty else found


def _entries(storage: Storage, pipeline: str) -> list[dict[str, Any]]:
    """Every recorded decision, of every champion, oldest first."""
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(pipeline))]


def _history(entries: list[dict[str, Any]], champion_version: str) -> list[dict[str, Any]]:
    """Earlier decisions made under the same champion: the windows k-of-n counts."""
    return [e for e in entries if e["champion_version"] == champion_version and e.get("new_evidence", True)]


def _recent(spec: PipelineSpec, entries: list[dict[str, Any]], champion_version: str) -> list[dict[str, Any]]:
    """The last ``retrain.k_of_n.n`` earlier decisions of any champion, oldest first, each saying whether
    it counts for k-of-n: a promotion does not erase what the monitor saw before it."""
    kept = ("at", "run_key", "champion_version", "action", "alert", "quality", "drift_share")
    return [
        {**{k: e.get(k) for k in kept}, "counts_for_k_of_n": e["champion_version"] == champion_version}
        for e in entries[-spec.retrain.k_of_n.n :]
    ]


def _record(storage: Storage, pipeline: str, summary: dict[str, Any]) -> None:
    decision = summary["decision"]
    entry = {
        "run_key": summary["run_key"],
        "at": summary["at"],
        "champion_version": summary["champion_version"],
        "window_key": decision.get("window_key"),
        "new_evidence": decision.get("new_evidence", False),
        "alert": decision["alert"],
        "action": decision["action"],
        "why": decision["why"],
        "drift_share": summary["drift"]["share"],
        "quality": summary["quality"]["value"],
        "quality_rules": [
            {k: r[k] for k in ("metric", "value", "reference", "interval", "verdict", "severe")}
            for r in summary["quality"]["rules"]
        ],
        "feature_drift": [
            {k: c[k] for k in ("column", "stattest", "score", "threshold", "drifted")}
            for c in summary["drift"]["columns"]
        ],
        "batches": summary["window"]["batches"],
        "report_uri": summary["report_uri"],
        "summary_uri": summary["summary_uri"],
        "label_shift": _verdicts(summary["label_shift"]),
        "estimate": _verdicts(summary["estimate"]),
        "champion_vs_previous": _compact(summary.get("champion_vs_previous")),
        "challenger_vs_champion": _compact(summary.get("challenger_vs_champion")),
        "rollback": decision.get("rollback"),
    }
    stamp = summary["at"].replace(":", "").replace("-", "")
    run = summary["run_key"].rsplit("/", 1)[-1]
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in run)
    storage.write_bytes(f"{history_prefix(pipeline)}/{stamp}_{safe}.json", json.dumps(entry).encode())


def _verdicts(block: dict[str, Any]) -> dict[str, Any]:
    """What a history row shows of the label-shift or estimate block: whether it ran, and each
    signal's figures, verdict and (an estimated metric) whether it is judged."""
    kept = ("name", "value", "reference", "threshold", "interval", "shift", "p_value", "judged", "verdict")
    signals = [{k: signal[k] for k in kept if k in signal} for signal in block["signals"]]
    return {
        "enabled": block["enabled"],
        "verdict": block["verdict"],
        "decides": block.get("decides", True),
        "signals": signals,
    }


def _compact(comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a history row and the served-quality chart show of a paired comparison, and each
    metric it judged on (after a promotion its gate judged on an alert's metrics, several)."""
    if comparison is None:
        return None
    kept = ("versions", "rows", "metric", "values", "difference", "interval", "verdict", "alert_metrics")
    judged = ("metric", "fired", "tolerance", "tolerance_from", "values", "difference", "interval", "verdict")
    metrics = [{k: m[k] for k in judged} for m in comparison["metrics"]]
    return {k: comparison[k] for k in kept} | {"metrics": metrics}


def _reason(summary: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "monitor",
        "text": "; ".join(decision["triggers"]),
        "by": summary["run_key"],
        "report_uri": summary["report_uri"],
        "drift_share": summary["drift"]["share"],
        "quality": summary["quality"]["value"],
    }


def _log_to_mlflow(
    spec: PipelineSpec,
    settings: Settings,
    mlflow_client: MlflowClient,
    ctx: RunContext,
    summary: dict[str, Any],
) -> None:
    """One MLflow run per monitor run, in the ``<pipeline>-monitoring`` experiment."""
    experiment_id = registry.ensure_experiment(
        mlflow_client, f"{spec.name}-monitoring", settings.mlflow_artifact_root
    )
    decision = summary["decision"]
    run_id = registry.ensure_run(
        mlflow_client,
        experiment_id,
        ctx.run_key,
        {
            tags.PIPELINE: spec.name,
            tags.CHAMPION_VERSION: summary["champion_version"],
            tags.DECISION: decision["action"],
            tags.WHY: decision["why"][: tags.TAG_VALUE_CHARS],
            tags.REPORT_URI: summary["report_uri"],
        },
    )
    figures = {
        "drift_share": summary["drift"]["share"],
        "drifted_columns": len(summary["drift"]["drifted_columns"]),
        "current_rows": summary["window"]["rows"],
        "labeled_rows": summary["quality"]["labeled_rows"],
    }
    if summary["quality"]["value"] is not None:
        figures[f"quality_{summary['quality']['metric']}"] = summary["quality"]["value"]
    for rule in summary["quality"]["rules"]:
        mlflow_client.set_tag(run_id, f"{tags.QUALITY_VERDICT_PREFIX}{rule['metric']}", rule["verdict"])
        named = {"": rule["value"], ".reference": rule["reference"]}
        if rule["interval"] is not None:
            named |= {".low": rule["interval"][0], ".high": rule["interval"][1]}
        figures |= {f"quality.{rule['metric']}{k}": v for k, v in named.items() if v is not None}
    for block, tag in (("label_shift", tags.LABEL_SHIFT), ("estimate", tags.ESTIMATE)):
        mlflow_client.set_tag(run_id, tag, summary[block]["verdict"])
        for signal in summary[block]["signals"]:
            mlflow_client.set_tag(run_id, f"{tag}.{signal['name']}", signal["verdict"])
            figures |= _signal_figures(f"{block}.{signal['name']}", signal)
            # an estimate's interval is of its metric (a label shift's, of a difference: not logged)
            if block == "estimate" and signal.get("interval") is not None:
                low, high = signal["interval"]
                figures |= {f"estimate.{signal['name']}.low": low, f"estimate.{signal['name']}.high": high}
    for key, figure in (("champion_vs_previous", "vs_previous"), ("challenger_vs_champion", "challenger_vs")):
        compared = summary.get(key) or {}
        if compared.get("difference") is not None:
            figures[f"{figure}_difference"] = compared["difference"]
        for judged in compared.get("metrics") or []:  # every metric it judged on, where it has figures
            named = {".difference": judged["difference"]}
            if judged["interval"] is not None:
                named |= {".low": judged["interval"][0], ".high": judged["interval"][1]}
            figures |= {f"{figure}.{judged['metric']}{k}": v for k, v in named.items() if v is not None}
    for key, value in figures.items():
        mlflow_client.log_metric(run_id, key, float(value))
    mlflow_client.log_dict(run_id, summary, "monitor/summary.json")
    html = home_storage(settings).read_bytes(f"{ctx.storage_prefix}/report.html").decode()
    mlflow_client.log_text(run_id, html, "monitor/report.html")
    mlflow_client.set_terminated(run_id, "FINISHED")


def _signal_figures(name: str, signal: dict[str, Any]) -> dict[str, float]:
    """One label-shift or estimate signal as MLflow metrics: ``<name>`` and ``<name>.reference``
    (a class mix's as ``<name>.<class>`` and ``<name>.<class>.reference``), and its shift, p-value,
    drop and realised value where it has them."""
    import re

    found: dict[str, float] = {}
    for suffix, key in (("", "value"), (".reference", "reference")):
        value = signal.get(key)
        if isinstance(value, dict):  # a class's name as MLflow takes it in a metric's
            safe = {c: re.sub(r"[^\w.\- /]", "_", str(c)) for c in value}
            found |= {f"{name}.{safe[c]}{suffix}": v for c, v in value.items()}
        elif value is not None:
            found[f"{name}{suffix}"] = value
    figures = ("shift", "p_value", "drop", "realised")
    return found | {f"{name}.{k}": signal[k] for k in figures if signal.get(k) is not None}
