"""The S3 path end to end: data and ctloop storage on a real HTTP S3 endpoint (moto server)."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from ctloop.devtools.example_data import generate_batch
from tests.integration.conftest import Pipeline, champion_version, mlflow_run, run_dag, task_states

pytestmark = pytest.mark.integration


def test_train_from_s3_data_into_s3_storage(tmp_path, airflow_db, s3_endpoint, s3_bucket, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for index in range(3):
        body = generate_batch(800, seed=7, batch_index=index).to_csv(index=False).encode()
        s3.put_object(Bucket=s3_bucket, Key=f"training/batch-{index:04d}.csv", Body=body)
    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CTLOOP_STORAGE_ROOT", f"s3://{s3_bucket}/ctloop")
    pipeline = Pipeline(tmp_path, data_uri=f"s3://{s3_bucket}/training")
    try:
        dag_run = run_dag(pipeline.dag_id, reason="s3")
    finally:
        pipeline.remove()

    assert set(task_states(dag_run).values()) == {"success"}
    assert champion_version(pipeline.name) == "1"
    tags = mlflow_run(pipeline.name, dag_run).data.tags
    sha = tags["ctloop.data_sha256"]
    assert tags["ctloop.data_uri"] == f"s3://{s3_bucket}/ctloop/snapshots/{pipeline.name}/{sha}.parquet"
    snapshot = s3.get_object(Bucket=s3_bucket, Key=f"ctloop/snapshots/{pipeline.name}/{sha}.parquet")[
        "Body"
    ].read()
    assert hashlib.sha256(snapshot).hexdigest() == sha
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="ctloop/")["Contents"]]
    assert any(k.endswith("/validation.json") for k in keys)
    assert any(k.startswith(f"ctloop/holdouts/{pipeline.name}/") for k in keys)
