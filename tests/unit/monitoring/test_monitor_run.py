"""One monitor run on generated data, against a champion registered in this worker's MLflow store:
what it decides (hold, retrain, undecided for lack of rows) and what it writes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from ctloop import clock
from ctloop.data.snapshots import load_snapshot, take_snapshot
from ctloop.devtools.example_data import COVARIATE_SHIFT, TARGET, generate_batch, write_batches
from ctloop.errors import RollbackRefused
from ctloop.evaluation.model_scores import evaluate
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring import monitor_run, retrain_requests
from ctloop.monitoring.champion_watch import MetricComparison, PairedComparison
from ctloop.monitoring.drift_stats import column_drift
from ctloop.monitoring.monitor_run import history_prefix, run_monitor
from ctloop.monitoring.retrain_policy import HOLD, RETRAIN
from ctloop.registry import mlflow_store as registry
from ctloop.registry.mlflow_store import LoggedModel
from ctloop.registry.rollback import RollbackOutcome
from ctloop.scoring.batches import logged_columns, model_predictions, predict
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, partition_key
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from ctloop.training.steps import RunContext
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import (
    multiclass_batch,
    multiclass_spec,
    regression_batch,
    regression_spec,
)

TRAINING_ROWS, BATCH_ROWS = 1500, 700
MIN_ROWS = 1000  # two batches of the window reach it, one does not


@dataclass(frozen=True)
class Trained:
    """A model fitted once for the module, logged to one MLflow run with its holdout metric."""

    data: Path
    model: Any
    logged: LoggedModel
    run_id: str
    holdout_roc_auc: float


def _spec(data: Path, **monitoring: Any) -> PipelineSpec:
    """A pipeline of its own over ``data``: one alerting window is enough to ask for a retrain."""
    raw = example_spec(f"mr{uuid.uuid4().hex[:10]}", str(data))
    raw["monitoring"] = {
        "window_batches": 2,
        "min_rows": MIN_ROWS,
        "report_sample_rows": 500,
        "drift": {"share": 0.3, "key_features": ["tenure_months"]},
        "quality": {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 200},
        **monitoring,
    }
    raw["retrain"]["k_of_n"] = {"k": 1, "n": 1}
    return PipelineSpec.model_validate(raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    data = tmp_path_factory.mktemp("monitor") / "training"
    write_batches(data, range(1), rows=TRAINING_ROWS)
    settings, spec = load_settings(), _spec(data)
    model = fit(spec, load_snapshot(take_snapshot(spec, settings)["key"], settings))
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, spec.name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(client, experiment, f"{spec.name}__train/manual__1", {})
    holdout = generate_batch(BATCH_ROWS, seed=99)
    holdout_roc_auc = evaluate(model, holdout, spec)["roc_auc"]
    client.log_metric(run_id, "holdout_roc_auc", holdout_roc_auc)
    logged = registry.log_model(model, holdout[spec.columns.features].head(50), run_id)
    return Trained(data, model, logged, run_id, holdout_roc_auc)


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def _champion(spec: PipelineSpec, settings: Settings, trained: Trained) -> str:
    """Register the module's model as ``spec``'s champion, trained on ``spec``'s snapshot, as a
    training run leaves it: the snapshot's sha256 and the artifact's checksum on the version."""
    snapshot = take_snapshot(spec, settings)
    client = registry.client(settings)
    version = registry.register_version(
        client,
        spec.name,
        trained.logged,
        trained.run_id,
        f"{spec.name}__train/manual__1",
        {"ctloop.data_sha256": snapshot["sha256"]},
    )
    client.set_registered_model_alias(spec.name, registry.CHAMPION, version.version)
    return str(version.version)


def _score(
    spec: PipelineSpec, settings: Settings, trained: Trained, version: str, index: int, **options: Any
) -> pd.DataFrame:
    """Production batch ``index`` scored by the champion into the prediction log, as scoring
    writes it; returns the batch with its labels."""
    batch = generate_batch(BATCH_ROWS, seed=5, batch_index=index, **options)
    logged = batch[logged_columns(spec)].copy()
    logged["prediction"], logged["score"] = predict(trained.model, batch, spec)
    logged["model_version"] = version
    logged["batch_id"] = f"b{index:04d}"
    logged["scored_at"] = pd.Timestamp("2026-02-01", tz="UTC")
    key = partition_key(PREDICTIONS, spec.name, f"b{index:04d}")
    home_storage(settings).write_bytes(key, to_parquet_bytes(logged))
    return batch.assign(**{c: logged[c] for c in ("prediction", "score", "model_version", "batch_id")})


def _label(spec: PipelineSpec, settings: Settings, scored: pd.DataFrame) -> None:
    """The batch's labeled partition, as the label join writes it."""
    key = partition_key(LABELED, spec.name, str(scored["batch_id"].iloc[0]))
    home_storage(settings).write_bytes(key, to_parquet_bytes(scored))


