"""What a task reads from Airflow's context, and how ctloop's errors fail a task.

The context is a plain dict and the dag run a ``SimpleNamespace`` with the attributes
``run_context`` reads (``dag_id``, ``run_id``, ``run_type``); asset events are namespaces with an
``extra``. ``spec_for_run`` works on the real example spec.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.utils.types import DagRunType

from ctloop.errors import DataValidationFailed, SpecError
from ctloop.orchestration.run_context import fail_without_retry, require_reason, run_context, spec_for_run
from ctloop.spec.loading import load_spec
from ctloop.spec.models import PipelineSpec
from tests.helpers import REPO, example_spec


def _context(run_type, params=None, events=None, conf=None, user=None) -> dict:
    dag_run = SimpleNamespace(
        dag_id="churn__train", run_id="run-1", run_type=run_type, conf=conf or {}, triggering_user_name=user
    )
    return {"dag_run": dag_run, "params": params or {}, "triggering_asset_events": events or {}}


def _event(**extra) -> SimpleNamespace:
    return SimpleNamespace(extra=extra)


@pytest.fixture(scope="module")
def spec() -> PipelineSpec:
    return load_spec(REPO / "include" / "pipelines" / "churn.yaml")


def test_a_scheduled_run_is_started_by_the_schedule():
    ctx = run_context(_context(DagRunType.SCHEDULED, {"reason": "manual", "note": "n"}))
    assert (ctx.trigger, ctx.reason) == ("schedule", "schedule")
    assert (ctx.dag_id, ctx.run_id) == ("churn__train", "run-1")
    assert ctx.run_key == "churn__train/run-1"
    assert ctx.note == "n"


def test_an_asset_triggered_run_joins_the_reasons_of_its_events():
    events = {
        "retrain": [_event(reason="drift: 3 of 5 features"), _event(report_uri="s3://r")],
        "other": [_event(reason="quality: roc_auc dropped")],
    }
    ctx = run_context(_context("asset_triggered", events=events))
    assert ctx.trigger == "asset"
    assert ctx.reason == "drift: 3 of 5 features; quality: roc_auc dropped"


def test_the_metrics_an_alert_fired_on_travel_as_data_and_old_events_carry_none():
    events = {
        "retrain": [
            _event(reason="quality accuracy: fell", alert_metrics=["accuracy", "brier"]),
            _event(reason="quality brier: rose", alert_metrics=["brier"]),
        ]
    }
    ctx = run_context(_context("asset_triggered", events=events))
    assert ctx.alert_metrics == ("accuracy", "brier")
    old = run_context(_context("asset_triggered", events={"retrain": [_event(reason="quality roc_auc")]}))
    assert old.alert_metrics == ()
    # the reason's text is not parsed, and only asset events carry metrics
    manual = run_context(_context(DagRunType.MANUAL, {"reason": "quality accuracy: fell"}))
    assert manual.alert_metrics == ()


def test_an_asset_event_without_a_reason_is_still_named():
    ctx = run_context(_context("asset_triggered", events={"retrain": [_event(report_uri="s3://r")]}))
    assert (ctx.trigger, ctx.reason) == ("asset", "asset event")


def test_a_manual_run_keeps_the_reason_and_note_of_the_trigger_form_and_its_person():
    params = {"reason": "new features", "note": "JIRA-12"}
    ctx = run_context(_context(DagRunType.MANUAL, params, user="alice"))
    assert (ctx.trigger, ctx.reason, ctx.note, ctx.user) == ("manual", "new features", "JIRA-12", "alice")
    assert ctx.alert_id == ""
    assert run_context(_context(DagRunType.SCHEDULED, params)).user == ""


def test_a_manual_run_without_a_reason_or_note_says_manual():
    ctx = run_context(_context("manual", {"reason": None, "note": None}))
    assert (ctx.trigger, ctx.reason, ctx.note) == ("manual", "manual", "")


def test_an_external_alert_is_recorded_by_its_id_from_the_run_conf():
    conf = {"reason": "p95 latency alert", "alert_id": "PD-42"}
    ctx = run_context(_context("manual", {"reason": "p95 latency alert"}, conf=conf))
    assert (ctx.trigger, ctx.alert_id, ctx.reason) == ("alert", "PD-42", "p95 latency alert")


def test_a_malformed_alert_id_fails_the_task_without_retry():
    with pytest.raises(AirflowFailException, match="^AlertRefused: alert_id refused"):
        run_context(_context("manual", {"reason": "x"}, conf={"alert_id": "../etc/passwd"}))


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_manual_run_without_a_reason_is_refused_naming_the_param(reason):
    with pytest.raises(AirflowFailException, match="Param 'reason' is required for a manual run"):
        require_reason(_context(DagRunType.MANUAL, {"reason": reason}))


def test_runs_that_are_not_manual_or_say_why_pass_the_reason_check():
    require_reason(_context(DagRunType.MANUAL, {"reason": "new features"}))
    require_reason(_context(DagRunType.SCHEDULED, {"reason": ""}))
    require_reason(_context("asset_triggered", {"reason": ""}))


def test_a_ctloop_error_fails_the_task_without_retry_keeping_the_message():
    expected = r"^DataValidationFailed: 3 expectations failed$"
    with pytest.raises(AirflowFailException, match=expected) as info, fail_without_retry():
        raise DataValidationFailed("3 expectations failed")
    assert isinstance(info.value.__cause__, DataValidationFailed)


def test_other_errors_pass_through_to_airflows_retries():
    with pytest.raises(ConnectionError, match="database is busy"), fail_without_retry():
        raise ConnectionError("database is busy")


def test_the_spec_default_keeps_the_yaml(spec):
    assert spec_for_run(spec, {"data_window": "spec", "gate_mode": "spec"}) == spec
    assert spec_for_run(spec, {}) == spec


def test_the_trigger_form_sets_the_training_window_and_gate_mode(spec):
    run_spec = spec_for_run(spec, {"data_window": "batches", "data_last": 2, "gate_mode": "dry_run"})
    assert (run_spec.retrain.data.window, run_spec.retrain.data.last) == ("batches", 2)
    assert run_spec.gates.mode == "dry_run"
    assert run_spec.gates.rules == spec.gates.rules
    assert (spec.retrain.data.window, spec.gates.mode) == ("all", "enabled")  # the YAML's spec is untouched


def test_all_data_needs_no_n(spec):
    assert spec_for_run(spec, {"data_window": "all"}).retrain.data.window == "all"


@pytest.mark.parametrize(
    "params",
    [
        {"data_window": "batches"},
        {"data_window": "all", "data_last": 3},
        {"data_window": "days", "data_last": 0},
    ],
)
def test_a_window_and_n_that_do_not_fit_fail_naming_the_params(spec, params):
    with pytest.raises(AirflowFailException, match=r"^Params data_window/data_last: "):
        spec_for_run(spec, params)


def test_days_without_a_timestamp_column_fails_naming_the_param_and_the_file():
    raw = example_spec("notime", "data")
    raw["columns"].pop("timestamp")
    spec = PipelineSpec.model_validate(raw)
    expected = r"Params data_window: 'days' needs columns.timestamp in notime"
    with pytest.raises(AirflowFailException, match=expected):
        spec_for_run(spec, {"data_window": "days", "data_last": 7})


def test_an_unknown_gate_mode_fails_naming_the_param(spec):
    with pytest.raises(SpecError, match=r"Params gate_mode: 'off' is not one of spec, enabled, dry_run"):
        spec_for_run(spec, {"gate_mode": "off"})
