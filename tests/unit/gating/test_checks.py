"""The gate's rules beyond thresholds, gathered for a registered candidate on generated data."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from ctloop.data import holdout as holdouts
from ctloop.devtools.example_data import generate_batch
from ctloop.gating.checks import rule_checks
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import mlflow_store as registry
from ctloop.scoring.batches import predict
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.contracts import Evaluation
from ctloop.training.estimator import features, fit
from tests.helpers import example_spec


@pytest.fixture(scope="module")
def candidate():
    """A pipeline (the example spec's gates, a quick latency limit) with a registered candidate, its
    holdout and its per-row predictions stored as the evaluate step stores them."""
    name = f"checks_{uuid.uuid4().hex[:8]}"
    raw = example_spec(name, "data")
    raw["gates"]["latency"] = {"batch_rows": 100, "repeats": 5, "single_p95_ms": 5000, "batch_p95_ms": 20000}
    spec = PipelineSpec.model_validate(raw)
    settings = load_settings()
    frame = generate_batch(2000, seed=11)
    training, holdout = holdouts.split(frame, spec)
    model = fit(spec, training)
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(client, experiment, f"{name}/r1", {})
    logged = registry.log_model(model, features(training.head(200), spec), run_id)
    version = registry.register_version(client, name, logged, run_id, f"{name}/r1", {})
    storage = home_storage(settings)
    holdout_key = f"holdouts/{name}/h.parquet"
    storage.write_bytes(holdout_key, to_parquet_bytes(holdout))
    return spec, settings, model, holdout, holdout_key, str(version.version)


def _evaluation(settings, holdout_key: str, rows: dict) -> Evaluation:
    key = f"runs/{uuid.uuid4().hex[:8]}/holdout_predictions.parquet"
    home_storage(settings).write_bytes(key, to_parquet_bytes(pd.DataFrame(rows)))
    return Evaluation(
        mlflow_run_id="run",
        candidate={"roc_auc": 0.8},
        champion=None,
        champion_version=None,
        holdout_digest="d",
        holdout_key=holdout_key,
        predictions_key=key,
    )


def test_without_a_champion_every_rule_reports_and_the_relative_ones_skip(candidate):
    spec, settings, model, holdout, holdout_key, version = candidate
    prediction, score = predict(model, holdout, spec)
    evaluation = _evaluation(
        settings, holdout_key, {"candidate_prediction": prediction, "candidate_score": score}
    )
    checks = rule_checks(spec, settings, evaluation, version)
    by_rule: dict[str, list] = {}
    for verdict in checks.verdicts:
        by_rule.setdefault(verdict.rule, []).append(verdict)
    assert set(by_rule) == {"bootstrap", "slice_regression", "slice_gap", "validity", "latency"}
    assert by_rule["bootstrap"][0].passed is None
    assert all(v.passed is None for v in by_rule["slice_regression"])
    assert [v.passed for v in by_rule["validity"]] == [True, True, True]
    assert [v.metric for v in by_rule["latency"]] == ["single_p95_ms", "batch_p95_ms"]
    assert checks.slices is not None
    assert {s.slice for s in checks.slices} >= {"contract=month_to_month", "contract=two_year"}
    assert all(s.champion is None for s in checks.slices)
    assert checks.slice_metric == "roc_auc"
    assert checks.latency is not None
    assert checks.latency.batch_rows == 100
    assert checks.latency.single_ms.p95 > 0


def test_against_a_worse_champion_the_bootstrap_and_slices_judge_the_pair(candidate):
    spec, settings, model, holdout, holdout_key, version = candidate
    prediction, score = predict(model, holdout, spec)
    shuffled = score[::-1].copy()  # a champion with no skill on these rows
    rows = {
        "candidate_prediction": prediction,
        "candidate_score": score,
        "champion_prediction": (shuffled > 0.5).astype(prediction.dtype),
        "champion_score": shuffled,
    }
    checks = rule_checks(spec, settings, _evaluation(settings, holdout_key, rows), version)
    bootstrap = next(v for v in checks.verdicts if v.rule == "bootstrap")
    assert bootstrap.passed is True
    assert bootstrap.interval[0] == bootstrap.value > 0
    judged = [v for v in checks.verdicts if v.rule == "slice_regression"]
    assert judged
    assert all(v.passed is True for v in judged)
    assert checks.slices is not None
    assert all(s.champion is not None for s in checks.slices)
