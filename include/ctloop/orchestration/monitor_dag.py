"""``<pipeline>__monitor``: drift and quality of recent production data, an Evidently report, and
the retrain decision. A confirmed alert emits the retrain asset event that starts ``__train``; a
new champion serving significantly worse than the one it replaced is rolled back by the monitor
task itself (ctloop.monitoring.champion_watch), which then asks for a retrain the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.orchestration.assets import predictions_asset, retrain_asset
from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.schedules import cron_or_assets
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.spec.models import PipelineSpec

XCOM_KEYS = (
    "run_key",
    "champion_version",
    "window",
    "decision",
    "report_uri",
    "summary_uri",
    "quality",
    "champion_vs_previous",
    "challenger_vs_champion",
)


def build_monitor_dag(spec: PipelineSpec) -> DAG:
    """The monitoring DAG of one pipeline; the work is in ctloop.monitoring."""
    retrain = retrain_asset(spec.name)

    @task(task_id="monitor")
    @ctloop_task(spec)
    def monitor(run: TaskRun) -> dict:
        from ctloop.gating.alert_metrics import fired_metrics
        from ctloop.monitoring.monitor_run import run_monitor

        summary = run_monitor(run.spec, run.settings, run.ctx)
        drift = summary.get("drift", {})
        return {
            **{k: summary[k] for k in XCOM_KEYS if k in summary},
            "drift_share": drift.get("share"),
            "drifted_columns": [c["column"] for c in drift.get("drifted_columns", [])],
            "alert_metrics": fired_metrics(run.spec, summary),
        }

    @task(task_id="request_retrain", outlets=[retrain])
    def request_retrain(summary: dict) -> dict:
        """Emit the retrain event only for a newly opened request; attached alerts ride along. The
        metrics the alert fired on travel as a list (``alert_metrics``): the train run is judged
        on them (ctloop.gating.alert_metrics)."""
        decision = summary["decision"]
        if decision.get("request") != "opened":
            raise AirflowSkipException(f"no new retrain request: {decision['why']}")
        extra = {
            "reason": "; ".join(decision["triggers"]),
            "request_id": decision["request_id"],
            "report_uri": summary["report_uri"],
            "summary_uri": summary["summary_uri"],
            "monitor_run": summary["run_key"],
            "drift_share": summary["drift_share"],
            "drifted_columns": summary["drifted_columns"],
            "quality": summary["quality"],
            "alert_metrics": summary.get("alert_metrics", []),
        }
        get_current_context()["outlet_events"][retrain].extra = extra
        return extra

    @task(task_id="circuit_breaker")
    def circuit_breaker(summary: dict) -> None:
        """Fail, for a person to see, while the breaker holds automatic retraining back."""
        from ctloop import notifications
        from ctloop.orchestration.notifier import send

        if summary["decision"]["action"] != "breaker_open":
            raise AirflowSkipException("circuit breaker closed")
        fields = {"why": summary["decision"]["why"], "report_uri": summary.get("report_uri")}
        send(notifications.CIRCUIT_BREAKER, spec.name, spec.notifications.conn_id, fields)
        raise AirflowFailException(summary["decision"]["why"])

    @dag(
        schedule=cron_or_assets(spec.schedule.monitor, [predictions_asset(spec.name)]),
        **dag_args(
            spec,
            "monitor",
            description=f"Drift and quality of {spec.name} in production; retrain on confirmed alerts.",
            doc_md=__doc__,
        ),
    )
    def monitor_pipeline() -> None:
        summary = monitor()
        # Airflow types a task's arguments as its function's parameters, not the XComArg passed here.
        request_retrain(summary)  # type: ignore[arg-type]
        circuit_breaker(summary)  # type: ignore[arg-type]

    return monitor_pipeline()
