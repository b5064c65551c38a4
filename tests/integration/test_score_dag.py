"""``<pipeline>__score`` through real Airflow: each batch scored once, bad batches quarantined
with their reason, duplicates set aside, late labels joined by row id."""

from __future__ import annotations

import json

import pandas as pd

from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, partition_key
from ctloop.settings import load_settings
from tests.integration.conftest import run_dag, task_states


def _partition(pipeline, area: str, batch_id: str) -> pd.DataFrame:
    key = partition_key(area, pipeline.name, batch_id)
    return from_parquet_bytes(home_storage(load_settings()).read_bytes(key))


def test_scores_each_batch_once_and_joins_late_labels(pipeline):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    pipeline.deliver(range(10, 12), rows=700)

    first = run_dag(f"{pipeline.name}__score")
    assert first.state == "success"
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ["batch-0010", "batch-0011"]
    logged = _partition(pipeline, PREDICTIONS, "batch-0010")
    assert len(logged) == 700
    assert logged["customer_id"].is_unique
    assert set(logged["model_version"]) == {"1"}
    assert logged["score"].between(0, 1).all()
    assert set(logged["prediction"]) <= {0, 1}
    assert {"event_time", "tenure_months", "batch_id", "scored_at"} <= set(logged.columns)
    written = home_storage(load_settings()).read_bytes(
        partition_key(PREDICTIONS, pipeline.name, "batch-0010")
    )

    again = run_dag(f"{pipeline.name}__score")
    assert again.state == "success"
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ["batch-0010", "batch-0011"]
    rewritten = home_storage(load_settings()).read_bytes(
        partition_key(PREDICTIONS, pipeline.name, "batch-0010")
    )
    assert rewritten == written

    labels = pipeline.label(10, rows=700)
    unknown = pd.DataFrame({"customer_id": ["nobody-1", "nobody-2"], "churned": [1, 0]})
    unknown.to_csv(labels.with_name("labels-unknown.csv"), index=False)
    joined = run_dag(f"{pipeline.name}__score")
    assert task_states(joined)["join_labels"] == "success"
    labeled = _partition(pipeline, LABELED, "batch-0010")
    truth = pd.read_csv(labels, dtype={"customer_id": str})
    assert len(labeled) == 700
    merged = labeled.merge(truth, on="customer_id", suffixes=("", "_truth"))
    assert (merged["churned"] == merged["churned_truth"]).all()
    assert batch_ids(LABELED, pipeline.name, load_settings()) == ["batch-0010"]


def test_bad_batch_is_quarantined_with_its_reason_and_fails_the_run(pipeline, capsys):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    pipeline.deliver(range(20, 21), rows=600)
    pipeline.deliver(range(21, 22), rows=600, fault="missing_column")

    dag_run = run_dag(f"{pipeline.name}__score")
    assert dag_run.state == "failed"
    assert "monthly_charges" in capsys.readouterr().out
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ["batch-0020"]
    assert not (pipeline.incoming / "batch-0021.csv").exists()
    storage = home_storage(load_settings())
    reason = json.loads(storage.read_bytes(f"quarantine/{pipeline.name}/batch-0021/reason.json"))
    assert any(f["column"] == "monthly_charges" for f in reason["failures"])
    assert storage.exists(f"quarantine/{pipeline.name}/batch-0021/batch-0021.csv")


def test_same_content_under_another_name_is_set_aside_not_scored_twice(pipeline):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    (path,) = pipeline.deliver(range(30, 31), rows=600)
    run_dag(f"{pipeline.name}__score")
    path.with_name("batch-0031.csv").write_bytes(path.read_bytes())

    dag_run = run_dag(f"{pipeline.name}__score")
    assert dag_run.state == "success"
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ["batch-0030"]
    reason = json.loads(
        home_storage(load_settings()).read_bytes(f"duplicates/{pipeline.name}/batch-0031/reason.json")
    )
    assert reason["duplicate_of"] == "batch-0030"
    assert not (pipeline.incoming / "batch-0031.csv").exists()


def test_scoring_before_any_champion_fails_with_a_clear_reason(pipeline, capsys):
    pipeline.deliver(range(40, 41), rows=600)
    dag_run = run_dag(f"{pipeline.name}__score")
    assert dag_run.state == "failed"
    assert "no model is champion yet" in capsys.readouterr().out
    assert (pipeline.incoming / "batch-0040.csv").exists()
