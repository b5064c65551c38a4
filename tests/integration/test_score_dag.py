"""``<pipeline>__score`` through real Airflow: each batch scored once, bad batches quarantined
with their reason, duplicates set aside, late labels joined by row id."""

from __future__ import annotations

import json

import pandas as pd
import pytest

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


def _instances(dag_run, task_id: str) -> dict[str, str]:
    """The state of each mapped instance of ``task_id``, by its rendered map index."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id
        )
        return {ti.rendered_map_index: str(getattr(ti.state, "value", ti.state)) for ti in rows}


def test_a_batch_above_fan_out_rows_is_scored_in_parts_into_one_partition_once(pipeline):
    from ctloop.registry import mlflow_store as registry
    from ctloop.registry import model_trust
    from ctloop.scoring.batches import predict
    from ctloop.spec.models import PipelineSpec

    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    pipeline.spec["scoring"].update(chunk_rows=300, fan_out_rows=700)  # 2,000 rows: 7 chunks, 3 parts
    pipeline.write(pipeline.spec)
    (large,) = pipeline.deliver(range(10, 11), rows=2000)
    pipeline.deliver(range(11, 12), rows=600)  # one part
    (bad,) = pipeline.deliver(range(12, 13), rows=2000)
    rows = pd.read_csv(bad, dtype=str, keep_default_na=False)
    rows.loc[1500, "contract"] = "weekly"  # chunk 5: part 3 of 3
    rows.to_csv(bad, index=False)

    first = run_dag(f"{pipeline.name}__score")

    assert first.state == "failed"
    parts = {f"batch-{b} part {i}/3": "success" for b in ("0010", "0012") for i in (1, 2, 3)}
    assert _instances(first, "score_part") == {**parts, "batch-0011 part 1/1": "success"}
    assert _instances(first, "score_batch") == {
        "batch-0010": "success",
        "batch-0011": "success",
        "batch-0012": "failed",
    }
    settings = load_settings()
    assert batch_ids(PREDICTIONS, pipeline.name, settings) == ["batch-0010", "batch-0011"]
    logged = _partition(pipeline, PREDICTIONS, "batch-0010")
    delivered = pd.read_csv(large, dtype={"customer_id": str})
    assert logged["customer_id"].tolist() == delivered["customer_id"].tolist()  # every row once, in order
    spec = PipelineSpec.model_validate(pipeline.spec)
    champion = registry.get_champion(registry.client(settings), pipeline.name)
    model = registry.load_version(settings, champion, model_trust.policy(spec))
    predicted, score = predict(model, delivered, spec)  # the rows one task would have scored
    assert logged["prediction"].tolist() == predicted.tolist()
    assert logged["score"].to_numpy() == pytest.approx(score)
    assert logged["scored_at"].nunique() == 1
    storage = home_storage(settings)
    reason = json.loads(storage.read_bytes(f"quarantine/{pipeline.name}/batch-0012/reason.json"))
    (named,) = reason["failures"]
    assert named["column"] == "contract"
    assert named["detail"].endswith("(in rows 1500-1799)")
    assert storage.exists(f"quarantine/{pipeline.name}/batch-0012/batch-0012.csv")
    assert storage.list_keys(f"staging/{pipeline.name}") == []
    written = storage.read_bytes(partition_key(PREDICTIONS, pipeline.name, "batch-0010"))

    again = run_dag(f"{pipeline.name}__score")

    assert again.state == "success"
    assert _instances(again, "score_part") == {None: "skipped"}
    assert storage.read_bytes(partition_key(PREDICTIONS, pipeline.name, "batch-0010")) == written
    assert batch_ids(PREDICTIONS, pipeline.name, settings) == ["batch-0010", "batch-0011"]
