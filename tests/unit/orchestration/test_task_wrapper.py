"""The task preamble: what a wrapped task function receives, what reaches XCom, how errors fail it.

Airflow's own ``set_current_context`` supplies the context a running task has; the context is a
plain dict with a ``SimpleNamespace`` dag run (the attributes ``run_context`` reads).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import set_current_context
from pydantic import BaseModel

from ctloop.errors import DataValidationFailed
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task, to_xcom
from ctloop.settings import load_settings
from ctloop.spec.loading import load_spec
from tests.helpers import REPO


class _Result(BaseModel):
    where: Path
    rows: int


@pytest.fixture
def spec():
    return load_spec(REPO / "include" / "pipelines" / "churn.yaml")


def _context(**params) -> dict:
    dag_run = SimpleNamespace(dag_id="churn__train", run_id="run-1", run_type="manual")
    return {"dag_run": dag_run, "params": {"reason": "try it", **params}}


def test_airflow_sees_the_signature_without_the_task_run(spec):
    @ctloop_task(spec)
    def register(run: TaskRun, started: dict, trained: dict) -> str:
        return "1"

    assert list(inspect.signature(register).parameters) == ["started", "trained"]
    assert register.__name__ == "register"


def test_the_task_gets_the_spec_for_this_run_the_settings_and_the_run(spec):
    seen = {}

    @ctloop_task(spec)
    def snapshot(run: TaskRun, batch: str) -> str:
        seen.update(spec=run.spec, settings=run.settings, ctx=run.ctx)
        return f"{batch} done"

    with set_current_context(_context(gate_mode="dry_run")):
        assert snapshot("b-1") == "b-1 done"
    assert seen["spec"].gates.mode == "dry_run"
    assert spec.gates.mode == "enabled"
    assert seen["settings"] == load_settings()
    assert (seen["ctx"].run_key, seen["ctx"].reason) == ("churn__train/run-1", "try it")


def test_without_run_params_the_yaml_spec_is_kept(spec):
    @ctloop_task(spec, run_params=False)
    def record_outcome(run: TaskRun) -> str:
        return run.spec.gates.mode

    with set_current_context(_context(gate_mode="dry_run")):
        assert record_outcome() == "enabled"


def test_a_returned_model_reaches_xcom_as_json(spec):
    @ctloop_task(spec)
    def train(run: TaskRun) -> _Result:
        return _Result(where=Path("/tmp/x"), rows=3)

    with set_current_context(_context()):
        assert train() == {"where": "/tmp/x", "rows": 3}


def test_other_results_reach_xcom_as_they_are():
    assert to_xcom("7") == "7"
    assert to_xcom(None) is None
    assert to_xcom({"a": [1]}) == {"a": [1]}


def test_a_ctloop_error_fails_the_task_without_retry(spec):
    @ctloop_task(spec)
    def validate(run: TaskRun) -> None:
        raise DataValidationFailed("2 expectations failed")

    with set_current_context(_context()), pytest.raises(AirflowFailException, match="^DataValidationFailed"):
        validate()


def test_a_bad_trigger_form_fails_the_task_naming_the_param(spec):
    @ctloop_task(spec)
    def snapshot(run: TaskRun) -> None:
        pytest.fail("the task must not run with a bad trigger form")

    bad_form = _context(gate_mode="off")
    with set_current_context(bad_form), pytest.raises(AirflowFailException, match="Params gate_mode"):
        snapshot()
