"""``<pipeline>__monitor`` through real Airflow: reports, decisions and retrain requests.

The scheduler is not running here (``dag.test()``), so where it would start ``__train`` on the
retrain asset event, the test starts the train run itself and checks the event was emitted.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from ctloop.devtools.example_data import COVARIATE_SHIFT, ID_COLUMN, TARGET, _churn_logit, generate_batch
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.monitoring.monitor_run import history_prefix
from ctloop.settings import load_settings
from tests.integration.conftest import Pipeline, champion_version, mlflow_run, returned, run_dag, task_states

# dag.test() starts a manual run where the scheduler would start one on the retrain asset event;
# a manual run needs a reason (the trigger form's rule), which joins the monitor's in the record
ASSET_RUN = "the scheduler's run on the retrain request"


def _spec(**retrain) -> dict:
    return {
        "monitoring": {
            "window_batches": 1,
            "min_rows": 500,
            "report_sample_rows": 3000,
            "drift": {"share": 0.3},
            "quality": {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 400},
        },
        "retrain": {"cooldown_minutes": 600, "max_consecutive_rejections": 2, **retrain},
    }


@pytest.fixture
def monitored(tmp_path, airflow_db, request):
    created = Pipeline(tmp_path, **_spec(**getattr(request, "param", {})))
    created.add_batches(3)
    assert run_dag(created.dag_id, reason="v1").state == "success"
    yield created
    created.remove()


def history(pipeline) -> list[dict]:
    storage = home_storage(load_settings())
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(pipeline.name))]


def requests(pipeline) -> list[dict]:
    """The retrain requests the monitor opened (every training run also records its own)."""
    every = retrain_requests.all_requests(home_storage(load_settings()), pipeline.name)
    return [r for r in every if r["reasons"][0]["kind"] == "monitor"]


def retrain_events(pipeline) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == f"x-ctloop://{pipeline.name}/retrain-request")
            .all()
        )
        return [dict(row.extra) for row in rows]


def summary_of(entry: dict) -> dict:
    """The full monitor summary a history entry points at."""
    key = entry["summary_uri"].split("/storage/", 1)[1]
    return json.loads(home_storage(load_settings()).read_bytes(key))


def look(pipeline):
    """Score what arrived (and join the labels that landed), then monitor; returns the monitor's
    decision record and its DAG run."""
    assert run_dag(f"{pipeline.name}__score").state == "success"
    monitor_run = run_dag(f"{pipeline.name}__monitor")
    assert task_states(monitor_run)["monitor"] == "success"
    return history(pipeline)[-1], monitor_run


def cycle(pipeline, index: int, **options) -> dict:
    """A batch arrives, is scored, and the monitor looks; returns the monitor's decision record."""
    pipeline.deliver(range(index, index + 1), **options)
    return look(pipeline)[0]


def test_stable_data_never_retrains_and_covariate_shift_retrains_exactly_once(monitored):
    for index in range(10, 15):
        entry = cycle(monitored, index)
        assert (entry["alert"], entry["action"]) == (False, "hold"), entry
        assert entry["drift_share"] < 0.3
    assert requests(monitored) == []
    assert retrain_events(monitored) == []

    first, second, third = (cycle(monitored, i, shift=COVARIATE_SHIFT) for i in range(15, 18))
    assert (first["alert"], first["action"]) == (True, "hold")
    assert "k_of_n" in first["why"]
    assert second["action"] == "retrain"
    assert third["action"] == "attach"
    ((event,),) = [retrain_events(monitored)]
    assert "drift share" in event["reason"]
    assert event["report_uri"] == second["report_uri"]
    summary = json.loads(
        home_storage(load_settings()).read_bytes(second["summary_uri"].split("/storage/", 1)[1])
    )
    assert {c["column"] for c in summary["drift"]["drifted_columns"]} >= {"tenure_months", "logins_30d"}
    report = home_storage(load_settings()).read_bytes(second["report_uri"].split("/storage/", 1)[1]).decode()
    assert "evidently" in report.lower()

    train_run = run_dag(monitored.dag_id, reason=ASSET_RUN)  # what the scheduler starts on the asset event
    run = mlflow_run(monitored.name, train_run)
    assert "drift share" in run.data.tags["ctloop.reason"]
    assert second["report_uri"] in run.data.tags["ctloop.trigger_reports"]
    (request,) = requests(monitored)
    assert request["state"] == "closed"
    assert request["outcome"] in ("promoted", "rejected")
    assert [r["by"] for r in request["reasons"][:2]] == [second["run_key"], third["run_key"]]

    after = cycle(monitored, 18, shift=COVARIATE_SHIFT)
    assert after["action"] == "hold"
    assert len(requests(monitored)) == 1
    assert len(retrain_events(monitored)) == 1


