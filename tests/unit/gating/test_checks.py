"""The gate's rules beyond thresholds, gathered for a registered candidate on generated data."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from ctloop.data import holdout as holdouts
from ctloop.devtools.example_data import generate_batch
from ctloop.gating.checks import rule_checks
from ctloop.gating.decision import RelativeComparison
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import mlflow_store as registry
from ctloop.scoring.batches import predict
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.contracts import Evaluation, HoldoutRef, HoldoutScores
from ctloop.training.estimator import features, fit
from ctloop.training.steps import _score_both
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import (
    multiclass_batch,
    multiclass_spec,
    regression_batch,
    regression_spec,
)


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


def _predictions(settings, rows: dict) -> str:
    key = f"runs/{uuid.uuid4().hex[:8]}/holdout_predictions.parquet"
    home_storage(settings).write_bytes(key, to_parquet_bytes(pd.DataFrame(rows)))
    return key


def _evaluation(settings, holdout_key: str, rows: dict, recent: HoldoutScores | None = None) -> Evaluation:
    return Evaluation(
        mlflow_run_id="run",
        candidate={"roc_auc": 0.8},
        champion=None,
        champion_version=None,
        holdout_digest="d",
        holdout_key=holdout_key,
        predictions_key=_predictions(settings, rows),
        recent=recent,
        recent_note="not used: no labeled production batch yet" if recent is None else "1 batch",
        trigger="manual",
    )


def _on(holdout: str) -> RelativeComparison:
    return RelativeComparison.model_validate(
        {"on": holdout, "why": "test", "candidate": {}, "champion": None}
    )


FROZEN = _on("frozen_holdout")


def _pair(model, holdout: pd.DataFrame, spec: PipelineSpec, *, champion_skilled: bool) -> dict:
    """Both models' per-row scores: the skilled one is ``model``, the other has no skill on these rows."""
    prediction, score = predict(model, holdout, spec)
    shuffled = score[::-1].copy()
    skilled = {"prediction": prediction, "score": score}
    unskilled = {"prediction": (shuffled > 0.5).astype(prediction.dtype), "score": shuffled}
    candidate, champion = (unskilled, skilled) if champion_skilled else (skilled, unskilled)
    return {
        "candidate_prediction": candidate["prediction"],
        "candidate_score": candidate["score"],
        "champion_prediction": champion["prediction"],
        "champion_score": champion["score"],
    }


def test_without_a_champion_every_rule_reports_and_the_relative_ones_skip(candidate):
    spec, settings, model, holdout, holdout_key, version = candidate
    prediction, score = predict(model, holdout, spec)
    evaluation = _evaluation(
        settings, holdout_key, {"candidate_prediction": prediction, "candidate_score": score}
    )
    checks = rule_checks(spec, settings, evaluation, version, FROZEN)
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
    rows = _pair(model, holdout, spec, champion_skilled=False)
    checks = rule_checks(spec, settings, _evaluation(settings, holdout_key, rows), version, FROZEN)
    bootstrap = next(v for v in checks.verdicts if v.rule == "bootstrap")
    assert bootstrap.passed is True
    assert bootstrap.interval[0] == bootstrap.value > 0
    judged = [v for v in checks.verdicts if v.rule == "slice_regression"]
    assert judged
    assert all(v.passed is True for v in judged)
    assert checks.slices is not None
    assert all(s.champion is not None for s in checks.slices)