def _context(spec: PipelineSpec, run: int = 1) -> RunContext:
    return RunContext(dag_id=f"{spec.name}__monitor", run_id=f"manual__{run}", reason="test")


def _history(spec: PipelineSpec, settings: Settings) -> list[dict[str, Any]]:
    storage = home_storage(settings)
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(spec.name))]


def test_without_a_champion_the_monitor_holds_and_writes_nothing(tmp_path: Path, settings: Settings) -> None:
    spec = _spec(tmp_path)

    summary = run_monitor(spec, settings, _context(spec))

    assert summary["decision"]["action"] == HOLD
    assert summary["decision"]["alert"] is False
    assert "no champion yet" in summary["decision"]["why"]
    assert _history(spec, settings) == []


def test_before_any_batch_is_scored_the_monitor_holds(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)

    summary = run_monitor(spec, settings, _context(spec))

    assert summary["champion_version"] == version
    assert summary["window"] == {"batches": [], "rows": 0}
    assert summary["decision"]["action"] == HOLD
    assert summary["decision"]["why"] == "no batch has been scored yet"


def test_a_stable_window_holds_and_the_run_is_recorded(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(3):
        _score(spec, settings, trained, version, index)
    ctx, storage = _context(spec), home_storage(settings)

    summary = run_monitor(spec, settings, ctx)

    decision = summary["decision"]
    assert decision["action"] == HOLD
    assert decision["alert"] is False
    assert decision["triggers"] == []
    assert decision["why"].startswith("no trigger crossed")
    assert summary["window"] == {"batches": ["b0001", "b0002"], "rows": 2 * BATCH_ROWS}
    assert summary["drift"]["share"] < 0.3
    assert "tenure_months" not in [c["column"] for c in summary["drift"]["drifted_columns"]]
    assert len(summary["drift"]["columns"]) == len(spec.columns.features)
    assert summary["reference"]["rows"] == TRAINING_ROWS
    assert retrain_requests.all_requests(storage, spec.name) == []
    (entry,) = _history(spec, settings)
    assert entry["action"] == HOLD
    assert entry["champion_version"] == version
    assert entry["summary_uri"] == summary["summary_uri"]
    # each feature's own test, in the spec's order, for the per-feature drift chart
    assert [c["column"] for c in entry["feature_drift"]] == [c["column"] for c in summary["drift"]["columns"]]
    assert {tuple(sorted(c)) for c in entry["feature_drift"]} == {
        ("column", "drifted", "score", "stattest", "threshold")
    }
    assert not any(c["drifted"] for c in entry["feature_drift"] if c["column"] == "tenure_months")
    assert summary["summary_uri"] == storage.uri(f"{ctx.storage_prefix}/summary.json")
    assert json.loads(storage.read_bytes(f"{ctx.storage_prefix}/summary.json")) == json.loads(
        json.dumps(summary, default=str)
    )
    assert summary["report_uri"] == storage.uri(f"{ctx.storage_prefix}/report.html")
    assert b"ctloop-banner" in storage.read_bytes(f"{ctx.storage_prefix}/report.html")


def test_a_shifted_window_asks_for_a_retrain_and_says_why(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(2):
        _score(spec, settings, trained, version, index, shift=COVARIATE_SHIFT)

    summary = run_monitor(spec, settings, _context(spec))

    decision = summary["decision"]
    assert decision["action"] == RETRAIN
    assert decision["alert"] is True
    assert decision["new_evidence"] is True
    assert "key feature(s) drifted: tenure_months" in decision["triggers"]
    assert any(t.startswith("drift share ") for t in decision["triggers"])
    drifted = [c["column"] for c in summary["drift"]["drifted_columns"]]
    assert set(COVARIATE_SHIFT) <= set(drifted)
    assert summary["drift"]["share"] >= 0.3
    # the report's headline judges by the pipeline's threshold, not Evidently's default 0.5
    assert summary["evidently"]["drift"]["drifted_columns"]["threshold"] == spec.monitoring.drift.share == 0.3
    assert decision["request"] == "opened"
    (request,) = retrain_requests.all_requests(home_storage(settings), spec.name)
    assert request["id"] == decision["request_id"]
    assert request["state"] == retrain_requests.OPEN
    assert request["reasons"][0]["kind"] == "monitor"
    assert request["reasons"][0]["report_uri"] == summary["report_uri"]
    (entry,) = _history(spec, settings)
    assert entry["action"] == RETRAIN
    assert entry["alert"] is True
    assert {c["column"] for c in entry["feature_drift"] if c["drifted"]} == set(drifted)
    (tenure,) = [c for c in entry["feature_drift"] if c["column"] == "tenure_months"]
    assert (tenure["score"], tenure["threshold"]) == next(
        (c["score"], c["threshold"]) for c in summary["drift"]["columns"] if c["column"] == "tenure_months"
    )


def test_the_monitor_records_and_decides_on_the_simulated_clock(trained: Trained, settings: Settings) -> None:
    """A retrain closed at simulated T - 1 h holds a replayed alert at T (cooldown 360 min), and the
    run is stamped T, whatever the wall clock says."""
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(2):
        _score(spec, settings, trained, version, index, shift=COVARIATE_SHIFT)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with clock.simulated(at - timedelta(hours=1)):
        retrain_requests.request_retrain(settings, spec.name, {"kind": "monitor", "text": "earlier"})
        retrain_requests.claim(settings, spec.name, "train/run-1", {"kind": "asset", "text": "asset"})
        retrain_requests.close(settings, spec.name, "train/run-1", retrain_requests.PROMOTED, version)

    with clock.simulated(at):
        summary = run_monitor(spec, settings, _context(spec))

    assert summary["at"] == "2026-03-01T12:00:00+00:00"
    assert summary["decision"]["action"] == HOLD
    assert summary["decision"]["why"].startswith(
        "in cooldown: the last retrain an alert asked for ended 2026-03-01"
    )
    (entry,) = _history(spec, settings)
    assert entry["at"] == summary["at"]


def test_the_decision_and_its_figures_go_to_an_mlflow_run(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(2):
        _score(spec, settings, trained, version, index, shift=COVARIATE_SHIFT)
    ctx = _context(spec)

    summary = run_monitor(spec, settings, ctx)

    client = registry.client(settings)
    experiment = client.get_experiment_by_name(f"{spec.name}-monitoring")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags[registry.RUN_KEY_TAG] == ctx.run_key
    assert run.data.tags["ctloop.decision"] == RETRAIN
    assert run.data.tags["ctloop.champion_version"] == version
    assert run.data.metrics["drift_share"] == pytest.approx(summary["drift"]["share"])
    assert run.data.metrics["current_rows"] == 2 * BATCH_ROWS
    assert run.info.status == "FINISHED"


def test_too_few_rows_leave_drift_undecided_and_named(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    _score(spec, settings, trained, version, 0, shift=COVARIATE_SHIFT)

    summary = run_monitor(spec, settings, _context(spec))

    decision = summary["decision"]
    assert decision["action"] == HOLD
    assert decision["alert"] is False
    assert decision["triggers"] == []
    named = f"drift: {BATCH_ROWS} rows < monitoring.min_rows {MIN_ROWS}"
    assert named in decision["undecided"]
    assert named in decision["why"]
    assert summary["drift"]["share"] >= 0.3  # measured and reported, not acted on
    assert retrain_requests.all_requests(home_storage(settings), spec.name) == []


def test_labels_measure_quality_against_the_champions_holdout(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(2):
        _label(spec, settings, _score(spec, settings, trained, version, index))

    summary = run_monitor(spec, settings, _context(spec))

    quality = summary["quality"]
    assert quality["labeled_rows"] == 2 * BATCH_ROWS
    assert quality["labeled_batches"] == ["b0000", "b0001"]
    assert quality["champion_value"] == pytest.approx(trained.holdout_roc_auc)
    assert quality["value"] == pytest.approx(quality["metrics"]["roc_auc"])
    assert quality["value"] > 0.6
    assert not [u for u in summary["decision"]["undecided"] if u.startswith("quality")]
    assert summary["decision"]["action"] == HOLD


def test_every_quality_rule_is_judged_recorded_logged_and_kept_in_the_history(
    trained: Trained, settings: Settings
) -> None:
    """Labels the champion gets wrong fire roc_auc at once; the module's run has no holdout
    accuracy or brier (a version trained before they were kept), so those rules stay undecided."""
    rules = [{"metric": "roc_auc", "max_drop": 0.05}, {"metric": "accuracy", "max_drop": 0.04}]
    rules.append({"metric": "brier", "max_drop": 0.03})
    spec = _spec(trained.data, quality={"rules": rules, "min_labels": 200, "resamples": 200})
    version = _champion(spec, settings, trained)
    for index in range(2):
        scored = _score(spec, settings, trained, version, index)
        _label(spec, settings, scored.assign(**{TARGET: 1 - scored[TARGET]}))
    ctx = _context(spec)

    summary = run_monitor(spec, settings, ctx)

    quality = summary["quality"]
    assert [r["metric"] for r in quality["rules"]] == ["roc_auc", "accuracy", "brier"]
    auc, accuracy, brier = quality["rules"]
    assert (auc["verdict"], auc["severe"], auc["reference_source"]) == ("alert", True, "holdout")
    assert auc["reference"] == pytest.approx(trained.holdout_roc_auc)
    assert auc["value"] == pytest.approx(quality["metrics"]["roc_auc"])
    assert auc["interval"][0] <= auc["value"] <= auc["interval"][1] < auc["threshold"]
    assert (quality["metric"], quality["value"], quality["champion_value"]) == (
        "roc_auc",
        auc["value"],
        auc["reference"],
    )
    for rule in (accuracy, brier):
        assert (rule["verdict"], rule["reference"], rule["interval"]) == ("undecided", None, None)
        assert rule["value"] == pytest.approx(quality["metrics"][rule["metric"]])
        assert f"its run has no holdout_{rule['metric']}" in rule["why"]
    decision = summary["decision"]
    assert (decision["action"], decision["severe"]) == (RETRAIN, True)
    named = [t.split(":")[0] for t in decision["triggers"] if t.startswith("quality")]
    assert named == ["quality roc_auc"]
    undecided = [u.split(":")[0] for u in decision["undecided"] if u.startswith("quality")]
    assert undecided == ["quality accuracy", "quality brier"]

    client = registry.client(settings)
    experiment = client.get_experiment_by_name(f"{spec.name}-monitoring")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["quality.roc_auc"] == pytest.approx(auc["value"])
    assert run.data.metrics["quality.roc_auc.reference"] == pytest.approx(auc["reference"])
    assert run.data.metrics["quality.roc_auc.high"] == pytest.approx(auc["interval"][1])
    assert run.data.metrics["quality.brier"] == pytest.approx(brier["value"])
    assert "quality.brier.reference" not in run.data.metrics
    verdicts = {k: v for k, v in run.data.tags.items() if k.startswith("ctloop.quality.")}
    assert verdicts == {
        "ctloop.quality.roc_auc": "alert",
        "ctloop.quality.accuracy": "undecided",
        "ctloop.quality.brier": "undecided",
    }
    (entry,) = _history(spec, settings)
    assert [(r["metric"], r["verdict"], r["severe"]) for r in entry["quality_rules"]] == [
        ("roc_auc", "alert", True),
        ("accuracy", "undecided", False),
        ("brier", "undecided", False),
    ]
    assert entry["quality_rules"][0]["interval"] == auc["interval"]


def test_a_second_run_on_the_same_window_has_nothing_new_to_decide(
    trained: Trained, settings: Settings
) -> None:
    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    for index in range(2):
        _score(spec, settings, trained, version, index, shift=COVARIATE_SHIFT)
    first = run_monitor(spec, settings, _context(spec, 1))

    second = run_monitor(spec, settings, _context(spec, 2))

    assert first["decision"]["action"] == RETRAIN
    assert second["decision"]["action"] == HOLD
    assert second["decision"]["new_evidence"] is False
    assert f"since monitor run {first['run_key']}" in second["decision"]["why"]
    assert len(retrain_requests.all_requests(home_storage(settings), spec.name)) == 1
    assert len(_history(spec, settings)) == 2


REGRESSED = PairedComparison(
    versions={"champion": "2", "previous": "1"},
    rows=2400,
    metric="roc_auc",
    values={"champion": 0.61, "previous": 0.87},
    difference=-0.26,
    interval=[-0.29, -0.23],
    confidence=0.95,
    verdict="rollback",
    why="regression: v2 serves roc_auc 0.6100 against v1's 0.8700 on the same 2,400 labeled rows",
)


def test_the_monitor_rolls_back_to_the_previous_champion_as_its_own_user_and_notifies(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, moves, sent = _spec(tmp_path), [], []

    def move(settings: Settings, pipeline: str, **kwargs: Any) -> RollbackOutcome:
        moves.append(kwargs)
        return RollbackOutcome(
            action="rollback", moved=True, from_version="2", to="1", seq=3, why="ok", evidence={}
        )

    monkeypatch.setattr(monitor_run, "rollback", move)
    monkeypatch.setattr(monitor_run.notifications, "emit", lambda *args: sent.append(args) or "logged")

    result = monitor_run._roll_back(spec, settings, _context(spec), REGRESSED)

    assert moves == [
        {
            "target": "1",
            "reason": f"monitor: {REGRESSED.why}",
            "user": "monitor",
            "run_key": f"{spec.name}__monitor/manual__1",
        }
    ]
    assert result["rollback"]["notification"] == "logged"
    assert (result["rollback"]["from"], result["rollback"]["to"]) == ("2", "1")
    ((event, pipeline, _, fields),) = sent
    assert (event, pipeline, fields["version"], fields["to"]) == ("rollback", spec.name, "2", "1")


def test_a_history_entry_keeps_each_models_value_of_a_comparison() -> None:
    """The served-quality chart plots both models' values; the why stays in the summary."""
    compact = monitor_run._compact(REGRESSED.model_dump())

    assert compact is not None
    assert compact["values"] == {"champion": 0.61, "previous": 0.87}
    assert compact["versions"] == {"champion": "2", "previous": "1"}
    assert "why" not in compact
    assert monitor_run._compact(None) is None


def _metric(
    metric: str, fired: bool, tolerance: float, figures: tuple[float, float, float] | None
) -> MetricComparison:
    """One metric a comparison judged on; ``figures`` its difference, low and high (None: too few
    rows, undecided). The verdict and the values are not what the MLflow run logs of it."""
    return MetricComparison(
        metric=metric,
        fired=fired,
        tolerance=tolerance,
        tolerance_from="monitoring.watch.margin" if fired else "gates.alert_metrics.max_regression",
        values=None,
        difference=None if figures is None else figures[0],
        interval=None if figures is None else list(figures[1:]),
        verdict="undecided" if figures is None else "no_difference",
        why="-",
    )


def test_each_metric_a_comparison_judged_on_goes_to_the_mlflow_run(
    tmp_path: Path, settings: Settings
) -> None:
    """Beside the quality metric's difference, every metric judged with figures: its difference
    and interval; an undecided one logs nothing."""
    spec = _spec(tmp_path)
    ctx = _context(spec)
    watched = REGRESSED.model_copy(
        update={
            "alert_metrics": ["accuracy", "f1"],
            "metrics": [
                _metric("accuracy", True, 0.0, (-0.1, -0.12, -0.08)),
                _metric("f1", True, 0.0, None),
                _metric("roc_auc", False, 0.01, (-0.26, -0.29, -0.23)),
            ],
        }
    )
    challenger = PairedComparison(
        versions={"challenger": "3", "champion": "2"},
        rows=1200,
        metric="roc_auc",
        values={"challenger": 0.85, "champion": 0.8},
        difference=0.05,
        interval=[0.02, 0.08],
        confidence=0.95,
        verdict="better",
        why="-",
        metrics=[_metric("roc_auc", False, 0.0, (0.05, 0.02, 0.08))],
    )
    summary = {
        "champion_version": "2",
        "decision": {"action": "rollback", "why": "regression"},
        "report_uri": "-",
        "drift": {"share": 0.0, "drifted_columns": []},
        "window": {"rows": 2400},
        "quality": {"labeled_rows": 2400, "metric": "roc_auc", "value": None, "rules": []},
        "label_shift": {"verdict": "ok", "signals": []},
        "estimate": {"verdict": "ok", "signals": []},
        "champion_vs_previous": watched.model_dump(),
        "challenger_vs_champion": challenger.model_dump(),
    }
    home_storage(settings).write_bytes(f"{ctx.storage_prefix}/report.html", b"<p>report</p>")
    client = registry.client(settings)

    monitor_run._log_to_mlflow(spec, settings, client, ctx, summary)

    experiment = client.get_experiment_by_name(f"{spec.name}-monitoring")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    compared = {k: v for k, v in run.data.metrics.items() if k.startswith(("vs_previous", "challenger_vs"))}
    assert compared == pytest.approx(
        {
            "vs_previous_difference": -0.26,
            "vs_previous.accuracy.difference": -0.1,
            "vs_previous.accuracy.low": -0.12,
            "vs_previous.accuracy.high": -0.08,
            "vs_previous.roc_auc.difference": -0.26,
            "vs_previous.roc_auc.low": -0.29,
            "vs_previous.roc_auc.high": -0.23,
            "challenger_vs_difference": 0.05,
            "challenger_vs.roc_auc.difference": 0.05,
            "challenger_vs.roc_auc.low": 0.02,
            "challenger_vs.roc_auc.high": 0.08,
        }
    )


def test_a_refused_rollback_is_recorded_as_a_hold_without_a_retrain(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path)

    def refuse(settings: Settings, pipeline: str, **kwargs: Any) -> None:
        raise RollbackRefused("champion moved from v2 to v3 since the decision; refused")

    monkeypatch.setattr(monitor_run, "rollback", refuse)

    result = monitor_run._roll_back(spec, settings, _context(spec), REGRESSED)

    assert (result["action"], result["retrain"], result["rollback"]["moved"]) == (HOLD, False, False)
    assert (
        result["why"]
        == f"{REGRESSED.why}; rollback refused: champion moved from v2 to v3 since the decision; refused"
    )


# --- every task type: a multiclass model with text labels, a regression ----------------------------


def _task_batch(task: str, rows: int, seed: int, batch_index: int = 0, **options: Any) -> pd.DataFrame:
    make = multiclass_batch if task == "multiclass" else regression_batch
    return make(rows, seed, batch_index, **options)


def _task_spec(task: str, data: Path, metric: str) -> PipelineSpec:
    """A pipeline of its own over the task's ``data``, judging quality by ``metric``."""
    name = f"mt{uuid.uuid4().hex[:10]}"
    monitoring = {
        "window_batches": 2,
        "min_rows": MIN_ROWS,
        "report_sample_rows": 500,
        "drift": {"share": 0.3, "key_features": ["tenure_months"]},
        "quality": {"metric": metric, "max_drop": 0.05, "min_labels": 200},
    }
    if task == "multiclass":
        return multiclass_spec(name, str(data), monitoring=monitoring)
    return regression_spec(name, str(data), quality_metric=metric, monitoring=monitoring)


@dataclass(frozen=True)
class OtherTask:
    """A multiclass or regression model fitted once, logged to one MLflow run with its holdout
    metrics, over its own training data."""

    task: str
    data: Path
    model: Any
    logged: LoggedModel
    run_id: str
    holdout: dict[str, float]

    def batch(self, rows: int, seed: int, batch_index: int = 0, **options: Any) -> pd.DataFrame:
        return _task_batch(self.task, rows, seed, batch_index, **options)

    def spec(self, metric: str) -> PipelineSpec:
        return _task_spec(self.task, self.data, metric)


def _other_task(task: str, directory: Path) -> OtherTask:
    data = directory / "training"
    data.mkdir()
    _task_batch(task, TRAINING_ROWS, seed=7).to_csv(data / "batch-0000.csv", index=False)
    settings, spec = load_settings(), _task_spec(task, data, "rmse" if task == "regression" else "roc_auc")
    model = fit(spec, load_snapshot(take_snapshot(spec, settings)["key"], settings))
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"{task}_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, f"{task}/manual__1", {})
    holdout = _task_batch(task, BATCH_ROWS, seed=99)
    metrics = evaluate(model, holdout, spec)
    for name, value in metrics.items():
        client.log_metric(run_id, f"holdout_{name}", value)
    logged = registry.log_model(model, holdout[spec.columns.features].head(50), run_id)
    return OtherTask(task, data, model, logged, run_id, metrics)


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> OtherTask:
    return _other_task("multiclass", tmp_path_factory.mktemp("multiclass"))


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> OtherTask:
    return _other_task("regression", tmp_path_factory.mktemp("regression"))


def _serve(
    spec: PipelineSpec,
    settings: Settings,
    trained: OtherTask,
    index: int,
    *,
    old_log: bool = False,
    **options: Any,
) -> None:
    """Batch ``index`` scored by the champion into the prediction log, and labeled, as scoring and
    the label join write them; ``old_log``: as a log written before class probabilities were kept."""
    batch = trained.batch(BATCH_ROWS, seed=5, batch_index=index, **options)
    columns = model_predictions(trained.model, batch, spec).columns("prediction", "score")
    logged = batch[logged_columns(spec)].assign(**columns)
    if old_log:
        logged = logged.filter(regex=r"^(?!score__)")
    logged = logged.assign(
        model_version="1", batch_id=f"b{index:04d}", scored_at=pd.Timestamp("2026-02-01", tz="UTC")
    )
    storage = home_storage(settings)
    storage.write_bytes(partition_key(PREDICTIONS, spec.name, f"b{index:04d}"), to_parquet_bytes(logged))
    labeled = logged.assign(**{spec.columns.target: batch[spec.columns.target]})
    storage.write_bytes(partition_key(LABELED, spec.name, f"b{index:04d}"), to_parquet_bytes(labeled))


def _champion_of(spec: PipelineSpec, settings: Settings, trained: OtherTask) -> None:
    snapshot = take_snapshot(spec, settings)
    client = registry.client(settings)
    tags = {"ctloop.data_sha256": snapshot["sha256"]}
    version = registry.register_version(
        client, spec.name, trained.logged, trained.run_id, f"{spec.name}/r1", tags
    )
    assert str(version.version) == "1"
    client.set_registered_model_alias(spec.name, registry.CHAMPION, version.version)


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_a_multiclass_champion_is_measured_on_late_labels_by_its_class_probabilities(
    multiclass: OtherTask, settings: Settings, metric: str
) -> None:
    spec = multiclass.spec(metric)
    _champion_of(spec, settings, multiclass)
    for index in range(2):
        _serve(spec, settings, multiclass, index)

    summary = run_monitor(spec, settings, _context(spec))

    quality = summary["quality"]
    assert quality["undefined"] == {}
    assert set(quality["metrics"]) == {
        *("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier")
    }
    rows = pd.concat([multiclass.batch(BATCH_ROWS, seed=5, batch_index=i) for i in range(2)])
    probabilities = multiclass.model.predict_proba(rows[spec.columns.features])
    expected = {
        "roc_auc": sk.roc_auc_score(
            rows[TARGET], probabilities, multi_class="ovr", labels=multiclass.model.classes_
        ),
        "log_loss": sk.log_loss(rows[TARGET], probabilities, labels=multiclass.model.classes_),
    }[metric]
    assert quality["value"] == pytest.approx(expected, rel=1e-9)
    assert quality["champion_value"] == pytest.approx(multiclass.holdout[metric])
    # defined on the rows and judged with an interval (a stable window: no significant drop)
    assert not [u for u in summary["decision"]["undecided"] if "cannot be computed" in u]
    (rule,) = quality["rules"]
    assert rule["interval"][0] <= rule["value"] <= rule["interval"][1]
    assert rule["verdict"] != "alert"
    drift = {c["column"]: c for c in summary["prediction_drift"]}
    assert (drift["prediction"]["kind"], drift["score"]["kind"]) == ("categorical", "numeric")
    assert drift["prediction"]["drifted"] is False


def test_an_old_multiclass_log_says_why_roc_auc_is_undecided(
    multiclass: OtherTask, settings: Settings
) -> None:
    spec = multiclass.spec("roc_auc")
    _champion_of(spec, settings, multiclass)
    for index in range(2):
        _serve(spec, settings, multiclass, index, old_log=True)

    summary = run_monitor(spec, settings, _context(spec))

    quality = summary["quality"]
    assert quality["value"] is None
    assert "every class's probability" in quality["undefined"]["roc_auc"]
    assert quality["metrics"]["accuracy"] > 0.5
    (undecided,) = [u for u in summary["decision"]["undecided"] if u.startswith("quality")]
    assert undecided.startswith(
        "quality roc_auc: cannot be computed on the labeled rows: roc_auc of a multiclass"
    )


def test_a_regression_champion_is_measured_and_its_predicted_values_tested_as_numbers(
    regression: OtherTask, settings: Settings
) -> None:
    spec = regression.spec("rmse")
    _champion_of(spec, settings, regression)
    for index in range(2):
        _serve(spec, settings, regression, index)

    summary = run_monitor(spec, settings, _context(spec))

    (drift,) = summary["prediction_drift"]
    assert (drift["column"], drift["kind"], drift["drifted"]) == ("prediction", "numeric", False)
    assert drift["stattest"] in ("wasserstein", "ks")
    quality = summary["quality"]
    assert set(quality["metrics"]) == {"rmse", "mae", "r2"}
    rows = pd.concat([regression.batch(BATCH_ROWS, seed=5, batch_index=i) for i in range(2)])
    predicted = regression.model.predict(rows[spec.columns.features])
    assert quality["value"] == pytest.approx(
        np.sqrt(sk.mean_squared_error(rows[TARGET], predicted)), rel=1e-9
    )
    assert quality["champion_value"] == pytest.approx(regression.holdout["rmse"])


def test_a_regression_whose_predicted_values_moved_shows_prediction_drift(
    regression: OtherTask, settings: Settings
) -> None:
    spec = regression.spec("mae")
    _champion_of(spec, settings, regression)
    for index in range(2):
        _serve(spec, settings, regression, index, shift={"monthly_charges": 1.5, "tenure_months": 1.5})

    summary = run_monitor(spec, settings, _context(spec))

    (drift,) = summary["prediction_drift"]
    assert (drift["column"], drift["kind"], drift["drifted"]) == ("prediction", "numeric", True)


def test_prediction_drift_tests_a_class_mix_as_categories_and_predicted_values_as_numbers() -> None:
    rng = np.random.default_rng(0)
    tiers = np.array(["high", "low", "mid"], dtype=object)
    reference = pd.DataFrame(
        {"prediction": rng.choice(tiers, 3000, p=[0.5, 0.3, 0.2]), "score": rng.random(3000)}
    )
    same = pd.DataFrame({"prediction": rng.choice(tiers, 3000, p=[0.5, 0.3, 0.2]), "score": rng.random(3000)})
    moved = same.assign(prediction=rng.choice(tiers, 3000, p=[0.2, 0.3, 0.5]))
    kinds = monitor_run.prediction_columns("classification")
    assert kinds == (["score"], ["prediction"])
    assert [c.drifted for c in column_drift(reference, same, *kinds)] == [False, False]
    assert {c.column: c.drifted for c in column_drift(reference, moved, *kinds)}["prediction"] is True

    values = pd.DataFrame({"prediction": rng.normal(100, 20, 3000)})
    values["score"] = values["prediction"]
    later = pd.DataFrame({"prediction": rng.normal(100, 20, 3000)})
    later["score"] = later["prediction"]
    kinds = monitor_run.prediction_columns("regression")
    (stable,) = column_drift(values, later, *kinds)
    assert (stable.column, stable.kind, stable.stattest, stable.drifted) == (
        "prediction",
        "numeric",
        "wasserstein",
        False,
    )
    (as_categories,) = column_drift(values, later, [], ["prediction"])  # what the monitor once did
    assert as_categories.drifted is True


def test_the_reference_is_built_from_the_snapshot_a_row_group_at_a_time(
    trained: Trained, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion's snapshot stored in several row groups: the reference holds its features,
    label and the champion's predictions, as the whole snapshot gives them, and only those columns
    are read, a row group at a time."""
    import pyarrow.parquet as pq

    spec = _spec(trained.data)
    version = _champion(spec, settings, trained)
    champion = registry.get_champion(registry.client(settings), spec.name)
    assert champion is not None
    snapshot = take_snapshot(spec, settings)
    whole = load_snapshot(snapshot["key"], settings)
    stored = tmp_path / "snapshot.parquet"
    whole.to_parquet(stored, index=False, row_group_size=400)
    storage = home_storage(settings)
    storage.publish_file(snapshot["key"], stored)
    read: list[tuple[int, list[str]]] = []
    real = pq.ParquetFile.read_row_group

    def read_row_group(self: Any, group: int, columns: list[str], **options: Any) -> Any:
        read.append((group, list(columns)))
        return real(self, group, columns=columns, **options)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)

    key = monitor_run.reference_key(spec, settings, champion)

    monkeypatch.undo()
    assert key == f"monitor/{spec.name}/reference/v{version}.parquet"
    columns = [*spec.columns.features, TARGET]
    expected = whole[columns].copy()
    expected["prediction"], expected["score"] = predict(trained.model, whole, spec)
    with storage.local_file(key) as reference:
        pd.testing.assert_frame_equal(pd.read_parquet(reference), expected)
    assert read == [(group, columns) for group in range(4)]  # 1,500 rows in 400-row groups