@pytest.mark.parametrize("monitored", [{"k_of_n": {"k": 1, "n": 1}}], indirect=True)
def test_five_alerts_in_a_row_start_one_retrain(monitored):
    actions = [cycle(monitored, i, shift=COVARIATE_SHIFT)["action"] for i in range(20, 25)]
    assert actions == ["retrain", "attach", "attach", "attach", "attach"]
    assert len(retrain_events(monitored)) == 1
    (request,) = requests(monitored)
    assert len(request["reasons"]) == 5
    assert request["state"] == "open"
    train_run = run_dag(monitored.dag_id, reason=ASSET_RUN)
    tags = mlflow_run(monitored.name, train_run).data.tags
    assert len(tags["ctloop.trigger_reports"].split()) == 5
    assert tags["ctloop.request_id"] == request["id"]


def _concept_spec() -> dict:
    """Quality decides here: retrain on the last three labeled batches, the new concept. k-of-n
    (2 of 3) and the cooldown stay on: a severe quality drop does not wait for them."""
    spec = _spec(data={"window": "batches", "last": 3})
    spec["monitoring"] |= {
        "window_batches": 3,
        "quality": {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 1000},
    }
    return spec


@pytest.fixture
def concept(tmp_path, airflow_db):
    created = Pipeline(tmp_path, **_concept_spec())
    created.add_batches(3)
    assert run_dag(created.dag_id, reason="v1").state == "success"
    yield created
    created.remove()


def test_concept_drift_retrains_through_the_quality_rule_and_the_new_champion_recovers(concept):
    concept.deliver(range(10, 13), concept_drift=True)
    waiting, _ = look(concept)
    assert (waiting["alert"], waiting["action"]) == (False, "hold"), waiting
    assert "quality: 0 labeled rows < monitoring.quality.min_labels 1000" in waiting["why"]
    assert waiting["drift_share"] < 0.3
    assert waiting["quality"] is None
    assert retrain_events(concept) == []

    for index in range(10, 13):
        concept.label(index, concept_drift=True)
    alerted, _ = look(concept)
    assert (alerted["alert"], alerted["action"]) == (True, "retrain"), alerted
    assert alerted["drift_share"] < 0.3
    before = summary_of(alerted)["quality"]
    assert before["labeled_rows"] == 3600
    assert before["champion_value"] > 0.8
    assert before["value"] < before["champion_value"] - 0.2  # v1 scores the new concept badly
    triggers = summary_of(alerted)["decision"]["triggers"]
    (trigger,) = [t for t in triggers if t.startswith("quality ")]
    # the new concept moves the labels too: label shift is the window's only other trigger
    assert [t.split(":")[0] for t in triggers if t != trigger] == ["label shift"] * (len(triggers) - 1)
    assert len(triggers) > 1
    assert trigger.startswith(f"quality roc_auc: {before['value']:.4f} on 3,600 labeled rows is ")
    assert "max_drop 0.05" in trigger
    (rule,) = before["rules"]
    assert (rule["metric"], rule["verdict"], rule["severe"]) == ("roc_auc", "alert", True)
    assert rule["interval"][1] < rule["threshold"]  # the whole interval past the bound
    # the first alerting window: k-of-n alone would hold it, the severe drop (> 3 x 0.05) does not
    assert summary_of(alerted)["decision"]["k_of_n"] == {"k": 2, "n": 3, "alerts": 1}
    assert alerted["why"].startswith(f"severe quality drop: roc_auc {before['value']:.4f} vs the champion's")
    assert alerted["why"].endswith("k-of-n and cooldown bypassed")
    (event,) = retrain_events(concept)
    assert event["reason"] == "; ".join(triggers)
    assert event["quality"]["value"] == before["value"]
    assert event["quality"]["labeled_rows"] == 3600

    train_run = run_dag(concept.dag_id, reason=ASSET_RUN)  # what the scheduler starts on the asset event
    assert train_run.state == "success"
    assert champion_version(concept.name) == "2"
    run = mlflow_run(concept.name, train_run)
    assert run.data.tags["ctloop.promotion"].startswith("promoted")
    assert trigger in run.data.tags["ctloop.reason"]
    # about half of batch 12, the newest labeled one, is the recent holdout (gates.recent_holdout.fraction
    # 0.5); the window of three is batches 10, 11 and the rest of 12
    held = int(run.data.params["recent_holdout_rows"])
    assert 400 < held < 800
    assert int(run.data.params["train_rows"]) + int(run.data.params["holdout_rows"]) == 3 * 1200 - held
    v2_holdout = run.data.metrics["holdout_roc_auc"]

    concept.deliver(range(13, 15), concept_drift=True)
    assert run_dag(f"{concept.name}__score").state == "success"
    for index in range(13, 15):
        concept.label(index, concept_drift=True)
    recovered, _ = look(concept)
    after = summary_of(recovered)["quality"]
    assert recovered["champion_version"] == "2"
    assert after["labeled_batches"] == ["batch-0013", "batch-0014"]
    assert after["champion_value"] == pytest.approx(v2_holdout)
    assert after["value"] >= v2_holdout - 0.05
    assert after["value"] > before["value"] + 0.2
    assert (recovered["alert"], recovered["action"]) == (False, "hold"), recovered
    assert len(retrain_events(concept)) == 1


