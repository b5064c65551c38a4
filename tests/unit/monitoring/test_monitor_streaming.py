"""The monitor reads the prediction log a column or a row group at a time: its labeled rows,
quality, paired comparisons, labeled window rows and report samples are those of the whole-frame
reading it replaced, on generated logs of every task (binary, multiclass with text labels,
regression), written with several row groups per partition."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.io.storage import home_storage
from ctloop.monitoring import monitor_run
from ctloop.monitoring.champion_watch import compare, compare_challenger
from ctloop.monitoring.drift_report import build_report
from ctloop.monitoring.drift_stats import column_drift
from ctloop.scoring import prediction_log
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, local_partitions, partition_key
from ctloop.scoring.prediction_log import read_partitions as read_whole
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.steps import RunContext
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import TIERS, multiclass_batch, regression_batch

ROWS, ROW_GROUP = 900, 128
CHAMPION, PREVIOUS, CHALLENGER = "3", "2", "4"


def _spec(task: str) -> PipelineSpec:
    raw = example_spec(f"ms{uuid.uuid4().hex[:10]}", "data")
    metric = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}[task]
    if task == "regression":
        raw["task"] = "regression"
        raw["estimator"] = {"class_path": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {}}
        raw["gates"]["rules"] = [{"metric": "rmse", "at_most": 50.0}]
        raw["gates"]["bootstrap"]["metric"] = raw["gates"]["slice_rules"]["metric"] = "rmse"
    raw["monitoring"] = {
        "window_batches": 2,
        "report_sample_rows": 500,
        "quality": {"metric": metric, "max_drop": 2.0},
        "watch": {"min_labels": 50, "resamples": 200},
    }
    return PipelineSpec.model_validate(raw)


def _outputs(task: str, rows: pd.DataFrame, rng: np.random.Generator, prefix: str) -> dict[str, Any]:
    """One model's logged outputs: label and score, and every class's probability for multiclass."""
    n = len(rows)
    if task == "regression":
        value = rows[TARGET].to_numpy() + rng.normal(0, 6, n)
        return {f"{prefix}prediction": value, f"{prefix}score": value}
    if task == "binary":
        score = np.clip(rows[TARGET].to_numpy() * 0.5 + rng.random(n) * 0.6, 0, 1)
        return {f"{prefix}prediction": (score >= 0.5).astype("int64"), f"{prefix}score": score}
    probabilities = rng.dirichlet(np.ones(3), n)
    hit = np.asarray(TIERS, dtype=object) == rows[TARGET].to_numpy()[:, None]
    probabilities = (probabilities + hit) / 2
    classes = {f"{prefix}score__{c}": probabilities[:, i] for i, c in enumerate(TIERS)}
    predicted = np.asarray(TIERS, dtype=object)[probabilities.argmax(axis=1)]
    return {f"{prefix}prediction": predicted, f"{prefix}score": probabilities.max(axis=1), **classes}


def _log(spec: PipelineSpec, task: str, settings: Settings) -> None:
    """Four batches: the first scored by the previous champion, then the champion with the previous
    one shadow-scoring, the challenger on the last two; labels for most rows of the first three."""
    storage = home_storage(settings)
    make = {"binary": generate_batch, "multiclass": multiclass_batch, "regression": regression_batch}[task]
    for index in range(4):
        rng = np.random.default_rng(index)
        batch = make(ROWS, seed=7, batch_index=index)
        batch_id = f"b{index:03d}"
        logged = batch[[*spec.columns.id, *spec.columns.features]].assign(
            **_outputs(task, batch, rng, ""),
            model_version=PREVIOUS if index == 0 else CHAMPION,
            **_outputs(task, batch, rng, "shadow_"),
            shadow_version=None if index == 0 else PREVIOUS,
            **_outputs(task, batch, rng, "challenger_"),
            challenger_version=CHALLENGER if index >= 2 else None,
            batch_id=batch_id,
            scored_at=pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(days=index),
        )
        if index < 2:  # no challenger yet: its columns are null
            logged.loc[:, [c for c in logged.columns if c.startswith("challenger_")]] = np.nan
        _write(storage, partition_key(PREDICTIONS, spec.name, batch_id), logged)
        if index < 3:
            labeled = logged.assign(**{TARGET: batch[TARGET]})[rng.random(ROWS) < 0.8]
            _write(storage, partition_key(LABELED, spec.name, batch_id), labeled)


def _write(storage: Any, key: str, frame: pd.DataFrame) -> None:
    path = storage.uri(key)
    storage.write_bytes(key, b"")  # makes the folder
    frame.to_parquet(path, index=False, row_group_size=ROW_GROUP)


def _whole(spec: PipelineSpec, settings: Settings, version: str) -> dict[str, Any]:
    """The window as the monitor read it before: every partition whole, labels merged in."""
    n = spec.monitoring.window_batches
    window = batch_ids(PREDICTIONS, spec.name, settings)[-n:]
    current = read_whole(PREDICTIONS, spec.name, window, settings)
    served = read_whole(LABELED, spec.name, batch_ids(LABELED, spec.name, settings), settings)
    served = served[served["model_version"].astype(str) == version]
    labeled = served[served["batch_id"].isin(sorted(served["batch_id"].unique())[-n:])]
    current = current.merge(labeled[[*spec.columns.id, TARGET]], on=spec.columns.id, how="left")
    key_parts = {"batches": window, "labeled": labeled.groupby("batch_id").size().to_dict()}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    return {"current": current, "labeled": labeled, "served": served, "window_key": key}


@pytest.fixture(params=["binary", "multiclass", "regression"])
def logged(request: pytest.FixtureRequest) -> tuple[PipelineSpec, Settings, str]:
    settings, task = load_settings(), request.param
    spec = _spec(task)
    _log(spec, task, settings)
    return spec, settings, task


def test_quality_and_paired_comparisons_equal_the_whole_frame_readings(
    logged: tuple[PipelineSpec, Settings, str],
) -> None:
    spec, settings, _ = logged
    window = monitor_run.current_window(spec, settings, CHAMPION)
    whole = _whole(spec, settings, CHAMPION)

    assert window["window_key"] == whole["window_key"]
    assert len(window["labeled"]) == len(whole["labeled"]) > 0
    references = {f"holdout_{r.metric}": 0.5 for r in spec.monitoring.quality.rules}  # rules judged too
    streamed = monitor_run._quality_summary(spec, window["labeled"], references)
    assert streamed == monitor_run._quality_summary(spec, whole["labeled"], references)
    assert monitor_run.quality(spec, window["labeled"]) is not None
    watched = compare(spec, window["served"], CHAMPION, PREVIOUS)
    assert watched == compare(spec, whole["served"], CHAMPION, PREVIOUS)
    assert watched.values is not None  # enough paired rows: a real comparison, not "undecided"
    challenger = compare_challenger(spec, window["served"], CHAMPION, CHALLENGER)
    assert challenger == compare_challenger(spec, whole["served"], CHAMPION, CHALLENGER)
    assert challenger.values is not None
    # only the columns quality reads: no feature was loaded
    assert not set(window["served"].columns) & set(spec.columns.features)


def test_the_labeled_window_rows_are_those_of_the_whole_window_join(
    logged: tuple[PipelineSpec, Settings, str],
) -> None:
    spec, settings, _ = logged
    window = monitor_run.current_window(spec, settings, CHAMPION)
    current = _whole(spec, settings, CHAMPION)["current"]
    expected = current[current[TARGET].notna() & current["prediction"].notna()]

    with local_partitions(PREDICTIONS, spec.name, window["batches"], settings) as files:
        found = monitor_run._labeled_current(spec, files, window["labeled"])

    assert found is not None
    assert len(found) > 0
    expected = expected[[TARGET, "prediction", "score"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(found, expected, check_dtype=False)
    assert (found[TARGET].to_numpy() == expected[TARGET].to_numpy()).all()


def test_the_report_from_partition_samples_is_the_report_of_the_whole_frames(
    logged: tuple[PipelineSpec, Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same samples, tests, counts and classes, so the same Evidently summary; the reference and
    the window are never read whole."""
    spec, settings, _ = logged
    window = monitor_run.current_window(spec, settings, CHAMPION)
    whole = _whole(spec, settings, CHAMPION)
    # the reference: any scored frame with labels will do
    logged_rows = read_whole(LABELED, spec.name, ["b000", "b001"], settings)
    reference = logged_rows[[*spec.columns.features, TARGET, "prediction", "score"]]
    reference_key = f"monitor/{spec.name}/reference/v{CHAMPION}.parquet"
    _write(home_storage(settings), reference_key, reference)
    ctx = RunContext(dag_id=f"{spec.name}__monitor", run_id="manual__1", reason="test")
    prediction_kinds = monitor_run.prediction_columns(spec.task)
    measured = {
        "reference": {"rows": len(reference)},
        "window": {"rows": len(whole["current"])},
        "drift": {
            "columns": [
                c.as_dict()
                for c in column_drift(
                    reference, whole["current"], spec.columns.numeric, spec.columns.categorical
                )
            ]
        },
        "prediction_drift": [
            c.as_dict() for c in column_drift(reference, whole["current"], *prediction_kinds)
        ],
    }
    whole_reads: list[list[str] | None] = []  # the columns of each read of whole files
    real_read, real_column = prediction_log.read_files, monitor_run.iter_column
    columns_read: list[str] = []  # the columns read alone, a row group at a time

    def read_files(paths: list[Any], columns: list[str] | None = None) -> pd.DataFrame:
        whole_reads.append(columns)
        return real_read(paths, columns)

    def iter_column(paths: list[Any], column: str) -> Any:
        columns_read.append(column)
        return real_column(paths, column)

    monkeypatch.setattr(prediction_log, "read_files", read_files)
    monkeypatch.setattr(monitor_run, "iter_column", iter_column)

    storage = home_storage(settings)
    with (
        local_partitions(PREDICTIONS, spec.name, window["batches"], settings) as current,
        storage.local_file(reference_key) as reference_file,
    ):
        sides = monitor_run.Sides(reference_file, current)
        streamed = monitor_run._write_report(spec, settings, ctx, sides, window, measured)["evidently"]

    _, expected = build_report(
        reference,
        whole["current"],
        numeric=spec.columns.numeric,
        categorical=spec.columns.categorical,
        target=TARGET,
        task=spec.task,
        sample_rows=spec.monitoring.report_sample_rows,
        drift_share=spec.monitoring.drift.share,
        title=streamed["title"],
    )
    assert streamed == expected
    assert streamed["sample"]["current"] == {"rows": 2 * ROWS, "sampled": 500}
    assert streamed["quality"]["computed"] is True
    assert columns_read  # whole columns are read one at a time, a row group at a time
    assert whole_reads == []  # nothing read whole, not even one column; samples by row group
