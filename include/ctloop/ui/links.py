"""Where the plugin's pages live, and the links Airflow shows on ctloop's task instances.

Imported by the plugin in every Airflow component, so only the standard library and Airflow's
light ``BaseOperatorLink`` at import time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from airflow.sdk.bases.operatorlink import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

PREFIX = "/ctloop"
"""Where the API server mounts the plugin's app, below Airflow's own base path."""
DAG_KINDS = ("train", "score", "monitor", "rollback", "housekeeping")
MONITOR_TASK = "monitor"
_DAG_ID = re.compile(rf"^(?P<pipeline>[a-z][a-z0-9_]{{0,62}})__(?P<kind>{'|'.join(DAG_KINDS)})$")


def split_dag_id(dag_id: str) -> tuple[str, str] | None:
    """``(pipeline, kind)`` of a ctloop DAG id such as ``churn__monitor``; None for other DAGs."""
    match = _DAG_ID.match(dag_id)
    return (match["pipeline"], match["kind"]) if match else None


def airflow_base_path() -> str:
    """Airflow's own base path (the path of ``[api] base_url``) without a trailing slash; usually
    empty. Read from the config, as the API server does, not from its app module (heavy)."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")


def pipeline_path(pipeline: str) -> str:
    return f"{PREFIX}/pipelines/{quote(pipeline, safe='')}"


def report_path(pipeline: str, run_id: str) -> str:
    return f"{pipeline_path(pipeline)}/reports/{quote(run_id, safe='')}"


class DriftReportLink(BaseOperatorLink):
    """The Evidently report a ``<pipeline>__monitor`` run wrote, on its ``monitor`` task."""

    name = "Drift report"

    def get_link(self, operator, *, ti_key: TaskInstanceKey) -> str:
        parsed = split_dag_id(ti_key.dag_id)
        if parsed is None or parsed[1] != "monitor" or ti_key.task_id != MONITOR_TASK:
            return ""  # Airflow shows no button for an empty link
        return airflow_base_path() + report_path(parsed[0], ti_key.run_id)


class PipelineLink(BaseOperatorLink):
    """The pipeline's page in the plugin (history, champion, ledger), on every ctloop task."""

    name = "ctloop pipeline"

    def get_link(self, operator, *, ti_key: TaskInstanceKey) -> str:
        parsed = split_dag_id(ti_key.dag_id)
        return airflow_base_path() + pipeline_path(parsed[0]) if parsed else ""


@dataclass(frozen=True)
class Urls:
    """Every URL a page links to, below Airflow's base path (the plugin's mount point minus
    :data:`PREFIX`, as the request saw it)."""

    airflow: str
    mlflow: str | None = None

    @classmethod
    def of(cls, mount_path: str, mlflow: str | None = None) -> Urls:
        return cls(mount_path.removesuffix(PREFIX).rstrip("/"), mlflow)

    def home(self) -> str:
        return f"{self.airflow}{PREFIX}/"

    def pipeline(self, pipeline: str) -> str:
        return self.airflow + pipeline_path(pipeline)

    def ledger(self, pipeline: str) -> str:
        return f"{self.pipeline(pipeline)}/ledger"

    def rollback(self, pipeline: str) -> str:
        return f"{self.pipeline(pipeline)}/rollback"

    def report(self, pipeline: str, run_id: str) -> str:
        return self.airflow + report_path(pipeline, run_id)

    def raw_report(self, pipeline: str, run_id: str) -> str:
        return f"{self.report(pipeline, run_id)}/raw"

    def version(self, pipeline: str, version: str) -> str:
        """The version's page: its card inside the plugin, and how it differs from the champion."""
        return f"{self.pipeline(pipeline)}/versions/{quote(version, safe='')}"

    def model_card(self, pipeline: str, version: str) -> str:
        """The card alone, sandboxed: the frame of :meth:`version`'s page."""
        return f"{self.version(pipeline, version)}/model-card"

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}"

    def dag_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.dag(dag_id)}/runs/{quote(run_id, safe='')}"

    def required_action(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Airflow's page where a person answers a task's human-in-the-loop request."""
        return f"{self.dag_run(dag_id, run_id)}/tasks/{quote(task_id, safe='')}/required_actions"

    def retrain(self, pipeline: str) -> str:
        return f"{self.pipeline(pipeline)}/retrain"

    def mlflow_run(self, run_id: str) -> str | None:
        return f"{self.mlflow}/#/runs/{quote(run_id, safe='')}" if self.mlflow else None

    def mlflow_version(self, pipeline: str, version: str) -> str | None:
        if not self.mlflow:
            return None
        return f"{self.mlflow}/#/models/{quote(pipeline, safe='')}/versions/{quote(version, safe='')}"


def mlflow_ui_url(tracking_uri: str) -> str:
    """Where people open MLflow: ``CTLOOP_MLFLOW_UI_URL``; else the tracking server itself; else,
    on the embedded default (a database URI), what ``make mlflow-ui`` serves."""
    configured = os.environ.get("CTLOOP_MLFLOW_UI_URL")
    if configured:
        return configured.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"
