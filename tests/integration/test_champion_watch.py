"""Watching a new champion through real Airflow: after a bad promotion the previous champion
shadow-scores production, the labels show the new one serving worse on the same rows, and the
monitor rolls it back through the ledger and asks for a retrain; the restored champion is not
watched into another rollback, and the evidence about the bad one stays in the history."""

from __future__ import annotations

import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.scoring.prediction_log import PREDICTIONS, partition_key
from ctloop.settings import load_settings
from tests.integration.conftest import Pipeline, champion_version, run_dag, task_states
from tests.integration.test_monitor_dag import history, look, requests, retrain_events, summary_of


def _spec() -> dict:
    """Quality alone would retrain only after k-of-n and the cooldown; the watch does not wait."""
    return {
        "monitoring": {
            "window_batches": 2,
            "min_rows": 500,
            "report_sample_rows": 3000,
            "drift": {"share": 0.3},
            "quality": {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 400},
            "watch": {"min_labels": 500},
        },
        "retrain": {"cooldown_minutes": 600},
    }


@pytest.fixture
def promoted_badly(tmp_path, airflow_db):
    """v1 trained on the usual concept is champion; v2, trained on the other concept only, is
    registered by a training run and then made champion by a promotion (forced through the
    ledger when its gate rejected it), as a bad promotion would leave things."""
    created = Pipeline(tmp_path, **_spec())
    created.add_batches(3)
    assert run_dag(created.dag_id, reason="v1").state == "success"
    assert champion_version(created.name) == "1"
    other_concept = tmp_path / "other-concept"
    write_batches(other_concept, range(3), rows=800, concept_drift=True)
    created.write({**created.spec, "data": {"uri": str(other_concept), "format": "csv"}})
    run_dag(created.dag_id, reason="v2 on the other concept")
    if champion_version(created.name) != "2":
        settings = load_settings()
        moved = ledger.move_alias(
            settings,
            registry.client(settings),
            created.name,
            "2",
            expected_from="1",
            action="promotion",
            reason="a bad promotion, simulated",
        )
        assert moved.moved
    created.write(created.spec)
    yield created
    created.remove()


def _partition(pipeline, batch_id: str):
    key = partition_key(PREDICTIONS, pipeline.name, batch_id)
    return from_parquet_bytes(home_storage(load_settings()).read_bytes(key))


def test_a_worse_new_champion_is_rolled_back_and_a_retrain_is_requested(promoted_badly):
    pipeline = promoted_badly
    pipeline.deliver(range(10, 12))
    waiting, _ = look(pipeline)
    scored = _partition(pipeline, "batch-0010")
    assert set(scored["model_version"]) == {"2"}
    assert set(scored["shadow_version"]) == {"1"}
    assert scored["shadow_score"].notna().all()
    assert waiting["action"] != "rollback"
    undecided = summary_of(waiting)["champion_vs_previous"]
    assert (undecided["verdict"], undecided["rows"]) == ("undecided", 0)

    for index in range(10, 12):
        pipeline.label(index)
    entry, monitor_run = look(pipeline)

    assert entry["action"] == "rollback", entry
    assert entry["champion_version"] == "2"
    assert champion_version(pipeline.name) == "1"
    summary = summary_of(entry)
    watched = summary["champion_vs_previous"]
    assert watched["verdict"] == "rollback"
    assert watched["versions"] == {"champion": "2", "previous": "1"}
    assert (watched["rows"], watched["metric"]) == (2400, "roc_auc")
    assert watched["values"]["previous"] - watched["values"]["champion"] > 0.1
    assert watched["interval"][1] < 0
    assert entry["champion_vs_previous"]["verdict"] == "rollback"

    last = ledger.entries(load_settings(), pipeline.name)[-1]
    assert (last.action, last.from_version, last.to_version, last.user) == ("rollback", "2", "1", "monitor")
    assert last.run_key == f"{monitor_run.dag_id}/{monitor_run.run_id}"
    assert last.reason.startswith("monitor: worse: roc_auc of v2 (champion)")
    assert "on the same 2,400 labeled rows" in last.reason
    assert "95% interval [" in last.reason
    rolled = summary["decision"]["rollback"]
    assert (rolled["moved"], rolled["from"], rolled["to"]) == (True, "2", "1")
    assert rolled["notification"] in ("sent", "logged")

    (request,) = requests(pipeline)
    assert request["state"] == "open"
    assert request["reasons"][0]["text"].startswith("worse: roc_auc of v2 (champion)")
    (event,) = retrain_events(pipeline)
    assert event["reason"] == request["reasons"][0]["text"]
    assert task_states(monitor_run)["request_retrain"] == "success"

    # v1 came back by a rollback: it is not watched, and nothing rolls it back again
    pipeline.deliver(range(12, 13))
    pipeline.label(12)
    after, _ = look(pipeline)
    assert after["champion_version"] == "1"
    assert after["action"] != "rollback"
    assert "champion_vs_previous" not in summary_of(after)
    assert _partition(pipeline, "batch-0012")["shadow_version"].isna().all()
    assert champion_version(pipeline.name) == "1"
    # the bad champion's windows are still there, in the history and the summary
    assert [e["champion_version"] for e in history(pipeline)] == ["2", "2", "1"]
    recent = summary_of(after)["recent_decisions"]
    assert [(d["champion_version"], d["counts_for_k_of_n"]) for d in recent] == [("2", False), ("2", False)]
    assert recent[1]["action"] == "rollback"
