"""``ctloop replay`` end to end, in process: a small stream of our own through the DAGs' task
functions on a simulated clock, with an abrupt concept change at batch 2 and labels one batch late."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, roc_auc_score

from ctloop.cli import main

BATCHES = ["b0.csv", "b1.csv", "b2.csv", "b3.csv"]
CHANGE_AT = 2


def rows(rng: np.random.Generator, n: int, first_id: int, changed: bool) -> pd.DataFrame:
    """A binary task whose labelling rule flips the sign of x2 after the change; the features keep
    their distribution, so only the labels can tell."""
    frame = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(first_id, first_id + n)],
            "x1": rng.normal(0, 1, n),
            "x2": rng.normal(0, 1, n),
            "x3": rng.normal(0, 1, n),
            "segment": rng.choice(["a", "b", "c"], n),
        }
    )
    signal = frame["x1"] - frame["x2"] if changed else frame["x1"] + frame["x2"]
    frame["y"] = (signal + rng.normal(0, 0.3, n) > 0).astype(int)
    return frame


@pytest.fixture
def stream(tmp_path, monkeypatch):
    """History, batches, labels, an expectation suite and the spec file; returns the spec's path."""
    rng = np.random.default_rng(3)
    (tmp_path / "history").mkdir()
    rows(rng, 2000, 0, changed=False).to_csv(tmp_path / "history" / "history.csv", index=False)
    for folder in ("batches", "labels"):
        (tmp_path / folder).mkdir()
    for index, name in enumerate(BATCHES):
        batch = rows(rng, 500, 10_000 * (index + 1), changed=index >= CHANGE_AT)
        batch.drop(columns="y").to_csv(tmp_path / "batches" / name, index=False)
        batch[["row_id", "y"]].to_csv(tmp_path / "labels" / name, index=False)
    expectations = tmp_path / "expectations"
    expectations.mkdir()
    suite = {
        "name": "stream",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x1"}}],
    }
    (expectations / "stream.json").write_text(json.dumps(suite))
    monkeypatch.setenv("CTLOOP_EXPECTATIONS_DIR", str(expectations))
    spec = {
        "name": "stream",
        "data": {"uri": str(tmp_path / "history"), "format": "csv"},
        "columns": {
            "target": "y",
            "id": ["row_id"],
            "numeric": ["x1", "x2", "x3"],
            "categorical": ["segment"],
        },
        "expectation_suite": "stream",
        "estimator": {"class_path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}},
        "gates": {
            "rules": [{"metric": "roc_auc", "at_least": 0.6}, {"metric": "roc_auc", "min_improvement": 0.002}]
        },
        "schedule": {"train": None, "score": "*/30 * * * *", "monitor": None},
        "monitoring": {
            "window_batches": 1,
            "min_rows": 400,
            "quality": {"max_drop": 0.05, "min_labels": 300},
        },
        "retrain": {"k_of_n": {"k": 1, "n": 1}},
    }
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def replay(spec_path, *extra: str) -> list[str]:
    root = spec_path.parent
    return [
        "replay",
        str(spec_path),
        "--batches",
        str(root / "batches"),
        "--labels",
        str(root / "labels"),
        "--label-delay",
        "1",
        "--out",
        str(root / "out" / "replay.json"),
        *extra,
    ]


def test_a_bad_set_key_fails_naming_it_before_anything_runs(stream, capsys):
    assert main(replay(stream, "--set", "retrain.k_of_n.kk=1")) == 2
    assert "retrain.k_of_n.kk" in capsys.readouterr().err
    assert list((stream.parent / "out").iterdir()) == []  # not even an empty home is left behind


def test_replay_records_every_batch_and_training_and_serves_what_the_labels_say(stream, capsys):
    home = stream.parent / "home"
    assert main(replay(stream, "--home", str(home))) == 0
    printed = capsys.readouterr().out
    result = json.loads((stream.parent / "out" / "replay.json").read_text())

    batches, trainings = result["batches"], result["trainings"]
    assert [b["batch"] for b in batches] == BATCHES
    assert all(b["action"] == "scored" and b["rows"] == 500 for b in batches)
    # each batch was scored by the champion the trainings before it left
    for record in batches:
        before = [t for t in trainings if t["at"] < record["at"]]
        assert record["champion_version"] == before[-1]["champion_after"]

    first, *retrains = trainings
    assert (first["trigger"], first["promoted"], first["champion_after"]) == ("manual", True, "1")
    assert first["window"] == "all"
    assert first["snapshot_rows"] == 2000
    # the labels of the first changed batch arrive with the next one: the monitor asks for a retrain
    changed_labels = batches[CHANGE_AT + 1]
    assert changed_labels["decision"] == "retrain", changed_labels["reason"]
    assert changed_labels["trainings"] == [1]
    assert retrains
    assert all(t["trigger"] == "asset" and "roc_auc" in t["reason"] for t in retrains)
    assert all(t["gate"] in ("passed", "rejected") and isinstance(t["promoted"], bool) for t in retrains)
    triggered = [i for step in [*batches, result["after_last_batch"]] for i in step["trainings"]]
    assert triggered == [t["index"] for t in retrains]

    # served metrics: the old concept served well, the new one as a coin flip
    assert batches[0]["served"]["accuracy"] > 0.85
    assert batches[CHANGE_AT]["served"]["accuracy"] < 0.7
    # ... computed from the batch's own labels and the predictions logged for it
    for record in (batches[0], batches[CHANGE_AT]):
        logged = pd.read_parquet(
            home / "storage" / "predictions" / "stream" / f"batch_id={record['batch_id']}"
        )
        labels = pd.read_csv(stream.parent / "labels" / record["batch"], dtype={"row_id": str})
        joined = logged.merge(labels, on="row_id")
        assert len(joined) == record["labeled_rows"] == 500
        assert record["served"]["accuracy"] == pytest.approx(
            accuracy_score(joined["y"], joined["prediction"])
        )
        assert record["served"]["roc_auc"] == pytest.approx(roc_auc_score(joined["y"], joined["score"]))

    assert result["after_last_batch"]["labels_arrived"] == ["b3.csv"]
    assert "b2.csv (scored, served roc_auc" in printed
    assert "train (asset)" in printed
