"""Where the plugin's pages live, and the links on ctloop's task instances."""

from __future__ import annotations

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from ctloop.ui.links import DriftReportLink, PipelineLink, Urls, mlflow_ui_url, split_dag_id

RUN = "asset_triggered__2026-01-02T03:04:05.123+00:00_AbCd"
QUOTED = "asset_triggered__2026-01-02T03%3A04%3A05.123%2B00%3A00_AbCd"


@pytest.mark.parametrize(
    ("dag_id", "parsed"),
    [
        ("churn__monitor", ("churn", "monitor")),
        ("churn_eu__rollback", ("churn_eu", "rollback")),
        ("churn__housekeeping", ("churn", "housekeeping")),
        ("churn__monitoring", None),
        ("Churn__train", None),
        ("example_bash_operator", None),
        ("../x__train", None),
    ],
)
def test_only_ctloop_dag_ids_name_a_pipeline(dag_id: str, parsed: tuple | None) -> None:
    assert split_dag_id(dag_id) == parsed


def test_the_monitor_task_of_a_monitor_run_links_to_its_report() -> None:
    link = DriftReportLink()
    assert link.get_link(None, ti_key=TaskInstanceKey("churn__monitor", "monitor", RUN)) == (
        f"/ctloop/pipelines/churn/reports/{QUOTED}"
    )
    assert link.get_link(None, ti_key=TaskInstanceKey("churn__monitor", "request_retrain", RUN)) == ""
    assert link.get_link(None, ti_key=TaskInstanceKey("churn__train", "monitor", RUN)) == ""
    assert link.get_link(None, ti_key=TaskInstanceKey("other_dag", "monitor", RUN)) == ""


def test_every_ctloop_task_links_to_its_pipeline_and_no_other_task_does() -> None:
    link = PipelineLink()
    assert (
        link.get_link(None, ti_key=TaskInstanceKey("churn__score", "score_batch", RUN))
        == "/ctloop/pipelines/churn"
    )
    assert link.get_link(None, ti_key=TaskInstanceKey("other_dag", "t", RUN)) == ""


def test_urls_keep_airflows_base_path_and_quote_run_ids() -> None:
    urls = Urls.of("/airflow/ctloop", mlflow="http://mlflow:5000")
    assert urls.home() == "/airflow/ctloop/"
    assert urls.report("churn", RUN) == f"/airflow/ctloop/pipelines/churn/reports/{QUOTED}"
    assert urls.raw_report("churn", RUN).endswith(f"{QUOTED}/raw")
    assert urls.dag_run("churn__monitor", RUN) == f"/airflow/dags/churn__monitor/runs/{QUOTED}"
    assert urls.mlflow_run("abc") == "http://mlflow:5000/#/runs/abc"
    assert Urls.of("/ctloop").dag("churn__train") == "/dags/churn__train"
    assert Urls.of("/ctloop").mlflow_run("abc") is None


def test_the_mlflow_ui_is_the_setting_else_the_server_else_make_mlflow_ui(monkeypatch) -> None:
    monkeypatch.delenv("CTLOOP_MLFLOW_UI_URL", raising=False)
    assert mlflow_ui_url("sqlite:////tmp/mlflow.db") == "http://127.0.0.1:5000"
    assert mlflow_ui_url("https://mlflow.example.com/") == "https://mlflow.example.com"
    monkeypatch.setenv("CTLOOP_MLFLOW_UI_URL", "https://ui.example.com/")
    assert mlflow_ui_url("https://mlflow.example.com") == "https://ui.example.com"
