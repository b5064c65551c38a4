"""Late labels joined to the prediction log: each label counted once, the latest file winning, labels
of rows not scored yet kept waiting, one label per scored row when ids are reused across batches;
a bad label file (columns, ids, values, parse) set aside by name without stopping the others."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from sklearn import metrics as sk

from ctloop import clock
from ctloop.devtools.example_data import ID_COLUMN, TARGET, generate_batch, write_batches
from ctloop.errors import LabelError
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring.monitor_run import quality
from ctloop.scoring import late_labels
from ctloop.scoring.batches import logged_columns, model_predictions
from ctloop.scoring.late_labels import JOINS, QUARANTINE, SAMPLE, join_labels, read_labels
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, partition_key
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import multiclass_batch, multiclass_spec

ROWS = 20


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def spec(tmp_path: Path) -> PipelineSpec:
    """A pipeline of its own (its prediction log starts empty, no champion: its classes are the
    training data's, 0 and 1) reading labels from ``tmp_path/labels``."""
    write_batches(tmp_path / "training", range(1), rows=40)
    raw = example_spec(
        f"ll{uuid.uuid4().hex[:10]}",
        str(tmp_path / "training"),
        scoring={"incoming_uri": str(tmp_path / "incoming"), "labels_uri": str(tmp_path / "labels")},
    )
    return PipelineSpec.model_validate(raw)


def _batch(index: int) -> pd.DataFrame:
    """Production batch ``index`` with its labels; ids are unique per index."""
    return generate_batch(ROWS, seed=3, batch_index=index)


def _score(
    spec: PipelineSpec, settings: Settings, batch_id: str, batch: pd.DataFrame, at: str = "2026-02-01"
) -> None:
    """Write the batch's partition of the prediction log, as scoring does (inputs without the label)."""
    logged = batch.drop(columns=[TARGET])
    logged["prediction"], logged["score"], logged["model_version"] = 0, 0.3, "1"
    logged["batch_id"], logged["scored_at"] = batch_id, pd.Timestamp(at, tz="UTC")
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
    _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]].head(5))
    bad = _deliver(spec, "labels-0002.csv", batch[[ID_COLUMN, TARGET]].drop(columns=[missing]))
    data = bad.read_bytes()

    with pytest.raises(LabelError, match=re.escape(str(bad))) as raised:
        join_labels(spec, settings)

    assert f"lacks column(s) {missing}" in str(raised.value)
    reason = _set_aside(spec, settings, "labels-0002", bad, data)
    assert reason["failures"][0]["column"] == missing
    assert len(_labeled(spec, settings, "b0")) == 5  # the good file is joined, the bad one never
    assert join_labels(spec, settings)["labeled_rows"] == 5  # and the next join succeeds


def _set_aside(spec: PipelineSpec, settings: Settings, name: str, delivered: Path, data: bytes) -> dict:
    """The reason of a label file set aside, after checking it moved there with its bytes."""
    storage, prefix = home_storage(settings), f"{QUARANTINE}/{spec.name}/{name}"
    assert not delivered.exists()
    assert storage.read_bytes(f"{prefix}/{delivered.name}") == data
    return json.loads(storage.read_bytes(f"{prefix}/reason.json"))


@pytest.mark.parametrize(
    ("values", "check", "detail"),
    [
        (["0", "1", "2", "maybe"], "label_value", "2 label(s) not among the classes of training data"),
        (["0", "1", "1", "yes"], "label_value", "'yes'"),
    ],
)
def test_label_values_outside_the_classes_set_the_file_aside_and_other_files_still_join(
    spec: PipelineSpec, settings: Settings, values: list[str], check: str, detail: str
) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]].head(4))
    bad_rows = batch[[ID_COLUMN]].iloc[4:8].assign(**{TARGET: values})
    bad = _deliver(spec, "labels-0002.csv", bad_rows)
    data = bad.read_bytes()

    with pytest.raises(
        LabelError, match=rf"{re.escape(str(bad))}: {check}\[{TARGET}\]: .*{re.escape(detail)}"
    ):
        join_labels(spec, settings)

    (named,) = _set_aside(spec, settings, "labels-0002", bad, data)["failures"]
    assert (named["check"], named["column"]) == (check, TARGET)
    labeled = _labeled(spec, settings, "b0")
    assert labeled[TARGET].tolist() == batch[TARGET].head(4).tolist()
    assert labeled[TARGET].dtype == "int64"
    again = join_labels(spec, settings)
    assert again["files_set_aside"] == []
    assert again["labeled_rows"] == 4


def test_labels_spelled_as_text_or_floats_are_taken_as_the_classes(
    spec: PipelineSpec, settings: Settings
) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    folder = Path(spec.labels_uri)
    folder.mkdir(parents=True)
    ids = batch[ID_COLUMN].tolist()
    (folder / "labels-0001.CSV").write_text(f"{ID_COLUMN},{TARGET}\n{ids[0]},1.0\n{ids[1]},0.0\n{ids[2]},\n")

    summary = join_labels(spec, settings)

    assert summary["files"] == 1  # the upper-case suffix is a label file too
    assert summary["rows_without_label"] == 1
    labeled = _labeled(spec, settings, "b0")
    assert labeled[TARGET].tolist() == [1, 0]
    assert labeled[TARGET].dtype == "int64"


