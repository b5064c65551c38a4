"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def example_spec(name: str, data_uri: str, **overrides) -> dict:
    """The example churn spec as a dict, renamed and pointed at ``data_uri``."""
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec.update(name=name, data={"uri": data_uri, "format": "csv"}, **overrides)
    spec["estimator"]["params"] = {"max_iter": 60, "random_state": 0}
    return spec


def served_pipeline(home: Path, *, batches: int, rows: int, **overrides) -> tuple[str, Path, Path]:
    """A new pipeline with example training data under ``home`` and its spec in ``home/pipelines``,
    the folder a LocalDeployment's dag-processor reads; returns (name, data folder, pipelines folder).
    ``overrides`` replace top-level fields of the example spec (only alerts and triggers start
    training: no cron)."""
    import uuid

    from ctloop.devtools.example_data import write_batches

    name = f"p{uuid.uuid4().hex[:10]}"
    data = home / "data" / name
    write_batches(data / "training", range(batches), rows=rows)
    spec = example_spec(name, str(data / "training"), **{"schedule": {"train": None}, **overrides})
    pipelines = home / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return name, data, pipelines


def started_payload(run_id: str, root: Path, snapshot_key: str, sha256: str) -> dict:
    """What a training run's ``snapshot`` task returns (ctloop.training.contracts.Started), for
    tests that record a version without running the DAG: a manual run by alice, no recent holdout."""
    from ctloop.registry import tags

    snapshot = {"key": snapshot_key, "uri": str(root / snapshot_key), "sha256": sha256, "rows": 900}
    snapshot |= {"sources": ["b1"], "source_rows": [900], "labeled_sources": 0, "created": True}
    snapshot |= {"sample": None}
    provenance = {tags.REASON: "r", tags.TRIGGER: "manual", tags.STARTED_BY: "alice", tags.ALERT_ID: ""}
    provenance |= {tags.REQUEST_ID: "", tags.TRIGGER_REPORTS: ""}
    recent = {"holdout": None, "sources": [], "note": "none"}
    return {"mlflow_run_id": run_id, "snapshot": snapshot, "provenance": provenance, "recent_holdout": recent}
