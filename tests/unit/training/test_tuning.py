"""The tuning search on generated data: it finds the better region of a space, sees only the
training rows, keeps to its budget, records failed trials, is deterministic, and is recorded on
the MLflow run."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ctloop.errors import EstimatorError
from ctloop.evaluation.model_scores import evaluate
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec, Tuning
from ctloop.training import tuning
from ctloop.training.estimator import fit
from ctloop.training.tuning import record_tuning, recorded_tuning, tune, validation_split

TREE = "sklearn.tree.DecisionTreeClassifier"
TREE_REGRESSOR = "sklearn.tree.DecisionTreeRegressor"


def _frame(task: str, rows: int, seed: int = 0) -> pd.DataFrame:
    """Three numeric features and a categorical. The regression and multiclass targets depend on
    them non-linearly (a depth-1 tree is clearly worse than a deeper one), the binary one linearly
    (a logistic regression fits it unless regularised into predicting the base rate)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    group = rng.choice(["north", "south"], size=rows)
    signal = np.sin(2 * x[:, 0]) * 2 + x[:, 1] ** 2 - 1 + np.where(group == "north", 0.5, -0.5)
    if task == "regression":
        target: object = signal + 0.1 * rng.normal(size=rows)
    elif task == "binary":
        target = (2 * x[:, 0] - x[:, 1] + (group == "north") + 0.5 * rng.normal(size=rows) > 0.5).astype(int)
    else:  # three string classes, the last one rare
        target = np.select([signal < -0.6, signal < 1.8], ["low", "mid"], "high")
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "group": group, "y": target})


def _spec(
    space: dict[str, dict[str, object]],
    class_path: str = TREE,
    task: str = "classification",
    params: dict[str, object] | None = None,
    **tuning_fields: object,
) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "tuned",
            "task": task,
            "data": {"uri": "data", "format": "csv"},
            "columns": {"target": "y", "numeric": ["x1", "x2", "x3"], "categorical": ["group"]},
            "expectation_suite": "tuned",
            "estimator": {"class_path": class_path, "params": {"random_state": 0, **(params or {})}},
            "monitoring": {"quality": {"metric": "rmse" if task == "regression" else "roc_auc"}},
            "tuning": {"space": space, "trials": 6, **tuning_fields},
        }
    )


DEPTH = {"max_depth": {"type": "int", "low": 1, "high": 8}}


def test_the_search_finds_the_clearly_better_depth_for_a_regression():
    spec = _spec(DEPTH, TREE_REGRESSOR, "regression")
    training = _frame("regression", 600)
    result = tune(spec, training)

    fit_part, validation = validation_split(spec, training)
    stump = evaluate(fit(spec, fit_part, params={"max_depth": 1}), validation, spec)["rmse"]
    assert (result.metric, result.direction) == ("rmse", "minimize")
    assert result.best_params == {"random_state": 0, "max_depth": result.tuned_params["max_depth"]}
    assert result.tuned_params["max_depth"] >= 4
    assert result.best_value < 0.6 * stump
    assert result.best_value == min(t.value for t in result.trials if t.value is not None)


def test_a_log_scaled_float_spans_its_orders_of_magnitude_and_strong_regularisation_loses():
    space = {"C": {"type": "float", "low": 1e-5, "high": 100.0, "log": True}}
    spec = _spec(space, "sklearn.linear_model.LogisticRegression", metric="log_loss", trials=8)
    result = tune(spec, _frame("binary", 500))

    sampled = [t.params["C"] for t in result.trials]
    assert all(isinstance(c, float) and 1e-5 <= c <= 100.0 for c in sampled)
    assert sum(c < 0.1 for c in sampled) >= 2  # uniform on [1e-5, 100] would almost never go there
    assert result.direction == "minimize"
    assert result.tuned_params["C"] > 0.01
    worst = max(t.value for t in result.trials if t.value is not None)
    assert result.best_value < worst - 0.1  # an over-regularised model predicts ~0.5 everywhere