def test_the_champion_classes_decide_before_the_training_data(
    spec: PipelineSpec, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctloop.registry import mlflow_store

    champion = SimpleNamespace(version="4")
    monkeypatch.setattr(mlflow_store, "client", lambda settings: None)
    monkeypatch.setattr(mlflow_store, "get_champion", lambda mlflow_client, name: champion)
    monkeypatch.setattr(
        mlflow_store,
        "load_version",
        lambda settings, version, trust=None: SimpleNamespace(classes_=["no", "yes"]),
    )
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    bad = _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]].head(3))

    with pytest.raises(LabelError, match="not among the classes of champion v4"):
        join_labels(spec, settings)

    assert not bad.exists()
    good = batch[[ID_COLUMN]].head(2).assign(**{TARGET: ["yes", "no"]})
    _deliver(spec, "labels-0002.csv", good)
    assert join_labels(spec, settings)["classes_from"] == "champion v4"
    assert _labeled(spec, settings, "b0")[TARGET].tolist() == ["yes", "no"]


def test_missing_ids_two_labels_for_one_id_and_unreadable_files_are_set_aside_by_name(
    spec: PipelineSpec, settings: Settings
) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    labels = batch[[ID_COLUMN, TARGET]].head(6)
    no_id = _deliver(spec, "labels-0001.csv", labels.assign(**{ID_COLUMN: [None, *labels[ID_COLUMN][1:]]}))
    twice = pd.concat([labels, labels.head(1).assign(**{TARGET: 1 - labels[TARGET].iloc[0]})])
    conflicting = _deliver(spec, "labels-0002.csv", twice)
    repeated = _deliver(spec, "labels-0003.csv", pd.concat([labels, labels.head(2)]))  # the same label again
    empty = Path(spec.labels_uri) / "labels-0004.csv"
    empty.write_bytes(b"")
    data = {p: p.read_bytes() for p in (no_id, conflicting, empty)}

    with pytest.raises(LabelError) as raised:
        join_labels(spec, settings)

    message = str(raised.value)
    assert f"{no_id}: id_not_null[{ID_COLUMN}]: 1 row(s) without an id, e.g. line 2" in message
    assert f"{conflicting}: one_label_per_id[{ID_COLUMN}]: 1 id(s) with two different labels" in message
    assert f"{empty}: {empty}: file is empty (0 bytes)" in message
    for name, path in [("labels-0001", no_id), ("labels-0002", conflicting), ("labels-0004", empty)]:
        assert _set_aside(spec, settings, name, path, data[path])["file"] == str(path)
    assert repeated.exists()
    summary = join_labels(spec, settings)
    assert summary["repeated_labels"] == 2
    assert summary["labeled_rows"] == 6


def test_an_id_reused_by_a_later_batch_joins_one_batch_only(spec: PipelineSpec, settings: Settings) -> None:
    """The 1,060 labels that became 3,740 labeled rows: each label joins one scored batch."""
    first = _batch(0)
    reused = _batch(1).assign(**{ID_COLUMN: first[ID_COLUMN]})  # upstream reuses the ids
    _score(spec, settings, "b0", first, at="2026-02-01")
    with clock.simulated(datetime(2026, 2, 2, tzinfo=UTC)):
        _deliver(spec, "labels-0001.csv", first[[ID_COLUMN, TARGET]])
        early = join_labels(spec, settings)
    _score(spec, settings, "b1", reused, at="2026-02-03")
    with clock.simulated(datetime(2026, 2, 4, tzinfo=UTC)):
        late = join_labels(spec, settings)

    assert early["labeled_rows"] == late["labeled_rows"] == ROWS
    assert late["labels_matching_several_batches"] == ROWS
    assert batch_ids(LABELED, spec.name, settings) == ["b0"]  # the labels arrived before b1 was scored
    with clock.simulated(datetime(2026, 2, 5, tzinfo=UTC)):
        _deliver(spec, "labels-0002.csv", reused[[ID_COLUMN, TARGET]].head(5))
        both = join_labels(spec, settings)

    assert both["labeled_rows"] == ROWS + 5
    assert both["labels_replaced"] == 0
    assert _labeled(spec, settings, "b1")[TARGET].tolist() == reused[TARGET].head(5).tolist()
    assert _labeled(spec, settings, "b0")[TARGET].tolist() == first[TARGET].tolist()
    record = home_storage(settings).list_keys(f"{JOINS}/{spec.name}")
    assert len(record) == 3
    assert json.loads(home_storage(settings).read_bytes(record[-1]))["labeled_rows"] == ROWS + 5