@pytest.mark.parametrize("monitored", [{"k_of_n": {"k": 1, "n": 1}, "cooldown_minutes": 0}], indirect=True)
def test_circuit_breaker_stops_retraining_after_repeated_rejections(monitored):
    monitored.spec["gates"]["rules"].append({"metric": "roc_auc", "min_improvement": 0.5})
    monitored.write(monitored.spec)  # v1 is champion; from now on the gate rejects every candidate

    for rejections, index in enumerate((30, 31), start=1):
        monitored.deliver(range(index, index + 1), shift=COVARIATE_SHIFT)
        entry, monitor_run = look(monitored)
        assert entry["action"] == "retrain", entry
        assert task_states(monitor_run)["circuit_breaker"] == "skipped"
        assert len(retrain_events(monitored)) == rejections
        train_run = run_dag(monitored.dag_id, reason=ASSET_RUN)
        states = task_states(train_run)
        assert (states["promote"], states["record_outcome"]) == ("skipped", "success")
        gate = mlflow_run(monitored.name, train_run).data.tags["ctloop.gate_summary"]
        assert gate.startswith("gate rejected")
        assert "must be >= +0.5000" in gate
        assert champion_version(monitored.name) == "1"
    assert [(r["state"], r["outcome"]) for r in requests(monitored)] == [("closed", "rejected")] * 2

    monitored.deliver(range(32, 33), shift=COVARIATE_SHIFT)
    entry, monitor_run = look(monitored)
    assert (entry["alert"], entry["action"]) == (True, "breaker_open"), entry
    assert entry["run_key"] == f"{monitor_run.dag_id}/{monitor_run.run_id}"
    assert "retrain.max_consecutive_rejections 2" in entry["why"]
    states = task_states(monitor_run)
    assert (states["request_retrain"], states["circuit_breaker"]) == ("skipped", "failed")
    assert monitor_run.state == "failed"
    assert len(retrain_events(monitored)) == 2
    assert len(requests(monitored)) == 2
    tags = mlflow_run(f"{monitored.name}-monitoring", monitor_run).data.tags
    assert tags["ctloop.decision"] == "breaker_open"
    assert "retrain.max_consecutive_rejections 2" in tags["ctloop.why"]


def test_before_any_champion_the_monitor_holds_and_says_why(pipeline):
    dag_run = run_dag(f"{pipeline.name}__monitor")  # e.g. the cron tick that unpausing starts
    assert dag_run.state == "success"
    states = task_states(dag_run)
    assert states == {"monitor": "success", "request_retrain": "skipped", "circuit_breaker": "skipped"}
    assert history(pipeline) == []
    assert retrain_events(pipeline) == []


Relabel = Callable[[pd.DataFrame, np.random.Generator], np.ndarray]


def labeled_window(pipeline, index: int, relabel: Relabel | None = None):
    """Batch ``index`` arrives and is scored, its labels land, then the monitor looks at it (the
    window is one batch); ``relabel`` gives the labels from the batch as the example generator
    drew it (features and label) and a generator seeded by ``index``."""
    pipeline.deliver(range(index, index + 1))
    assert run_dag(f"{pipeline.name}__score").state == "success"
    path = pipeline.label(index)
    if relabel is not None:
        labels = pd.read_csv(path)
        drawn = generate_batch(len(labels), seed=7, batch_index=index)  # the rows write_labels drew
        assert labels[ID_COLUMN].tolist() == drawn[ID_COLUMN].tolist()
        labels[TARGET] = relabel(drawn, np.random.default_rng(index))
        labels.to_csv(path, index=False)
    return look(pipeline)


