"""Promotion governance end to end through ``dag.test()``: every gate rule on a real registry,
the ledger, model cards, dry run, rollback (DAG and CLI) and notifications to a loopback webhook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.integration.conftest import Pipeline, champion_version, mlflow_run, run_dag, task_states
from tests.webhook import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("governance")]
WEBHOOK_PASSWORD = "s3cr3t-webhook-token"


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    port = hook.server.server_address[1]
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "password": WEBHOOK_PASSWORD}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_CTLOOP_WEBHOOK", json.dumps(conn))
        yield hook
    hook.server.shutdown()


@pytest.fixture(scope="module")
def governed(tmp_path_factory, airflow_db, webhook):
    """v1 trained on a little data, v2 on much more: v2 beats v1 beyond bootstrap noise."""
    pipeline = Pipeline(tmp_path_factory.mktemp("governed"))
    pipeline.add_batches(1, rows=300)
    first = run_dag(pipeline.dag_id, reason="first training")
    pipeline.add_batches(4, rows=1000)
    second = run_dag(pipeline.dag_id, reason="more data")
    yield pipeline, first, second
    pipeline.remove()


def _decision(pipeline: Pipeline, dag_run) -> dict:
    client = registry.client(load_settings())
    run = mlflow_run(pipeline.name, dag_run)
    return json.loads(Path(client.download_artifacts(run.info.run_id, "gate/decision.json")).read_text())


def _card(pipeline: Pipeline, dag_run) -> str:
    client = registry.client(load_settings())
    run = mlflow_run(pipeline.name, dag_run)
    return Path(client.download_artifacts(run.info.run_id, "model_card.html")).read_text()


def test_every_rule_reports_value_bound_and_verdict(governed):
    pipeline, first, second = governed
    assert champion_version(pipeline.name) == "2", task_states(second)
    decision = _decision(pipeline, second)
    kinds = {r["rule"] for r in decision["rules"]}
    assert {
        "threshold",
        "relative",
        "bootstrap",
        "slice_regression",
        "slice_gap",
        "validity",
        "latency",
    } <= kinds
    for rule in decision["rules"]:
        assert {"metric", "kind", "value", "bound", "passed", "note"} <= set(rule), rule
        assert rule["passed"] is not False, rule
    bootstrap = next(r for r in decision["rules"] if r["rule"] == "bootstrap")
    assert bootstrap["interval"][0] == bootstrap["value"] >= 0.0
    assert {s["slice"] for s in decision["slices"]} >= {"contract=month_to_month", "contract=two_year"}
    assert decision["latency"]["single_ms"]["p95"] > 0
    first_rules = {r["rule"]: r for r in _decision(pipeline, first)["rules"]}
    assert first_rules["bootstrap"]["passed"] is None  # no champion to compare with yet


def test_ledger_records_each_promotion_with_its_evidence(governed):
    pipeline, _, second = governed
    moves = ledger.entries(load_settings(), pipeline.name)
    assert [(m.seq, m.action, m.from_version, m.to_version) for m in moves] == [
        (1, "promotion", None, "1"),
        (2, "promotion", "1", "2"),
    ]
    assert moves[1].reason == "more data"
    assert moves[1].run_key == f"{second.dag_id}/{second.run_id}"
    assert "bootstrap" in moves[1].gate_decision or "gate passed" in moves[1].gate_decision
    assert moves[1].evidence["snapshot"].endswith(".parquet")


def test_every_version_has_a_model_card(governed):
    pipeline, first, second = governed
    card = _card(pipeline, second)
    for fragment in ("more data", "contract=two_year", "bootstrap", "latency", "v1", "promoted"):
        assert fragment in card, fragment
    assert "first training" in _card(pipeline, first)


def test_promotions_are_notified_without_secrets(governed, webhook):
    pipeline, _, _ = governed
    assert webhook.events(pipeline.name)[:2] == ["promotion", "promotion"]
    delivered = [r for r in webhook.received if r["body"]["pipeline"] == pipeline.name]
    assert all(r["Authorization"] == f"Bearer {WEBHOOK_PASSWORD}" for r in delivered)
    assert not any(WEBHOOK_PASSWORD in r["raw"] for r in delivered)


def test_a_failing_rule_rejects_and_leaves_the_champion(governed, webhook):
    """An impossible latency limit: the version is registered, judged, rejected, carded."""
    pipeline, _, _ = governed
    generous = pipeline.spec["gates"]["latency"]
    pipeline.spec["gates"]["latency"] = {"batch_rows": 100, "repeats": 5, "single_p95_ms": 0.0001}
    pipeline.write(pipeline.spec)
    pipeline.add_batches(2, rows=1000)
    try:
        dag_run = run_dag(pipeline.dag_id, reason="too slow")
    finally:
        pipeline.spec["gates"]["latency"] = generous
        pipeline.write(pipeline.spec)
    assert task_states(dag_run)["promote"] == "skipped"
    assert champion_version(pipeline.name) == "2"
    version = registry.client(load_settings()).get_model_version(pipeline.name, "3")
    assert version.tags["ctloop.gate"] == "rejected"
    assert "single_p95_ms" in version.tags["ctloop.gate_summary"]
    assert "FAIL" in _card(pipeline, dag_run)
    assert webhook.events(pipeline.name)[-1] == "rejection"
    assert len(ledger.entries(load_settings(), pipeline.name)) == 2


def test_dry_run_records_the_decision_and_never_promotes(governed):
    pipeline, _, _ = governed
    pipeline.spec["gates"]["mode"] = "dry_run"
    pipeline.spec["gates"]["rules"] = [{"metric": "roc_auc", "at_least": 0.5}]  # passes whatever
    pipeline.spec["gates"]["bootstrap"]["margin"] = -1.0
    pipeline.write(pipeline.spec)
    try:
        dag_run = run_dag(pipeline.dag_id, reason="dry run")
    finally:
        pipeline.spec["gates"]["mode"] = "enabled"
        pipeline.write(pipeline.spec)
    decision = _decision(pipeline, dag_run)
    assert decision["mode"] == "dry_run"
    assert decision["promote"] is False
    assert "dry run" in decision["summary"]
    assert task_states(dag_run)["promote"] == "skipped"
    assert champion_version(pipeline.name) == "2"
    assert len(ledger.entries(load_settings(), pipeline.name)) == 2


def test_trigger_form_asks_for_a_dry_run_on_a_recent_window(governed):
    """What a person picks in the Trigger form overrides the YAML for that run only."""
    pipeline, _, _ = governed
    dag_run = run_dag(
        pipeline.dag_id, reason="try recent data", data_window="batches", data_last=2, gate_mode="dry_run"
    )
    tags = mlflow_run(pipeline.name, dag_run).data.tags
    assert (tags["ctloop.data_window"], tags["ctloop.gate_mode"]) == ("batches:2", "dry_run")
    assert _decision(pipeline, dag_run)["mode"] == "dry_run"
    assert champion_version(pipeline.name) == "2"
    assert len(ledger.entries(load_settings(), pipeline.name)) == 2


def test_trigger_form_window_without_n_fails_naming_the_param(governed, capsys):
    pipeline, _, _ = governed
    dag_run = run_dag(pipeline.dag_id, reason="window without N", data_window="days")
    assert task_states(dag_run)["snapshot"] == "failed"
    assert "Params data_window/data_last" in capsys.readouterr().out
    assert champion_version(pipeline.name) == "2"


def test_rollback_to_previous_then_to_a_named_version(governed, webhook):
    pipeline, _, _ = governed
    dag_run = run_dag(f"{pipeline.name}__rollback", target="previous", reason="v2 misbehaves")
    assert task_states(dag_run) == {"rollback": "success"}
    assert champion_version(pipeline.name) == "1"
    last = ledger.entries(load_settings(), pipeline.name)[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == (
        "rollback",
        "2",
        "1",
        "v2 misbehaves",
    )
    assert last.run_key == f"{dag_run.dag_id}/{dag_run.run_id}"
    assert webhook.events(pipeline.name)[-1] == "rollback"
    v1 = registry.client(load_settings()).get_model_version(pipeline.name, "1")
    # the drift reference and the expectation suite are v1's again, and the ledger says which
    assert last.evidence["reference_snapshot_sha256"] == v1.tags["ctloop.data_sha256"]
    assert last.evidence["expectation_suite"] == v1.tags["ctloop.suite_key"].strip() != ""

    dag_run = run_dag(f"{pipeline.name}__rollback", target="2", reason="fixed upstream")
    assert champion_version(pipeline.name) == "2"
    assert ledger.entries(load_settings(), pipeline.name)[-1].to_version == "2"


def test_rollback_refuses_a_never_gated_target_unless_forced(governed, capsys):
    pipeline, _, _ = governed
    before = ledger.entries(load_settings(), pipeline.name)
    dag_run = run_dag(f"{pipeline.name}__rollback", target="3", reason="try v3")
    assert task_states(dag_run) == {"rollback": "failed"}
    assert "v3 never passed its promotion gates" in capsys.readouterr().out
    assert champion_version(pipeline.name) == "2"
    assert ledger.entries(load_settings(), pipeline.name) == before

    dag_run = run_dag(f"{pipeline.name}__rollback", target="3", reason="latency is fine in prod", force=True)
    assert champion_version(pipeline.name) == "3"
    forced = ledger.entries(load_settings(), pipeline.name)[-1]
    assert forced.action == "override"
    assert "latency is fine in prod" in forced.reason
    run_dag(f"{pipeline.name}__rollback", target="previous", reason="back to v2")
    assert champion_version(pipeline.name) == "2"


def test_cli_rolls_back_and_prints_the_ledger(governed, capsys):
    from ctloop.cli import main

    pipeline, _, _ = governed
    assert main(["rollback", pipeline.name, "--to", "3", "--reason", "cli"]) == 2
    assert "v3 never passed its promotion gates" in capsys.readouterr().err
    assert champion_version(pipeline.name) == "2"
    assert main(["rollback", pipeline.name, "--to", "1", "--reason", "from the shell"]) == 0
    assert champion_version(pipeline.name) == "1"
    assert main(["rollback", pipeline.name, "--reason", "undo"]) == 0  # previous: v2 again
    assert champion_version(pipeline.name) == "2"
    assert main(["ledger", pipeline.name]) == 0
    printed = capsys.readouterr().out
    assert "rollback: v2 -> v1 by cli:" in printed
    assert "from the shell" in printed
    assert "rollback: v1 -> v2" in printed
    assert "override: v2 -> v3" in printed