def test_a_multiclass_search_over_categorical_and_int_params_on_a_stratified_split():
    space = {"criterion": {"type": "categorical", "choices": ["gini", "entropy"]}, **DEPTH}
    spec = _spec(space, validation_fraction=0.25)
    training = _frame("multiclass", 500)
    result = tune(spec, training)

    assert (result.metric, result.direction, result.left_out_rows) == ("roc_auc", "maximize", 0)
    assert {t.params["criterion"] for t in result.trials} <= {"gini", "entropy"}
    assert all(type(t.params["max_depth"]) is int for t in result.trials)
    assert result.tuned_params["max_depth"] > 1
    _, validation = validation_split(spec, training)
    shares = training["y"].value_counts(normalize=True)
    validation_shares = validation["y"].value_counts(normalize=True)
    assert set(validation_shares.index) == {"low", "mid", "high"}
    assert (validation_shares - shares).abs().max() < 0.02


def test_only_the_training_rows_given_are_fitted_and_scored(monkeypatch):
    frame = _frame("binary", 400)
    training, holdout = frame.iloc[:300], frame.iloc[300:]
    fitted: list[pd.Index] = []
    scored: list[pd.Index] = []

    def spying_fit(spec, rows, params=None):
        fitted.append(rows.index)
        return fit(spec, rows, params)

    def spying_evaluate(model, rows, spec):
        scored.append(rows.index)
        return evaluate(model, rows, spec)

    monkeypatch.setattr(tuning, "fit", spying_fit)
    monkeypatch.setattr(tuning, "evaluate", spying_evaluate)
    result = tune(_spec(DEPTH, validation_fraction=0.2), training)

    assert len(fitted) == len(scored) == 6
    validation = set(scored[0])
    assert all(set(rows) == validation for rows in scored)
    assert all(set(rows) == set(fitted[0]) for rows in fitted)
    assert validation <= set(training.index)
    assert not validation & set(fitted[0])
    assert not (validation | set(fitted[0])) & set(holdout.index)
    assert (result.validation_rows, result.fit_rows) == (len(validation), 300 - len(validation))
    assert result.validation_rows == 60


def test_the_budget_in_trials_is_kept():
    result = tune(_spec(DEPTH, trials=3, timeout_seconds=600), _frame("binary", 200))
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert result.trials_completed == 3


def test_a_timeout_shorter_than_a_trial_runs_exactly_one():
    result = tune(_spec(DEPTH, trials=1000, timeout_seconds=0.001), _frame("binary", 200))
    assert len(result.trials) == 1
    assert result.best_trial == 0


def test_no_trial_starts_after_the_timeout(monkeypatch):
    def slow_fit(spec, rows, params=None):
        time.sleep(0.05)
        return fit(spec, rows, params)

    monkeypatch.setattr(tuning, "fit", slow_fit)
    result = tune(_spec(DEPTH, trials=1000, timeout_seconds=0.2), _frame("binary", 200))
    assert 1 <= len(result.trials) <= 4
    assert result.seconds >= 0.2


def test_a_value_the_estimator_refuses_fails_its_trial_and_the_search_goes_on():
    space = {"criterion": {"type": "categorical", "choices": ["gini", "no_such_criterion"]}, **DEPTH}
    result = tune(_spec(space, trials=8), _frame("binary", 200))

    failed = [t for t in result.trials if t.state == "failed"]
    assert failed
    assert result.trials_failed == len(failed)
    assert result.trials_completed == 8 - len(failed)
    assert all(t.params["criterion"] == "no_such_criterion" for t in failed)
    assert all(t.value is None and t.error and "criterion" in t.error for t in failed)
    assert result.tuned_params["criterion"] == "gini"
    assert all(t.error is None for t in result.trials if t.state == "complete")


def test_a_param_the_estimator_does_not_know_fails_every_trial_and_is_named():
    spec = _spec({"no_such_param": {"type": "int", "low": 1, "high": 3}}, trials=3)
    with pytest.raises(EstimatorError, match="tuning.space: all 3 trials failed") as raised:
        tune(spec, _frame("binary", 200))
    assert "no_such_param" in str(raised.value)


def test_an_undefined_metric_fails_the_trial():
    spec = _spec(DEPTH, TREE_REGRESSOR, "regression", metric="r2", trials=2, validation_fraction=0.05)
    with pytest.raises(EstimatorError, match="r2 is undefined on the 1 validation rows"):
        tune(spec, _frame("regression", 12))


def test_a_class_with_one_row_is_left_out_of_the_search_only():
    training = _frame("multiclass", 201)
    training.loc[training.index[0], "y"] = "unique"  # cannot be both fitted on and scored on
    result = tune(_spec(DEPTH, trials=2), training)
    fit_part, validation = validation_split(_spec(DEPTH), training)
    assert (result.left_out_rows, result.validation_rows, result.fit_rows) == (1, 40, 160)
    assert "unique" not in set(fit_part["y"]) | set(validation["y"])


