"""``<pipeline>__housekeeping`` through real Airflow, on a trained pipeline: a dry run lists and
keeps, a real run deletes what the rules let go and keeps what the champion and the ledger name."""

from __future__ import annotations

import os
import time

from ctloop.data.snapshots import snapshot_key
from ctloop.io.storage import home_storage
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.settings import load_settings
from ctloop.training.steps import RunContext
from tests.integration.conftest import Pipeline, returned, run_dag


def _age(storage, folder: str, days: float) -> None:
    """Make every object below ``folder`` look written ``days`` ago."""
    then = time.time() - days * 86400
    for key in storage.list_keys(folder):
        os.utime(storage.root / key, (then, then))


def test_housekeeping_keeps_the_champions_data_and_deletes_the_rest_after_a_dry_run(tmp_path, airflow_db):
    retention = {"snapshots": {"max_age_days": 2}, "reports": {"max_age_days": 2}}
    pipeline = Pipeline(tmp_path, retention=retention)
    try:
        pipeline.add_batches(3)
        trained = run_dag(pipeline.dag_id, reason="v1")
        assert trained.state == "success"
        settings, name = load_settings(), pipeline.name
        storage = home_storage(settings)
        champion = registry.get_champion(registry.client(settings), name)
        used = snapshot_key(name, champion.tags[tags.DATA_SHA256])
        stray = snapshot_key(name, "0" * 64)
        storage.write_bytes(stray, b"not a snapshot any version used")
        stray_report = f"runs/{name}__monitor/old_run/report.html"
        storage.write_bytes(stray_report, b"<html></html>")
        train_folder = RunContext(dag_id=trained.dag_id, run_id=trained.run_id, reason="").storage_prefix
        for folder in (f"snapshots/{name}", f"runs/{name}__train", f"runs/{name}__monitor"):
            _age(storage, folder, 10)
        before = set(storage.list_keys())

        dry = run_dag(f"{name}__housekeeping", dry_run=True)
        assert dry.state == "success"
        listed = returned(dry, "apply_retention")
        assert listed["dry_run"] is True
        assert {(d["area"], d["item"]) for d in listed["deleted"]} == {
            ("snapshots", stray),
            ("reports", f"runs/{name}__monitor/old_run"),
        }
        assert set(storage.list_keys()) == before

        real = run_dag(f"{name}__housekeeping")
        assert real.state == "success"
        result = returned(real, "apply_retention")
        assert result["dry_run"] is False
        assert result["deleted"] == listed["deleted"]
        kept = {(k["area"], k["item"]): k["why"] for k in result["kept"]}
        assert (
            kept[("snapshots", used)]
            == "referenced by a model version or an MLflow run and the promotion ledger"
        )
        assert "referenced by the promotion ledger" in kept[("reports", train_folder)]
        assert set(storage.list_keys()) == before - {stray, stray_report}
        assert storage.exists(used)
    finally:
        pipeline.remove()
