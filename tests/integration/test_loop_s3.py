"""Scoring and monitoring on S3: incoming batches, labels and ctloop's storage on a real HTTP S3
endpoint (moto's server mode on loopback), through real Airflow runs."""

from __future__ import annotations

import json

import boto3
import pytest

from ctloop.devtools.example_data import TARGET, generate_batch, inject_fault
from tests.integration.conftest import Pipeline, champion_version, run_dag, task_states

pytestmark = pytest.mark.integration


def _put_csv(s3, bucket: str, key: str, frame) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=frame.to_csv(index=False).encode())


def test_score_and_monitor_read_and_write_s3(tmp_path, airflow_db, s3_endpoint, s3_bucket, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for index in range(3):
        _put_csv(
            s3, s3_bucket, f"training/batch-{index:04d}.csv", generate_batch(800, seed=7, batch_index=index)
        )
    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CTLOOP_STORAGE_ROOT", f"s3://{s3_bucket}/ctloop")
    pipeline = Pipeline(
        tmp_path,
        data_uri=f"s3://{s3_bucket}/training",
        scoring={"incoming_uri": f"s3://{s3_bucket}/incoming", "labels_uri": f"s3://{s3_bucket}/labels"},
        monitoring={"window_batches": 1, "min_rows": 500, "quality": {"min_labels": 500}},
    )
    try:
        assert run_dag(pipeline.dag_id, reason="v1").state == "success"
        good = generate_batch(900, seed=7, batch_index=10)
        _put_csv(s3, s3_bucket, "incoming/batch-0010.csv", good.drop(columns=[TARGET]))
        broken = inject_fault(generate_batch(900, seed=7, batch_index=11), "missing_column")
        _put_csv(s3, s3_bucket, "incoming/batch-0011.csv", broken.drop(columns=[TARGET]))
        _put_csv(s3, s3_bucket, "labels/labels-0010.csv", good[["customer_id", TARGET]])

        scored = run_dag(f"{pipeline.name}__score")
        # Labels join beside scoring, so labels that landed with their batch join on the next run;
        # the quarantined batch has left the incoming area, so that run succeeds.
        rescored = run_dag(f"{pipeline.name}__score")
        monitored = run_dag(f"{pipeline.name}__monitor")
    finally:
        pipeline.remove()

    assert scored.state == "failed"  # the broken batch fails its own task; the good one is scored
    assert rescored.state == "success"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    name = pipeline.name
    assert f"ctloop/predictions/{name}/batch_id=batch-0010/part-0.parquet" in keys
    assert f"ctloop/labeled/{name}/batch_id=batch-0010/part-0.parquet" in keys
    assert "incoming/batch-0011.csv" not in keys
    assert f"ctloop/quarantine/{name}/batch-0011/batch-0011.csv" in keys
    reason = s3.get_object(Bucket=s3_bucket, Key=f"ctloop/quarantine/{name}/batch-0011/reason.json")
    assert any(f["column"] == "monthly_charges" for f in json.loads(reason["Body"].read())["failures"])

    assert task_states(monitored)["monitor"] == "success"
    assert champion_version(name) == "1"
    (summary_key,) = [k for k in keys if k.endswith("/summary.json") and f"/{name}__monitor/" in k]
    summary = json.loads(s3.get_object(Bucket=s3_bucket, Key=summary_key)["Body"].read())
    assert summary["report_uri"].startswith(f"s3://{s3_bucket}/ctloop/runs/{name}__monitor/")
    assert summary["window"] == {"batches": ["batch-0010"], "rows": 900}
    assert summary["quality"]["labeled_rows"] == 900
    assert summary["quality"]["value"] > 0.6
    assert summary["decision"]["action"] == "hold"