def test_too_few_validation_rows_for_the_classes_is_named():
    spec = _spec(DEPTH, validation_fraction=0.05)
    with pytest.raises(EstimatorError, match="tuning.validation_fraction: 2 validation rows cannot hold"):
        tune(spec, _frame("multiclass", 40))


def test_the_same_data_and_spec_give_the_same_search_and_another_seed_another():
    training = _frame("multiclass", 300)
    space = {"criterion": {"type": "categorical", "choices": ["gini", "entropy"]}, **DEPTH}
    first, again = tune(_spec(space), training), tune(_spec(space), training)
    reseeded = tune(_spec(space, seed=7), training)

    def search(result):
        return [(t.params, t.value, t.state) for t in result.trials]

    assert search(first) == search(again)
    assert (first.best_params, first.best_value) == (again.best_params, again.best_value)
    assert [t.params for t in reseeded.trials] != [t.params for t in first.trials]


def test_a_training_function_receives_the_sampled_params():
    spec = _spec(DEPTH, TREE_REGRESSOR, "regression", trials=3)
    spec = spec.model_copy(
        update={
            "estimator": spec.estimator.model_copy(
                update={"train_function": "tests.unit.training.test_tuning.train_recording"}
            )
        }
    )
    SEEN.clear()
    result = tune(spec, _frame("regression", 200))
    assert [p["max_depth"] for p in SEEN] == [t.params["max_depth"] for t in result.trials]
    assert all(p["random_state"] == 0 for p in SEEN)  # sampled params merge over estimator.params


SEEN: list[dict[str, object]] = []


def train_recording(x, y, params, context):
    """A training function for the test above: records its params, fits ctloop's own model."""
    SEEN.append(params)
    return context.build_model(None).fit(x, y)


def test_the_search_is_recorded_on_the_run_and_found_again_by_a_retry():
    result = tune(_spec(DEPTH, trials=3), _frame("binary", 200))
    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"tun_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = client.create_run(experiment).info.run_id
    assert recorded_tuning(client, run_id) is None

    record_tuning(client, run_id, result)
    record_tuning(client, run_id, result)  # a retried task records the same again
    run = client.get_run(run_id)
    assert run.data.params["tuned.max_depth"] == str(result.tuned_params["max_depth"])
    assert run.data.metrics["tuning_best_roc_auc"] == result.best_value
    summary = json.loads(run.data.tags[tags.TUNING])
    assert summary["tuned_params"] == result.tuned_params
    assert (summary["trials_completed"], summary["study"]) == (3, "tuning/study.json")
    assert recorded_tuning(client, run_id) == result


def test_the_tag_is_cut_to_what_mlflow_accepts_while_the_artifact_keeps_everything():
    result = tune(_spec(DEPTH, trials=2), _frame("binary", 200))
    long = result.model_copy(update={"tuned_params": {"note": "x" * 6000}})
    assert len(long.tag_value()) == tags.TAG_VALUE_CHARS
    assert len(result.tag_value()) < 1000
    assert json.loads(result.tag_value())["best_value"] == result.best_value


@pytest.mark.parametrize(
    ("dimension", "message"),
    [
        ({"type": "int", "low": 1.5, "high": 3}, "whole-number low and high"),
        ({"type": "int", "low": 5, "high": 3}, "low <= high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log-scaled parameter needs low > 0"),
        ({"type": "float", "low": 0.1}, "low <= high"),
        ({"type": "categorical", "choices": ["a", "a"]}, "each choice once"),
        ({"type": "categorical", "choices": [1, 2], "log": True}, "no low, high or log"),
        ({"type": "categorical", "low": 1, "high": 2}, "sets choices"),
    ],
)
def test_a_space_that_cannot_be_searched_is_refused_by_the_spec(dimension, message):
    with pytest.raises(ValidationError, match=message):
        Tuning.model_validate({"space": {"p": dimension}})


def test_a_space_name_is_a_keyword_argument():
    with pytest.raises(ValidationError, match="space.max depth"):
        Tuning.model_validate({"space": {"max depth": {"type": "int", "low": 1, "high": 3}}})
