"""What the train steps need from an Airflow task's context, and how their errors fail a task."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from ctloop.errors import CtloopError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from ctloop.spec.models import PipelineSpec
    from ctloop.training.steps import RunContext


def run_context(context: Context) -> RunContext:
    """The run's identity and why it started: ``schedule``; an asset event's reason and the metrics
    its alert fired on (``alert_metrics``, a list; absent in events of older monitors); an external
    alert (``alert_id`` in the run's conf, which the plugin's alert endpoint sets: it is no Param,
    so the trigger form never shows it); or the ``reason`` Param of a manual trigger."""
    from ctloop.monitoring.alerts import check_alert_id
    from ctloop.training.steps import RunContext

    dag_run = context["dag_run"]
    params = context["params"]
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    alert_id = str((getattr(dag_run, "conf", None) or {}).get("alert_id") or "")
    if alert_id:
        with fail_without_retry():
            check_alert_id(alert_id)
    reason, kind = str(params.get("reason") or "manual"), "alert" if alert_id else "manual"
    metrics: list[str] = []
    if run_type == "scheduled":
        reason, kind = "schedule", "schedule"
    elif run_type == "asset_triggered":
        extras = [e.extra for events in context["triggering_asset_events"].values() for e in events]
        reason = "; ".join(str(x.get("reason")) for x in extras if x.get("reason")) or "asset event"
        kind = "asset"
        metrics = [str(m) for x in extras for m in x.get("alert_metrics") or []]
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        reason=reason,
        note=str(params.get("note") or ""),
        trigger=kind,
        alert_id=alert_id,
        user=str(getattr(dag_run, "triggering_user_name", None) or ""),
        alert_metrics=tuple(dict.fromkeys(metrics)),
    )


def require_reason(context: Context) -> None:
    """Refuse a manual run that does not say why it runs (the trigger form requires the field;
    the REST API does not): fail the task at once, naming the Param."""
    dag_run = context["dag_run"]
    if getattr(dag_run.run_type, "value", dag_run.run_type) != "manual":
        return
    if not str(context["params"].get("reason") or "").strip():
        raise AirflowFailException(
            "Param 'reason' is required for a manual run: say why this training runs"
            ' (the trigger form\'s Reason, or conf {"reason": "..."} through the API)'
        )


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Bad data or a bad spec will not get better on retry: fail the task at once, keep the message."""
    try:
        yield
    except CtloopError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def spec_for_run(spec: PipelineSpec, params: dict) -> PipelineSpec:
    """The spec with this run's trigger-form choices applied (training data window, gate mode).

    'spec' (the default) keeps the YAML's value, so scheduled and asset-triggered runs follow the
    committed config; a bad combination fails the run naming the Param.
    """
    from pydantic import ValidationError

    from ctloop.errors import SpecError
    from ctloop.spec.models import TrainingWindow

    retrain, gates = spec.retrain, spec.gates
    window = params.get("data_window") or "spec"
    if window != "spec":
        try:
            data = TrainingWindow(window=window, last=params.get("data_last"))
        except ValidationError as exc:
            raise AirflowFailException(f"Params data_window/data_last: {exc.errors()[0]['msg']}") from exc
        if window == "days" and not spec.columns.timestamp:
            raise AirflowFailException(
                f"Params data_window: 'days' needs columns.timestamp in {spec.name}.yaml"
            )
        retrain = retrain.model_copy(update={"data": data})
    mode = params.get("gate_mode") or "spec"
    if mode not in ("spec", "enabled", "dry_run"):
        raise SpecError(f"Params gate_mode: {mode!r} is not one of spec, enabled, dry_run")
    if mode != "spec":
        gates = gates.model_copy(update={"mode": mode})
    return spec.model_copy(update={"retrain": retrain, "gates": gates})
