"""Joining labels into a prediction partition a row group at a time: the rows and values of the
inner join of the whole partition, for every task's labels (0/1, text classes, numbers); the same
bytes when joined again; and the labeled partition replaced whole or not at all."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.devtools.example_data import ID_COLUMN, TARGET, generate_batch, write_batches
from ctloop.io.storage import home_storage
from ctloop.scoring import late_labels
from ctloop.scoring.late_labels import join_labels, join_partition
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, partition_key, read_partitions
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import multiclass_batch, regression_batch

ROWS, ROW_GROUP = 1000, 128
BATCHES = {"binary": generate_batch, "multiclass": multiclass_batch, "regression": regression_batch}


def _partition(task: str, path: Path) -> pd.DataFrame:
    """A logged batch (with a nullable column) written in row groups; returns it with its labels."""
    batch = BATCHES[task](ROWS, seed=11)
    logged = batch.drop(columns=[TARGET]).assign(
        prediction=batch[TARGET].to_numpy(),
        score=np.linspace(0, 1, ROWS),
        model_version="1",
        scored_at=pd.Timestamp("2026-02-01", tz="UTC"),
        shadow_score=np.where(np.arange(ROWS) % 3 == 0, np.nan, 0.5),
    )
    logged.to_parquet(path, index=False, row_group_size=ROW_GROUP)
    return batch


@pytest.mark.parametrize("task", list(BATCHES))
def test_a_row_group_join_is_the_whole_partitions_inner_join(task: str, tmp_path: Path) -> None:
    scored = tmp_path / "scored.parquet"
    batch = _partition(task, scored)
    rng = np.random.default_rng(1)
    labels = batch[[ID_COLUMN, TARGET]].iloc[rng.permutation(ROWS)[: ROWS * 2 // 3]]  # shuffled subset
    labels = pd.concat([labels, pd.DataFrame({ID_COLUMN: ["not-scored"], TARGET: [labels[TARGET].iloc[0]]})])

    count = join_partition(scored, labels, [ID_COLUMN], TARGET, tmp_path / "joined.parquet")

    whole = pd.read_parquet(scored).merge(labels, on=[ID_COLUMN], how="inner", validate="many_to_one")
    joined = pd.read_parquet(tmp_path / "joined.parquet")
    assert count == len(whole) == ROWS * 2 // 3
    pd.testing.assert_frame_equal(joined, whole)
    join_partition(scored, labels, [ID_COLUMN], TARGET, tmp_path / "again.parquet")
    assert (tmp_path / "again.parquet").read_bytes() == (tmp_path / "joined.parquet").read_bytes()


def test_a_partition_without_labelled_rows_is_written_empty_with_its_columns(tmp_path: Path) -> None:
    scored = tmp_path / "scored.parquet"
    _partition("multiclass", scored)
    labels = pd.DataFrame({ID_COLUMN: ["nobody"], TARGET: ["low"]})

    assert join_partition(scored, labels, [ID_COLUMN], TARGET, tmp_path / "joined.parquet") == 0

    joined = pd.read_parquet(tmp_path / "joined.parquet")
    assert joined.empty
    assert list(joined.columns) == [*pd.read_parquet(scored).columns, TARGET]


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def _spec(tmp_path: Path) -> PipelineSpec:
    write_batches(tmp_path / "training", range(1), rows=40)
    raw = example_spec(
        f"lc{uuid.uuid4().hex[:10]}",
        str(tmp_path / "training"),
        scoring={"incoming_uri": str(tmp_path / "incoming"), "labels_uri": str(tmp_path / "labels")},
    )
    return PipelineSpec.model_validate(raw)


def test_the_labeled_partition_is_published_whole_or_kept(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join that fails half-way leaves the earlier labeled partition as it was; one that succeeds
    publishes the new one, with every label, and a join without news rewrites nothing."""
    spec = _spec(tmp_path)
    storage = home_storage(settings)
    key = partition_key(PREDICTIONS, spec.name, "b001")
    storage.write_bytes(key, b"")
    batch = _partition("binary", Path(storage.uri(key)))
    (tmp_path / "labels").mkdir()
    batch[[ID_COLUMN, TARGET]].iloc[:300].to_csv(tmp_path / "labels" / "first.csv", index=False)
    assert join_labels(spec, settings)["batches_updated"] == ["b001"]
    labeled_key = partition_key(LABELED, spec.name, "b001")
    before = storage.read_bytes(labeled_key)

    batch[[ID_COLUMN, TARGET]].iloc[300:].to_csv(tmp_path / "labels" / "second.csv", index=False)

    def fail_half_way(scored: Path, labels: pd.DataFrame, ids: list[str], target: str, out: Path) -> int:
        out.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(late_labels, "join_partition", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        join_labels(spec, settings)
    assert storage.read_bytes(labeled_key) == before
    monkeypatch.undo()

    assert join_labels(spec, settings)["labeled_rows"] == ROWS
    labeled = read_partitions(LABELED, spec.name, ["b001"], settings)
    assert labeled[TARGET].tolist() == batch[TARGET].tolist()
    assert join_labels(spec, settings)["batches_updated"] == []