def _fewer_positives(batch: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """A prior shift: half the positive labels become negative, the features stay as they were."""
    labels = batch[TARGET].to_numpy()
    return np.where((labels == 1) & (rng.random(len(labels)) < 0.5), 0, labels)


# the example's rules (ranking, decisions, calibration) and log_loss, judged on one 1,200-row batch
EVERY_KIND_OF_RULE = [
    {"metric": "roc_auc", "max_drop": 0.05},
    {"metric": "accuracy", "max_drop": 0.04},
    {"metric": "brier", "max_drop": 0.03},
    {"metric": "log_loss", "max_drop": 0.03},
]


def _drawn(logit_change: Callable[[np.ndarray], np.ndarray]) -> Relabel:
    """Labels drawn as the example generator draws them, P(churn) = sigmoid(logit), from a changed
    logit: the features, and so the champion's scores, stay as they were."""

    def relabel(batch: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        probability = 1 / (1 + np.exp(-logit_change(_churn_logit(batch, False))))
        return (rng.random(len(batch)) < probability).astype(int)

    return relabel


def fired(entry: dict) -> dict[str, list[str]]:
    """The window's triggers by kind, and the quality rules that alerted."""
    summary = summary_of(entry)
    triggers = summary["decision"]["triggers"]
    rules = [r["metric"] for r in summary["quality"]["rules"] if r["verdict"] == "alert"]
    drift = [t for t in triggers if t.startswith(("drift share", "key feature"))]
    return {"rules": rules, "drift": drift, "triggers": triggers}


def test_each_kind_of_label_change_fires_its_own_signal_and_noisy_stable_labels_fire_none(monitored):
    """Features never move here (drift stays quiet); only the labels do. The example's labels are
    drawn, not thresholded: about a quarter disagree with the generator's own decision, a noisy
    stable stream that must fire nothing. Moving the labelling threshold leaves the champion's
    ranking right and its decisions wrong (accuracy fires, roc_auc does not); flattening P(churn)
    toward 0.5 around the same boundary leaves it over-confident (log_loss fires, roc_auc does
    not); fewer positive labels is a prior shift (label shift fires, drift does not)."""
    monitored.spec["monitoring"]["quality"] = {"rules": EVERY_KIND_OF_RULE, "min_labels": 400}
    monitored.write(monitored.spec)

    stable, stable_run = labeled_window(monitored, 50)
    drawn = generate_batch(1200, seed=7, batch_index=50)
    assert np.mean(drawn[TARGET] != (_churn_logit(drawn, False) > 0)) > 0.2  # the label noise
    assert fired(stable) == {"rules": [], "drift": [], "triggers": []}, summary_of(stable)["decision"]
    assert (stable["alert"], stable["action"]) == (False, "hold")
    assert returned(stable_run, "monitor")["alert_metrics"] == []

    threshold, monitor_run = labeled_window(monitored, 51, _drawn(lambda logit: logit + 1.5))
    signals = fired(threshold)
    assert "accuracy" in signals["rules"], summary_of(threshold)["quality"]["rules"]
    assert "roc_auc" not in signals["rules"]
    # what a retrain it asks for is judged on (ctloop.gating.alert_metrics), handed on as data
    alert_metrics = returned(monitor_run, "monitor")["alert_metrics"]
    assert alert_metrics[0] == "accuracy"
    assert "roc_auc" not in alert_metrics
    assert signals["drift"] == []
    assert any(t.startswith("quality accuracy: ") for t in signals["triggers"])
    assert threshold["alert"] is True
    (accuracy,) = [r for r in threshold["quality_rules"] if r["metric"] == "accuracy"]
    assert accuracy["interval"][1] < accuracy["reference"] - 0.04

    flattened, _ = labeled_window(monitored, 52, _drawn(lambda logit: 0.8 * logit))
    signals = fired(flattened)
    assert {"brier", "log_loss"} & set(signals["rules"]), summary_of(flattened)["quality"]["rules"]
    assert "roc_auc" not in signals["rules"], summary_of(flattened)["quality"]["rules"]
    assert signals["drift"] == []
    assert any(t.startswith(("quality log_loss: ", "quality brier: ")) for t in signals["triggers"])

    # the prior shift: fewer positive labels, features unchanged. Drift stays quiet, label
    # shift fires and is recorded in the summary, the history and the monitor's MLflow run; the
    # estimate, which reads only features and scores, does not move
    prior, monitor_run = labeled_window(monitored, 53, _fewer_positives)
    summary = summary_of(prior)
    shift = {s["name"]: s for s in summary["label_shift"]["signals"]}
    assert shift["label_rate"]["verdict"] == "alert", shift
    assert shift["label_rate"]["value"] < shift["label_rate"]["reference"] - 0.05
    assert shift["label_rate"]["rows"] == 1200
    assert any(t.startswith("label shift: label_rate: ") for t in fired(prior)["triggers"])
    assert fired(prior)["drift"] == []
    assert summary["estimate"]["verdict"] == "ok", summary["estimate"]["why"]
    assert (prior["alert"], prior["label_shift"]["verdict"]) == (True, "alert")
    tags = mlflow_run(f"{monitored.name}-monitoring", monitor_run).data.tags
    assert tags["ctloop.label_shift.label_rate"] == "alert"
