"""Late labels joined to the prediction log: each label counted once, the latest file winning, labels
of rows not scored yet kept waiting, and a label file without its columns refused by name."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest

from ctloop.devtools.example_data import ID_COLUMN, TARGET, generate_batch
from ctloop.errors import LabelError
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.scoring.late_labels import SAMPLE, join_labels, read_labels
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, partition_key
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec

ROWS = 20


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def spec(tmp_path: Path) -> PipelineSpec:
    """A pipeline of its own (its prediction log starts empty) reading labels from ``tmp_path/labels``."""
    raw = example_spec(
        f"ll{uuid.uuid4().hex[:10]}",
        str(tmp_path / "training"),
        scoring={"incoming_uri": str(tmp_path / "incoming"), "labels_uri": str(tmp_path / "labels")},
    )
    return PipelineSpec.model_validate(raw)


def _batch(index: int) -> pd.DataFrame:
    """Production batch ``index`` with its labels; ids are unique per index."""
    return generate_batch(ROWS, seed=3, batch_index=index)


def _score(spec: PipelineSpec, settings: Settings, batch_id: str, batch: pd.DataFrame) -> None:
    """Write the batch's partition of the prediction log, as scoring does (inputs without the label)."""
    logged = batch.drop(columns=[TARGET])
    logged["prediction"], logged["score"], logged["model_version"] = 0, 0.3, "1"
    logged["batch_id"], logged["scored_at"] = batch_id, pd.Timestamp("2026-02-01", tz="UTC")
    home_storage(settings).write_bytes(
        partition_key(PREDICTIONS, spec.name, batch_id), to_parquet_bytes(logged)
    )


def _deliver(spec: PipelineSpec, name: str, labels: pd.DataFrame) -> Path:
    """A label file in the pipeline's labels area."""
    folder = Path(spec.labels_uri)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    labels.to_csv(path, index=False)
    return path


def _labeled(spec: PipelineSpec, settings: Settings, batch_id: str) -> pd.DataFrame:
    return from_parquet_bytes(home_storage(settings).read_bytes(partition_key(LABELED, spec.name, batch_id)))


def test_labels_of_scored_rows_land_in_the_labeled_partition_of_their_batch(
    spec: PipelineSpec, settings: Settings
) -> None:
    first, second = _batch(0), _batch(1)
    _score(spec, settings, "b0", first)
    _score(spec, settings, "b1", second)
    _deliver(spec, "labels-0001.csv", first[[ID_COLUMN, TARGET]].head(12))

    summary = join_labels(spec, settings)

    assert summary["labeled_rows"] == 12
    assert summary["batches_updated"] == ["b0"]
    assert batch_ids(LABELED, spec.name, settings) == ["b0"]
    labeled = _labeled(spec, settings, "b0")
    assert labeled[ID_COLUMN].tolist() == first[ID_COLUMN].head(12).tolist()
    assert labeled[TARGET].tolist() == first[TARGET].head(12).tolist()
    assert labeled["prediction"].tolist() == [0] * 12
    assert summary["waiting_for_unknown_ids"] == 0


def test_a_label_file_delivered_again_is_counted_once(spec: PipelineSpec, settings: Settings) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    original = _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]])
    shutil.copy(original, original.with_name("labels-0001-again.csv"))

    summary = join_labels(spec, settings)

    assert summary["files"] == 2
    assert summary["label_rows"] == 2 * ROWS
    assert summary["repeated_labels"] == ROWS
    assert summary["distinct_ids"] == ROWS
    assert summary["labeled_rows"] == ROWS
    assert len(_labeled(spec, settings, "b0")) == ROWS


def test_joining_again_without_new_labels_rewrites_nothing(spec: PipelineSpec, settings: Settings) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]])
    join_labels(spec, settings)

    again = join_labels(spec, settings)

    assert again["batches_updated"] == []
    assert again["labeled_rows"] == ROWS
    assert len(_labeled(spec, settings, "b0")) == ROWS


def test_a_relabeled_row_takes_the_label_of_the_latest_file(spec: PipelineSpec, settings: Settings) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    labels = batch[[ID_COLUMN, TARGET]].head(5).copy()
    labels[TARGET] = 0
    _deliver(spec, "labels-0001.csv", labels)
    join_labels(spec, settings)
    corrected = labels.head(2).copy()
    corrected[TARGET] = 1
    _deliver(spec, "labels-0002.csv", corrected)

    summary = join_labels(spec, settings)

    labeled = _labeled(spec, settings, "b0").set_index(ID_COLUMN)[TARGET]
    assert labeled.to_dict() == dict.fromkeys(corrected[ID_COLUMN], 1) | dict.fromkeys(
        labels[ID_COLUMN][2:], 0
    )
    assert summary["conflicting_label_rows"] == 4  # two ids, each with two different labels
    assert summary["distinct_ids"] == 5
    assert summary["labeled_rows"] == 5
    assert summary["batches_updated"] == ["b0"]


def test_labels_of_rows_not_scored_yet_wait_are_counted_and_join_once_scored(
    spec: PipelineSpec, settings: Settings
) -> None:
    scored, later = _batch(0), _batch(1)
    _score(spec, settings, "b0", scored)
    _deliver(spec, "labels-0001.csv", scored[[ID_COLUMN, TARGET]].head(3))
    _deliver(spec, "labels-0002.csv", later[[ID_COLUMN, TARGET]])

    waiting = join_labels(spec, settings)

    assert waiting["labeled_rows"] == 3
    assert waiting["waiting_for_unknown_ids"] == ROWS
    assert waiting["waiting_sample"] == later[ID_COLUMN].head(SAMPLE).tolist()
    assert batch_ids(LABELED, spec.name, settings) == ["b0"]

    _score(spec, settings, "b1", later)
    joined = join_labels(spec, settings)

    assert joined["waiting_for_unknown_ids"] == 0
    assert joined["labeled_rows"] == 3 + ROWS
    assert joined["batches_updated"] == ["b1"]
    assert _labeled(spec, settings, "b1")[TARGET].tolist() == later[TARGET].tolist()


def test_rows_without_a_label_are_counted_and_not_joined(spec: PipelineSpec, settings: Settings) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    labels = batch[[ID_COLUMN, TARGET]].astype({TARGET: "float64"})
    labels.loc[labels.index[:4], TARGET] = None
    _deliver(spec, "labels-0001.csv", labels)

    labels_read, seen = read_labels(spec, settings)

    assert seen["rows_without_label"] == 4
    assert seen["label_rows"] == ROWS
    assert len(labels_read) == ROWS - 4
    assert join_labels(spec, settings)["labeled_rows"] == ROWS - 4


@pytest.mark.parametrize("missing", [ID_COLUMN, TARGET])
def test_a_label_file_without_the_id_or_target_column_names_the_file_and_the_column(
    spec: PipelineSpec, settings: Settings, missing: str
) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]])
    bad = _deliver(spec, "labels-0002.csv", batch[[ID_COLUMN, TARGET]].drop(columns=[missing]))

    with pytest.raises(LabelError, match=re.escape(str(bad))) as raised:
        join_labels(spec, settings)

    assert f"lacks column(s) {missing}" in str(raised.value)
    assert batch_ids(LABELED, spec.name, settings) == []
