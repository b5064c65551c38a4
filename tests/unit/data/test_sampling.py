"""``data.max_rows``: a seeded sample, stratified by class, read one batch at a time and snapshotted."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ctloop.data.sampling import RARE_CLASS_ROWS, sample_batches
from ctloop.data.snapshots import load_snapshot, take_snapshot
from ctloop.data.training_window import read_training_data
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def _frame(labels: list[object], seed: int = 1) -> pd.DataFrame:
    """One row per label, with an id, a numeric and a categorical feature drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    return pd.DataFrame(
        {
            "row_id": [f"r{seed}-{i:06d}" for i in range(n)],
            "x": rng.normal(size=n).round(6),
            "color": rng.choice(["red", "green", "blue"], size=n),
            "label": labels,
        }
    )


def _write(folder: Path, frame: pd.DataFrame, files: int) -> None:
    """``frame`` split into ``files`` CSV files of consecutive rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_csv(folder / f"batch-{index:04d}.csv", index=False)


def _spec(folder: Path, max_rows: int | None, *, task: str = "classification", seed: int = 0) -> PipelineSpec:
    regression = task == "regression"
    return PipelineSpec.model_validate(
        {
            "name": f"sa{uuid.uuid4().hex[:10]}",
            "task": task,
            "data": {"uri": str(folder), "format": "csv", "max_rows": max_rows, "sample_seed": seed},
            "columns": {"target": "label", "id": ["row_id"], "numeric": ["x"], "categorical": ["color"]},
            "expectation_suite": "s",
            "estimator": {"class_path": "sklearn.linear_model.LogisticRegression"},
            "monitoring": {"quality": {"metric": "rmse" if regression else "roc_auc"}},
        }
    )


def _classes(counts: dict[str, int]) -> list[object]:
    """Labels with the given counts, interleaved by a fixed shuffle."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    return list(np.random.default_rng(3).permutation(np.array(labels, dtype=object)))


def test_the_same_seed_samples_the_same_rows_and_snapshots_the_same_sha256(tmp_path, settings):
    _write(tmp_path / "d", _frame(_classes({"low": 500, "mid": 300, "high": 200})), files=3)
    spec = _spec(tmp_path / "d", 120)

    first, again = take_snapshot(spec, settings), take_snapshot(spec, settings)
    other_seed = take_snapshot(_spec(tmp_path / "d", 120, seed=1), settings)

    assert first["rows"] == 120
    assert first["sha256"] == again["sha256"]
    assert again["created"] is False
    assert other_seed["sha256"] != first["sha256"]
    stored = load_snapshot(first["key"], settings)
    assert stored.equals(read_training_data(spec, settings).frame)  # the snapshot is the sample
    assert sum(first["source_rows"]) == 120
    assert first["sample"] is not None
    assert (first["sample"].rows_before, first["sample"].rows_after) == (1000, 120)


def test_the_sample_does_not_depend_on_how_the_rows_are_split_into_files(tmp_path, settings):
    frame = _frame(_classes({"low": 500, "mid": 300, "high": 200}))
    _write(tmp_path / "one", frame, files=1)
    _write(tmp_path / "five", frame, files=5)

    whole = read_training_data(_spec(tmp_path / "one", 90), settings).frame
    in_five = read_training_data(_spec(tmp_path / "five", 90), settings)

    assert set(in_five.frame["row_id"]) == set(whole["row_id"])
    assert in_five.source_rows == [
        int((in_five.frame["row_id"].isin(p["row_id"])).sum()) for p in _parts(frame)
    ]


def _parts(frame: pd.DataFrame) -> list[pd.DataFrame]:
    return [frame.iloc[p] for p in np.array_split(np.arange(len(frame)), 5)]


def test_each_class_keeps_its_share_within_one_row(tmp_path, settings):
    counts = {"low": 613, "mid": 271, "high": 116}
    _write(tmp_path / "d", _frame(_classes(counts)), files=4)
    max_rows = 101

    data = read_training_data(_spec(tmp_path / "d", max_rows), settings)

    assert len(data.frame) == max_rows
    kept = data.frame["label"].value_counts()
    for label, n in counts.items():
        assert abs(kept[label] - max_rows * n / 1000) < 1, label
    assert data.sample is not None
    assert data.sample.strata == {
        "high": (116, kept["high"]),
        "low": (613, kept["low"]),
        "mid": (271, kept["mid"]),
    }
    assert "stratified by label" in data.sample.note()


def test_a_class_with_three_rows_keeps_them_all(tmp_path, settings):
    _write(tmp_path / "d", _frame(_classes({"common": 1500, "usual": 497, "rare": 3})), files=2)

    data = read_training_data(_spec(tmp_path / "d", 100), settings)

    kept = data.frame["label"].value_counts()
    assert kept["rare"] == 3  # its share, 0.15 rows, would have lost it
    assert len(data.frame) == 100
    assert abs(kept["common"] - 97 * 1500 / 1997) < 1  # the floor's rows come out of the others' shares


def test_a_class_with_more_rows_than_the_floor_keeps_the_floor():
    labels = _classes({"big": 5000, "small": 40})
    spec = _spec(Path("unused"), 200)

    (batch,), _ = sample_batches([("mem://b", _frame(labels))], spec)

    assert batch[1]["label"].value_counts()["small"] == RARE_CLASS_ROWS  # 1.6 rows by its share


def test_regression_samples_plain_seeded_rows(tmp_path, settings):
    frame = _frame(list(np.random.default_rng(5).normal(size=800)))
    _write(tmp_path / "d", frame, files=2)
    spec = _spec(tmp_path / "d", 150, task="regression")

    data = read_training_data(spec, settings)

    assert len(data.frame) == 150
    assert data.frame["row_id"].is_unique
    assert set(data.frame["row_id"]) <= set(frame["row_id"])
    assert data.frame.equals(read_training_data(spec, settings).frame)
    assert data.sample is not None
    assert data.sample.stratified_by is None
    assert data.sample.strata == {}
    other = read_training_data(_spec(tmp_path / "d", 150, task="regression", seed=9), settings)
    assert set(other.frame["row_id"]) != set(data.frame["row_id"])


def test_data_within_max_rows_is_all_read_and_said_so(tmp_path, settings):
    frame = _frame(_classes({"a": 60, "b": 40}))
    _write(tmp_path / "d", frame, files=2)

    data = read_training_data(_spec(tmp_path / "d", 500), settings)
    plain = read_training_data(_spec(tmp_path / "d", None), settings)

    assert data.frame.equals(plain.frame)
    assert plain.sample is None
    assert data.sample is not None
    assert data.sample.note() == "all 100 rows (data.max_rows 500 not exceeded)"


def test_a_window_of_batches_is_sampled_after_it_is_cut(tmp_path, settings):
    _write(tmp_path / "d", _frame(_classes({"a": 600, "b": 600})), files=4)
    raw = _spec(tmp_path / "d", 100).model_dump()
    raw["retrain"]["data"] = {"window": "batches", "last": 2}

    data = read_training_data(PipelineSpec.model_validate(raw), settings)

    assert [uri.rsplit("/", 1)[1] for uri in data.sources] == ["batch-0002.csv", "batch-0003.csv"]
    assert data.sample is not None
    assert data.sample.rows_before == 600
    assert len(data.frame) == 100


def test_max_rows_below_min_rows_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="max_rows 10 is below min_rows 50"):
        _spec(tmp_path, 10)
