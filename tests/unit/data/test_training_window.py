"""What a retrain trains on: the source files plus labeled production batches, in the spec's window."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ctloop.data.training_window import read_training_data
from ctloop.devtools.example_data import generate_batch, write_batches
from ctloop.errors import DataReadError
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import LABELED, partition_key
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec

SOURCE_ROWS, LABELED_ROWS = 50, 30
LOG_ONLY = ["prediction", "score", "model_version", "batch_id", "scored_at"]


@pytest.fixture
def settings():
    return load_settings()


@pytest.fixture
def source(tmp_path) -> list[Path]:
    """Three training files, one per day from 2026-01-01."""
    return write_batches(tmp_path / "training", range(3), rows=SOURCE_ROWS)


def _spec(source: list[Path], **window) -> PipelineSpec:
    """A spec over ``source`` with a unique name, so its labeled batches are its own."""
    raw = example_spec(f"td{uuid.uuid4().hex[:10]}", str(source[0].parent))
    raw["retrain"]["data"] = window or {"window": "all"}
    return PipelineSpec.model_validate(raw)


def _label(
    settings, spec: PipelineSpec, batch_id: str, day: int, *, typed_time: bool = False, drop=()
) -> str:
    """Write a labeled partition as the label join does: the logged columns (the timestamp as the
    scorer read it from CSV, or typed as from Parquet), the prediction log's own columns, and the
    target last; returns its URI."""
    frame = generate_batch(LABELED_ROWS, seed=11, batch_index=day)
    if not typed_time:
        frame["event_time"] = frame["event_time"].astype(str)
    target = frame.pop("churned")
    frame["prediction"], frame["score"], frame["model_version"] = 0, 0.25, "1"
    frame["batch_id"], frame["scored_at"] = batch_id, pd.Timestamp("2026-02-01", tz="UTC")
    frame["churned"] = target
    key = partition_key(LABELED, spec.name, batch_id)
    return home_storage(settings).write_bytes(key, to_parquet_bytes(frame.drop(columns=list(drop))))


def _source_columns(source: list[Path]) -> list[str]:
    return list(pd.read_csv(source[0], nrows=1).columns)


def test_all_is_the_source_files_then_the_labeled_batches(settings, source):
    spec = _spec(source)
    labeled = [_label(settings, spec, "b-2026-01-11", 10), _label(settings, spec, "b-2026-01-12", 11)]
    frame, uris = read_training_data(spec, settings)
    assert uris == [*map(str, source), *labeled]
    assert len(frame) == 3 * SOURCE_ROWS + 2 * LABELED_ROWS
    assert list(frame.columns) == _source_columns(source)
    assert not set(LOG_ONLY) & set(frame.columns)
    assert frame.index.tolist() == list(range(len(frame)))
    tail = frame.iloc[-2 * LABELED_ROWS :]
    assert tail["customer_id"].str.startswith(("c0110010", "c0110011")).all()
    assert tail["churned"].notna().all()


def test_without_labeled_batches_only_the_source_is_read(settings, source):
    frame, uris = read_training_data(_spec(source), settings)
    assert uris == [str(p) for p in source]
    assert len(frame) == 3 * SOURCE_ROWS


def test_labeled_batches_come_in_batch_id_order(settings, source):
    spec = _spec(source)
    later = _label(settings, spec, "b-2026-01-12", 11)
    earlier = _label(settings, spec, "b-2026-01-11", 10)
    _, uris = read_training_data(spec, settings)
    assert uris[-2:] == [earlier, later]


@pytest.mark.parametrize(
    ("last", "sources", "labeled"), [(1, 0, 1), (2, 0, 2), (3, 1, 2), (4, 2, 2), (9, 3, 2)]
)
def test_batches_window_keeps_the_last_n_oldest_first(settings, source, last, sources, labeled):
    spec = _spec(source, window="batches", last=last)
    labeled_uris = [_label(settings, spec, "b-2026-01-11", 10), _label(settings, spec, "b-2026-01-12", 11)]
    frame, uris = read_training_data(spec, settings)
    assert uris == [*map(str, source[3 - sources :]), *labeled_uris[2 - labeled :]]
    assert len(frame) == sources * SOURCE_ROWS + labeled * LABELED_ROWS
    days = pd.to_datetime(frame["event_time"]).dt.day.drop_duplicates().tolist()
    assert days == [1, 2, 3][3 - sources :] + [11, 12][2 - labeled :]
    assert list(frame.columns) == _source_columns(source)


def test_batches_window_over_source_files_alone(settings, source):
    frame, uris = read_training_data(_spec(source, window="batches", last=2), settings)
    assert uris == [str(p) for p in source[1:]]
    assert pd.to_datetime(frame["event_time"]).dt.day.drop_duplicates().tolist() == [2, 3]


@pytest.mark.parametrize("typed_time", [False, True])
def test_days_window_keeps_the_rows_of_the_last_n_days(settings, source, typed_time):
    spec = _spec(source, window="days", last=2)
    _label(settings, spec, "b-2026-01-11", 10, typed_time=typed_time)
    _label(settings, spec, "b-2026-01-12", 11, typed_time=typed_time)
    frame, _ = read_training_data(spec, settings)
    # The newest row is on 2026-01-12, so two days back reaches into 2026-01-10: both labeled
    # batches (11th and 12th) are kept whole, the source files (1st to 3rd) are left out.
    assert len(frame) == 2 * LABELED_ROWS
    assert sorted(pd.to_datetime(frame["event_time"]).dt.day.unique()) == [11, 12]
    assert frame.index.tolist() == list(range(len(frame)))


def test_days_window_cuts_inside_a_day(settings, source):
    spec = _spec(source, window="days", last=1)
    frame, _ = read_training_data(spec, settings)
    everything, _ = read_training_data(_spec(source), settings)
    times = pd.to_datetime(everything["event_time"])
    cutoff = times.max() - timedelta(days=1)
    assert 0 < (times >= cutoff).sum() < len(everything)
    assert len(frame) == (times >= cutoff).sum()
    assert (pd.to_datetime(frame["event_time"]) >= cutoff).all()
    assert set(frame["customer_id"]) == set(everything.loc[times >= cutoff, "customer_id"])


def test_a_labeled_batch_lacking_a_training_column_is_named(settings, source):
    spec = _spec(source)
    _label(settings, spec, "b-2026-01-11", 10)
    broken = _label(settings, spec, "b-2026-01-12", 11, drop=["monthly_charges"])
    with pytest.raises(DataReadError) as raised:
        read_training_data(spec, settings)
    assert str(raised.value).startswith(f"{broken}: ")
    assert "monthly_charges" in str(raised.value)
    assert "b-2026-01-11" not in str(raised.value)
