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


def _spec(source: list[Path], recent: dict | None = None, **window) -> PipelineSpec:
    """A spec over ``source`` with a unique name, so its labeled batches are its own; ``recent``
    sets ``gates.recent_holdout`` (by default its 200 rows exceed what these batches hold)."""
    raw = example_spec(f"td{uuid.uuid4().hex[:10]}", str(source[0].parent))
    raw["retrain"]["data"] = window or {"window": "all"}
    raw["gates"]["recent_holdout"] = recent or {}
    return PipelineSpec.model_validate(raw)


def _read(spec: PipelineSpec, settings) -> tuple[pd.DataFrame, list[str]]:
    """The training frame and its sources; below its minimum rows nothing is set aside."""
    data = read_training_data(spec, settings)
    assert data.recent is None
    assert data.recent_sources == []
    assert data.recent_note.startswith("not used: ")
    return data.frame, data.sources


def _label(
    settings,
    spec: PipelineSpec,
    batch_id: str,
    day: int,
    *,
    typed_time: bool = False,
    drop=(),
    rows: int = LABELED_ROWS,
    one_class: bool = False,
) -> str:
    """Write a labeled partition as the label join does: the logged columns (the timestamp as the
    scorer read it from CSV, or typed as from Parquet), the prediction log's own columns, and the
    target last; returns its URI."""
    frame = generate_batch(rows, seed=11, batch_index=day)
    if one_class:
        frame["churned"] = 0
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
    frame, uris = _read(spec, settings)
    assert uris == [*map(str, source), *labeled]
    assert len(frame) == 3 * SOURCE_ROWS + 2 * LABELED_ROWS
    assert list(frame.columns) == _source_columns(source)
    assert not set(LOG_ONLY) & set(frame.columns)
    assert frame.index.tolist() == list(range(len(frame)))
    tail = frame.iloc[-2 * LABELED_ROWS :]
    assert tail["customer_id"].str.startswith(("c0110010", "c0110011")).all()
    assert tail["churned"].notna().all()


def test_without_labeled_batches_only_the_source_is_read(settings, source):
    frame, uris = _read(_spec(source), settings)
    assert uris == [str(p) for p in source]
    assert len(frame) == 3 * SOURCE_ROWS


def test_labeled_batches_come_in_batch_id_order(settings, source):
    spec = _spec(source)
    later = _label(settings, spec, "b-2026-01-12", 11)
    earlier = _label(settings, spec, "b-2026-01-11", 10)
    _, uris = _read(spec, settings)
    assert uris[-2:] == [earlier, later]


@pytest.mark.parametrize(
    ("last", "sources", "labeled"), [(1, 0, 1), (2, 0, 2), (3, 1, 2), (4, 2, 2), (9, 3, 2)]
)
def test_batches_window_keeps_the_last_n_oldest_first(settings, source, last, sources, labeled):
    spec = _spec(source, window="batches", last=last)
    labeled_uris = [_label(settings, spec, "b-2026-01-11", 10), _label(settings, spec, "b-2026-01-12", 11)]
    frame, uris = _read(spec, settings)
    assert uris == [*map(str, source[3 - sources :]), *labeled_uris[2 - labeled :]]
    assert len(frame) == sources * SOURCE_ROWS + labeled * LABELED_ROWS
    days = pd.to_datetime(frame["event_time"]).dt.day.drop_duplicates().tolist()
    assert days == [1, 2, 3][3 - sources :] + [11, 12][2 - labeled :]
    assert list(frame.columns) == _source_columns(source)


def test_batches_window_over_source_files_alone(settings, source):
    frame, uris = _read(_spec(source, window="batches", last=2), settings)
    assert uris == [str(p) for p in source[1:]]
    assert pd.to_datetime(frame["event_time"]).dt.day.drop_duplicates().tolist() == [2, 3]