def test_on_the_recent_holdout_the_bootstrap_judges_recent_rows_and_slices_stay_frozen(candidate):
    """The candidate is better on the frozen holdout and worse on the recent one: the bootstrap
    follows the comparison's holdout, the slice rules keep the frozen one."""
    spec, settings, model, holdout, holdout_key, version = candidate
    recent_rows = generate_batch(600, seed=12)
    recent_key = f"holdouts/{spec.name}/recent.parquet"
    home_storage(settings).write_bytes(recent_key, to_parquet_bytes(recent_rows))
    recent = HoldoutScores(
        holdout=HoldoutRef(key=recent_key, digest="r", rows=len(recent_rows)),
        candidate={"roc_auc": 0.5},
        champion={"roc_auc": 0.8},
        predictions_key=_predictions(settings, _pair(model, recent_rows, spec, champion_skilled=True)),
    )
    evaluation = _evaluation(
        settings, holdout_key, _pair(model, holdout, spec, champion_skilled=False), recent
    )

    on_frozen = rule_checks(spec, settings, evaluation, version, FROZEN)
    on_recent = rule_checks(spec, settings, evaluation, version, _on("recent_holdout"))

    bootstrap = {name: next(v for v in c.verdicts if v.rule == "bootstrap") for name, c in
                 (("frozen", on_frozen), ("recent", on_recent))}  # fmt: skip
    assert bootstrap["frozen"].passed is True
    assert bootstrap["recent"].passed is False
    assert bootstrap["recent"].interval[1] < 0  # the whole interval says: worse than the champion
    assert bootstrap["recent"].champion > bootstrap["recent"].candidate
    slice_verdicts = [[(v.metric, v.passed) for v in c.verdicts if v.rule.startswith("slice")] for c in
                      (on_frozen, on_recent)]  # fmt: skip
    assert slice_verdicts[0] == slice_verdicts[1]
    assert on_recent.slices == on_frozen.slices


def test_a_comparison_on_the_recent_holdout_needs_its_scores(candidate):
    spec, settings, model, holdout, holdout_key, version = candidate
    rows = _pair(model, holdout, spec, champion_skilled=False)
    with pytest.raises(ValueError, match="recent holdout's scores"):
        rule_checks(spec, settings, _evaluation(settings, holdout_key, rows), version, _on("recent_holdout"))


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_every_rule_judges_a_multiclass_and_a_regression_candidate(task):
    """The holdout predictions as the evaluate step stores them (a multiclass model's with every
    class's probability) feed the bootstrap and the slices; validity and latency load the version."""
    name = f"checks_{task}_{uuid.uuid4().hex[:8]}"
    spec = multiclass_spec(name) if task == "multiclass" else regression_spec(name)
    make = multiclass_batch if task == "multiclass" else regression_batch
    settings = load_settings()
    training, holdout = make(1000, seed=11), make(800, seed=12)
    model, weak = fit(spec, training), fit(spec, training.head(120))
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(client, experiment, f"{name}/r1", {})
    logged = registry.log_model(model, features(training.head(50), spec), run_id)
    version = str(registry.register_version(client, name, logged, run_id, f"{name}/r1", {}).version)
    holdout_key = f"holdouts/{name}/h.parquet"
    home_storage(settings).write_bytes(holdout_key, to_parquet_bytes(holdout))
    rows = _score_both(spec, model, weak, holdout)[2]
    evaluation = _evaluation(settings, holdout_key, {c: rows[c].to_numpy() for c in rows.columns})

    checks = rule_checks(spec, settings, evaluation, version, FROZEN)

    by_rule: dict[str, list] = {}
    for verdict in checks.verdicts:
        by_rule.setdefault(verdict.rule, []).append(verdict)
    assert set(by_rule) == {"bootstrap", "slice_regression", "slice_gap", "validity", "latency"}
    (bootstrap,) = by_rule["bootstrap"]
    assert bootstrap.metric == ("roc_auc" if task == "multiclass" else "rmse")
    assert bootstrap.passed is True, bootstrap.note
    assert bootstrap.degenerate == 0
    assert by_rule["slice_regression"]
    assert all(v.passed is not None for v in by_rule["slice_regression"])
    assert all(v.passed for v in by_rule["validity"])
    assert checks.slices is not None
    judged = [s for s in checks.slices if s.judged]
    assert judged
    assert all(None not in s.candidate.values() for s in judged)