def test_labels_arriving_before_any_batch_holds_their_ids_join_the_first_batch_scored_after(
    spec: PipelineSpec, settings: Settings
) -> None:
    first = _batch(0)
    with clock.simulated(datetime(2026, 2, 1, tzinfo=UTC)):
        _deliver(spec, "labels-0001.csv", first[[ID_COLUMN, TARGET]])
        assert join_labels(spec, settings)["waiting_for_unknown_ids"] == ROWS
    _score(spec, settings, "b1", first, at="2026-02-02")
    _score(spec, settings, "b2", first, at="2026-02-03")

    summary = join_labels(spec, settings)

    assert summary["labeled_rows"] == ROWS
    assert batch_ids(LABELED, spec.name, settings) == ["b1"]


def test_a_label_file_read_first_and_changed_later_arrives_again(
    spec: PipelineSpec, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    labels = batch[[ID_COLUMN, TARGET]].head(3)
    with clock.simulated(datetime(2026, 3, 1, tzinfo=UTC)):
        _deliver(spec, "labels-0002.csv", labels.assign(**{TARGET: 0}))
        join_labels(spec, settings)
    with clock.simulated(datetime(2026, 3, 2, tzinfo=UTC)):
        _deliver(spec, "labels-0001.csv", labels.assign(**{TARGET: 1}))  # named earlier, arrived later
        summary = join_labels(spec, settings)

    assert _labeled(spec, settings, "b0")[TARGET].tolist() == [1, 1, 1]
    assert summary["labels_replaced"] == 3
    assert late_labels.ARRIVED in read_labels(spec, settings)[0].columns


def test_a_regression_label_must_be_a_finite_number(tmp_path: Path, settings: Settings) -> None:
    raw = example_spec(
        f"ll{uuid.uuid4().hex[:10]}",
        str(tmp_path / "training"),
        task="regression",
        scoring={"incoming_uri": str(tmp_path / "incoming"), "labels_uri": str(tmp_path / "labels")},
    )
    raw["estimator"]["class_path"] = "sklearn.ensemble.HistGradientBoostingRegressor"
    metric = {"metric": "rmse", "max_regression": 0.03, "max_gap": 100.0, "min_rows": 100}
    raw["gates"] = {**raw["gates"], "rules": [{"metric": "rmse", "at_most": 100.0}], "slice_rules": metric}
    raw["gates"]["bootstrap"] = {**raw["gates"]["bootstrap"], "metric": "rmse"}
    raw["monitoring"]["quality"] = {"metric": "rmse", "max_drop": 0.05, "min_labels": 1000}
    spec = PipelineSpec.model_validate(raw)
    batch = _batch(0)
    _score(spec, settings, "b0", batch)
    ids = batch[ID_COLUMN].tolist()
    good = _deliver(spec, "labels-0001.csv", pd.DataFrame({ID_COLUMN: ids[:2], TARGET: ["3.5", "1e2"]}))
    bad = _deliver(spec, "labels-0002.csv", pd.DataFrame({ID_COLUMN: ids[2:5], TARGET: ["4", "inf", "high"]}))

    with pytest.raises(
        LabelError, match=rf"{re.escape(str(bad))}: label_value\[{TARGET}\]: 2 label\(s\) not a finite"
    ):
        join_labels(spec, settings)

    assert good.exists()
    assert _labeled(spec, settings, "b0")[TARGET].tolist() == [3.5, 100.0]


def test_text_labels_of_a_multiclass_log_join_beside_every_class_probability(
    tmp_path: Path, settings: Settings
) -> None:
    """Late labels of a multiclass model's log ("high", "low", "mid") join its rows with their class
    probabilities, and measure every metric on them."""
    (tmp_path / "training").mkdir()
    training = multiclass_batch(600, seed=1)
    training.to_csv(tmp_path / "training" / "batch-0000.csv", index=False)
    scoring = {"incoming_uri": str(tmp_path / "incoming"), "labels_uri": str(tmp_path / "labels")}
    spec = multiclass_spec(f"ll{uuid.uuid4().hex[:10]}", str(tmp_path / "training"), scoring=scoring)
    model, batch = fit(spec, training), multiclass_batch(300, seed=2)
    logged = batch[logged_columns(spec)].assign(
        **model_predictions(model, batch, spec).columns("prediction", "score")
    )
    logged = logged.assign(model_version="1", batch_id="b0", scored_at=pd.Timestamp("2026-02-01", tz="UTC"))
    home_storage(settings).write_bytes(partition_key(PREDICTIONS, spec.name, "b0"), to_parquet_bytes(logged))
    _deliver(spec, "labels-0001.csv", batch[[ID_COLUMN, TARGET]])

    summary = join_labels(spec, settings)

    assert summary["labeled_rows"] == 300
    assert summary["classes_from"].startswith("training data")
    labeled = _labeled(spec, settings, "b0")
    assert labeled[TARGET].tolist() == batch[TARGET].tolist()
    assert {"score__high", "score__low", "score__mid"} <= set(labeled.columns)
    measured = quality(spec, labeled)
    probabilities = model.predict_proba(batch[spec.columns.features])
    expected = sk.roc_auc_score(batch[TARGET], probabilities, multi_class="ovr", labels=model.classes_)
    assert measured["roc_auc"] == pytest.approx(expected, rel=1e-9)
    assert measured["log_loss"] == pytest.approx(
        sk.log_loss(batch[TARGET], probabilities, labels=model.classes_)
    )