@pytest.mark.parametrize("typed_time", [False, True])
def test_days_window_keeps_the_rows_of_the_last_n_days(settings, source, typed_time):
    spec = _spec(source, window="days", last=2)
    _label(settings, spec, "b-2026-01-11", 10, typed_time=typed_time)
    _label(settings, spec, "b-2026-01-12", 11, typed_time=typed_time)
    frame, _ = _read(spec, settings)
    # The newest row is on 2026-01-12, so two days back reaches into 2026-01-10: both labeled
    # batches (11th and 12th) are kept whole, the source files (1st to 3rd) are left out.
    assert len(frame) == 2 * LABELED_ROWS
    assert sorted(pd.to_datetime(frame["event_time"]).dt.day.unique()) == [11, 12]
    assert frame.index.tolist() == list(range(len(frame)))


def test_days_window_cuts_inside_a_day(settings, source):
    spec = _spec(source, window="days", last=1)
    frame, _ = _read(spec, settings)
    everything, _ = _read(_spec(source), settings)
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


def test_without_labeled_batches_there_is_no_recent_holdout_and_it_says_so(settings, source):
    data = read_training_data(_spec(source, recent={"min_rows": 1}), settings)
    assert data.recent is None
    assert data.recent_note == "not used: no labeled production batch yet"
    assert data.sources == [str(p) for p in source]


@pytest.mark.parametrize("batches", [1, 2])
def test_the_most_recent_labeled_batches_are_set_aside_from_training(settings, source, batches):
    spec = _spec(source, recent={"batches": batches, "min_rows": LABELED_ROWS})
    uris = [_label(settings, spec, f"b-2026-01-1{day}", 9 + day) for day in (1, 2, 3)]
    data = read_training_data(spec, settings)
    assert data.recent_sources == uris[3 - batches :]
    assert data.sources == [*map(str, source), *uris[: 3 - batches]]
    assert data.recent is not None
    assert len(data.recent) == batches * LABELED_ROWS
    assert len(data.frame) == 3 * SOURCE_ROWS + (3 - batches) * LABELED_ROWS
    assert not set(data.recent["customer_id"]) & set(data.frame["customer_id"])
    assert list(data.recent.columns) == list(data.frame.columns)
    recent_days = sorted(pd.to_datetime(data.recent["event_time"]).dt.day.unique())
    assert recent_days == [11, 12, 13][3 - batches :]
    names = ", ".join(f"b-2026-01-1{day}" for day in (1, 2, 3)[3 - batches :])
    held = f"the last {batches} labeled batch(es) hold {batches * LABELED_ROWS} rows"
    assert data.recent_note == f"{held}, set aside from training: {names}"


def test_the_window_applies_to_what_is_left_after_the_recent_holdout(settings, source):
    spec = _spec(source, recent={"min_rows": LABELED_ROWS}, window="batches", last=2)
    uris = [_label(settings, spec, f"b-2026-01-1{day}", 9 + day) for day in (1, 2)]
    data = read_training_data(spec, settings)
    assert data.recent_sources == uris[1:]
    assert data.sources == [str(source[-1]), uris[0]]  # still two batches to train on


def test_too_few_recent_rows_are_trained_on_and_the_reason_is_given(settings, source):
    spec = _spec(source, recent={"batches": 2, "min_rows": 2 * LABELED_ROWS + 1})
    uris = [_label(settings, spec, f"b-2026-01-1{day}", 9 + day) for day in (1, 2)]
    data = read_training_data(spec, settings)
    assert data.recent is None
    assert data.sources == [*map(str, source), *uris]
    assert data.recent_note == (
        f"not used: the last 2 labeled batch(es) hold {2 * LABELED_ROWS} rows"
        f" < gates.recent_holdout.min_rows {2 * LABELED_ROWS + 1}; trained on"
    )


