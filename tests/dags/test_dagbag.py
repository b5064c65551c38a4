"""DagBag policies: every DAG file parses, cheaply, and every DAG follows the house rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

DAGS = REPO / "dags"
HEAVY = ("pandas", "numpy", "sklearn", "mlflow", "great_expectations", "evidently", "pyarrow", "boto3")


@pytest.fixture
def repo_pipelines(monkeypatch):
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(REPO / "include" / "pipelines"))


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


def test_no_import_errors_and_house_rules(repo_pipelines):
    bag = _bag()
    assert bag.import_errors == {}
    kinds = ("train", "score", "monitor", "rollback", "housekeeping")
    assert {f"churn__{kind}" for kind in kinds} <= set(bag.dag_ids)
    for dag_id, dag in bag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.catchup is False, f"{dag_id} catches up"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_train_dag_shape_and_params(repo_pipelines):
    dag = _bag().dags["churn__train"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "snapshot", "validate", "train", "evaluate", "register", "gate", "promote", "record_outcome",
    ]  # fmt: skip
    assert dag.max_active_runs == 1
    # no alert id: people never see it, the plugin's alert endpoint passes it in the run's conf
    assert set(dag.params) == {"reason", "note", "data_window", "data_last", "gate_mode"}
    for name in dag.params:
        assert dag.params.get_param(name).description, name
    assert dag.params["data_window"] == "spec"
    assert dag.params["gate_mode"] == "spec"
    assert dag.is_paused_upon_creation is False  # the plugin's Retrain must not wait for an unpause


def _form_requires(schema: dict) -> bool:
    """Airflow 3.3's trigger form (ui/dist: a field is required when its type excludes null, and
    refused empty or null then); a field with ``const`` is hidden."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def test_the_trigger_form_requires_a_reason_and_leaves_the_note_optional(repo_pipelines):
    dag = _bag().dags["churn__train"]
    reason, note = dag.params.get_param("reason"), dag.params.get_param("note")
    assert reason.value == ""  # empty: a person must type it
    assert _form_requires(reason.schema)
    assert "const" not in reason.schema
    assert not _form_requires(note.schema)
    assert note.value is None
    assert dag.params.validate()["reason"] == ""  # scheduled and asset runs take the defaults


def test_approval_required_puts_a_person_between_gate_and_promote(tmp_path, monkeypatch):
    spec = (REPO / "include" / "pipelines" / "churn.yaml").read_text()
    (tmp_path / "churn.yaml").write_text(spec.replace("approval: none", "approval: required"))
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(tmp_path))
    dag = _bag().dags["churn__train"]
    approve = dag.get_task("approve")
    assert type(approve).__name__ == "RecordedApprovalOperator"
    assert approve.defaults == ["Reject"]  # silence rejects
    assert set(approve.upstream_task_ids) == {"approval_needed"}
    assert "approve" in dag.get_task("promote").upstream_task_ids
    assert dag.get_task("approval_needed").upstream_task_ids == {"gate"}


def test_rollback_dag_asks_for_target_reason_and_force(repo_pipelines):
    dag = _bag().dags["churn__rollback"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # only people and the CLI start it
    assert set(dag.params) == {"target", "reason", "force"}
    assert dag.params["target"] == "previous"
    assert [t.task_id for t in dag.tasks] == ["rollback"]
    assert dag.is_paused_upon_creation is False  # a rollback from the plugin runs at once


def test_assets_couple_score_monitor_and_train(repo_pipelines):
    """Scoring feeds the monitor; the monitor's retrain request starts training, beside its cron."""
    dags = _bag().dags
    predictions = next(iter(dags["churn__score"].get_task("score_batch").outlets))
    retrain = next(iter(dags["churn__monitor"].get_task("request_retrain").outlets))
    assert predictions.uri == "x-ctloop://churn/predictions"
    assert retrain.uri == "x-ctloop://churn/retrain-request"
    monitor_schedule, train_schedule = dags["churn__monitor"].timetable, dags["churn__train"].timetable
    assert predictions.uri in str(monitor_schedule.asset_condition)
    assert retrain.uri in str(train_schedule.asset_condition)
    assert train_schedule.timetable.expression == "0 3 * * 1"


def test_housekeeping_dag_runs_daily_from_the_spec_and_offers_a_dry_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(REPO / "include" / "pipelines"))
    dag = _bag().dags["churn__housekeeping"]
    assert dag.timetable.expression == "30 3 * * *"
    assert [t.task_id for t in dag.tasks] == ["apply_retention"]
    assert set(dag.params) == {"dry_run"}
    assert dag.params["dry_run"] is False
    assert dag.params.get_param("dry_run").description
    spec = (REPO / "include" / "pipelines" / "churn.yaml").read_text()
    (tmp_path / "churn.yaml").write_text(f"{spec}\nretention:\n  schedule: null\n  dry_run: true\n")
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(tmp_path))
    manual = _bag().dags["churn__housekeeping"]
    assert type(manual.timetable).__name__ == "NullTimetable"
    assert manual.params["dry_run"] is True


def test_an_invalid_spec_is_reported_and_breaks_no_other_pipeline(tmp_path, monkeypatch):
    shutil.copy(REPO / "include" / "pipelines" / "churn.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text((REPO / "include" / "pipelines" / "churn.yaml").read_text().replace(
        "name: churn", "name: broken").replace("metric: log_loss", "metric: logloss"))  # fmt: skip
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(tmp_path))
    bag = _bag()
    assert "churn__train" in bag.dag_ids
    assert "broken__train" not in bag.dag_ids
    ((error_file, message),) = bag.import_errors.items()
    assert error_file.endswith("pipeline_specs.py")
    assert "broken.yaml" in message
    assert "gates.rules.1.metric" in message
    assert "'logloss'" in message


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_file_parses_fast_without_heavy_imports(dag_file):
    """In a fresh interpreter, after airflow.sdk (which every DAG file pays), the file itself
    must import in well under a second and pull in none of the heavy libraries."""
    probe = f"""
import json, runpy, sys, time
import airflow.sdk
start = time.perf_counter()
try:
    runpy.run_path({str(DAGS / dag_file)!r})
except Exception:
    pass
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    env = {"CTLOOP_PIPELINES_DIR": str(REPO / "include" / "pipelines")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["heavy"] == []
    assert measured["seconds"] < 0.5, measured