def test_recent_rows_of_one_class_are_trained_on_and_the_reason_is_given(settings, source):
    spec = _spec(source, recent={"min_rows": LABELED_ROWS})
    uri = _label(settings, spec, "b-2026-01-11", 10, one_class=True)
    data = read_training_data(spec, settings)
    assert data.recent is None
    assert data.sources[-1] == uri
    assert data.recent_note.endswith("of one class only; trained on")


@pytest.mark.parametrize(
    ("window", "rows", "labeled"),
    [
        ({"window": "all"}, [SOURCE_ROWS] * 3 + [LABELED_ROWS] * 2, 2),
        ({"window": "batches", "last": 3}, [SOURCE_ROWS] + [LABELED_ROWS] * 2, 2),
        ({"window": "batches", "last": 1}, [LABELED_ROWS], 1),
        ({"window": "days", "last": 2}, [0, 0, 0, LABELED_ROWS, LABELED_ROWS], 2),
    ],
)
def test_the_rows_of_each_source_are_counted_so_a_window_can_be_cut_later(
    settings, source, window, rows, labeled
):
    spec = _spec(source, **window)
    _label(settings, spec, "b-2026-01-11", 10)
    _label(settings, spec, "b-2026-01-12", 11)
    data = read_training_data(spec, settings)
    assert data.source_rows == rows
    assert data.labeled_sources == labeled
    assert sum(data.source_rows) == len(data.frame)
    days = pd.to_datetime(data.frame["event_time"]).dt.day
    assert (days.iloc[len(data.frame) - LABELED_ROWS * labeled :] >= 11).all()  # the labeled rows are last


def test_the_recent_holdout_is_not_counted_among_the_labeled_sources(settings, source):
    spec = _spec(source, recent={"min_rows": 1, "fraction": 1.0})
    _label(settings, spec, "b-2026-01-11", 10)
    _label(settings, spec, "b-2026-01-12", 11)
    data = read_training_data(spec, settings)
    assert data.recent is not None
    assert (data.source_rows, data.labeled_sources) == ([SOURCE_ROWS] * 3 + [LABELED_ROWS], 1)


def test_a_share_of_the_newest_batch_is_held_out_and_the_rest_of_it_trained_on(settings, source):
    """Right after a change the newest labeled batch is the only one that shows it: half of its
    rows judge the candidates, the other half is the newest labeled source they train on."""
    spec = _spec(source, recent={"min_rows": 5, "fraction": 0.5})
    older = _label(settings, spec, "b-2026-01-11", 10)
    newest = _label(settings, spec, "b-2026-01-12", 11)

    data = read_training_data(spec, settings)

    assert data.recent is not None
    assert data.recent_sources == [newest]
    held = len(data.recent)
    assert 5 <= held < LABELED_ROWS
    assert data.sources == [*map(str, source), older, newest]
    assert data.source_rows == [SOURCE_ROWS] * 3 + [LABELED_ROWS, LABELED_ROWS - held]
    assert data.labeled_sources == 2
    assert not set(data.recent["customer_id"]) & set(data.frame["customer_id"])
    assert data.recent_note == (
        f"{held} of the {LABELED_ROWS} rows of the last 1 labeled batch(es) (gates.recent_holdout.fraction"
        " 0.5), set aside from training: b-2026-01-12; the rest is trained on"
    )
    again = read_training_data(spec, settings)  # the same rows on the same side, run after run
    assert again.recent is not None
    assert sorted(again.recent["customer_id"]) == sorted(data.recent["customer_id"])


def test_a_share_too_small_to_judge_on_holds_the_whole_batch_out(settings, source):
    spec = _spec(source, recent={"min_rows": LABELED_ROWS, "fraction": 0.5})
    _label(settings, spec, "b-2026-01-11", 10)
    newest = _label(settings, spec, "b-2026-01-12", 11)
    data = read_training_data(spec, settings)
    assert data.recent is not None
    assert (len(data.recent), data.recent_sources) == (LABELED_ROWS, [newest])
    assert data.labeled_sources == 1
