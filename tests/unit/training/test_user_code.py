"""The three levels of bringing a model: YAML only (any scikit-learn-API estimator, XGBoost and
LightGBM included), a feature module, a training function; and what ctloop refuses, by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctloop.errors import EstimatorError
from ctloop.evaluation.model_scores import evaluate
from ctloop.registry import tags
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import changed_user_code, fit, source_sha256, user_code_tags
from tests.unit.training.user_code import custom

MODULE = "tests.unit.training.user_code.custom"


def _frame(n: int, seed: int, task: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "row_id": [f"r{seed}-{i}" for i in range(n)],
            "a": rng.uniform(1, 10, n),
            "b": rng.uniform(1, 10, n),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    ratio = frame["a"] / frame["b"]
    if task == "regression":
        frame["y"] = 5 * ratio + rng.normal(0, 0.1, n)
    else:  # three text classes by the ratio, so string labels reach every model
        frame["y"] = np.where(ratio < 0.7, "low", np.where(ratio < 1.4, "mid", "high"))
    return frame


def _spec(task: str = "classification", *, estimator: dict | None = None, **extra) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "byom",
            "task": task,
            "data": {"uri": "data", "format": "csv"},
            "columns": {"target": "y", "id": ["row_id"], "numeric": ["a", "b"], "categorical": ["colour"]},
            "expectation_suite": "byom",
            "estimator": estimator or {"class_path": "sklearn.linear_model.LogisticRegression"},
            "gates": {"primary_metric": "rmse" if task == "regression" else "accuracy"},
            "monitoring": {"quality": {"metric": "rmse" if task == "regression" else "accuracy"}},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("task", "class_path", "metric", "good"),
    [
        ("classification", "xgboost.XGBClassifier", "accuracy", 0.9),
        ("classification", "lightgbm.LGBMClassifier", "accuracy", 0.9),
        ("regression", "xgboost.XGBRegressor", "r2", 0.9),
        ("regression", "lightgbm.LGBMRegressor", "r2", 0.9),
    ],
)
def test_gradient_boosting_libraries_train_from_yaml_alone_with_text_labels(task, class_path, metric, good):
    params = {"n_estimators": 60, "random_state": 0, "n_jobs": 1}
    if class_path.startswith("lightgbm"):
        params["verbose"] = -1
    spec = _spec(task, estimator={"class_path": class_path, "params": params})
    model = fit(spec, _frame(1500, 1, task))
    holdout = _frame(500, 2, task)
    assert evaluate(model, holdout, spec)[metric] > good
    if task == "classification":
        assert sorted(model.classes_) == ["high", "low", "mid"]  # the data's labels, not XGBoost's codes
        assert set(model.predict(holdout)) <= {"high", "low", "mid"}


def test_a_feature_module_runs_before_preprocessing_and_its_source_is_recorded():
    plain = _spec("regression", estimator={"class_path": "sklearn.linear_model.LinearRegression"})
    with_features = _spec(
        "regression",
        estimator={"class_path": "sklearn.linear_model.LinearRegression"},
        features={"factory": f"{MODULE}.ratio"},
    )
    train, holdout = _frame(800, 1, "regression"), _frame(300, 2, "regression")
    # a linear model cannot form a/b itself: only the feature module's column makes it exact
    assert evaluate(fit(with_features, train), holdout, with_features)["r2"] > 0.99
    assert evaluate(fit(plain, train), holdout, plain)["r2"] < 0.95
    recorded = user_code_tags(with_features)
    assert recorded[tags.FEATURES_CODE] == f"{MODULE}.ratio"
    assert recorded[tags.FEATURES_SHA256] == source_sha256(f"{MODULE}.ratio", "features.factory")
    assert len(recorded[tags.FEATURES_SHA256]) == 64
    assert user_code_tags(plain) == {}


def test_the_source_digest_follows_the_code(tmp_path, monkeypatch):
    package = tmp_path / "mine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "feats.py").write_text("def build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_sha256("mine.feats.build", "features.factory")
    (package / "feats.py").write_text("def build():\n    return 1\n")
    import importlib
    import sys

    sys.modules.pop("mine.feats", None)
    importlib.invalidate_caches()
    assert source_sha256("mine.feats.build", "features.factory") != before


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (f"{MODULE}.no_such_factory", "features.factory: cannot import"),
        (f"{MODULE}.not_a_transformer", "features.factory: .* returned str, not a scikit-learn transformer"),
        (f"{MODULE}.to_array", "features.factory: .* returned a ndarray, not a pandas DataFrame"),
    ],
)
def test_bad_feature_code_is_named(factory, message):
    spec = _spec(features={"factory": factory})
    with pytest.raises(EstimatorError, match=message):
        fit(spec, _frame(200, 1, "classification"))


def test_a_training_function_gets_features_target_params_and_context_and_its_model_serves():
    custom.SEEN.clear()
    spec = _spec(
        estimator={
            "class_path": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 300},
            "train_function": f"{MODULE}.weighted_fit",
        }
    )
    model = fit(spec, _frame(600, 1, "classification"), params={"C": 0.5})
    (seen,) = custom.SEEN
    assert seen["columns"] == ["a", "b", "colour"]  # features only: no id, no target
    assert seen["rows"] == 600
    assert seen["params"] == {"max_iter": 300, "C": 0.5}
    assert seen["context"].pipeline == "byom"
    assert model.named_steps["estimator"].C == 0.5  # build_model gave the merged params
    assert evaluate(model, _frame(300, 2, "classification"), spec)["accuracy"] > 0.8
    assert user_code_tags(spec)[tags.TRAIN_FUNCTION] == f"{MODULE}.weighted_fit"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("returns_nothing", "gave a NoneType without predict, predict_proba, classes_"),
        ("regression_only", "gave a LinearRegression without predict_proba, classes_"),
        ("no_such_function", "cannot import"),
    ],
)
def test_a_training_function_returning_what_cannot_serve_is_refused(function, message):
    spec = _spec(
        estimator={
            "class_path": "sklearn.linear_model.LogisticRegression",
            "train_function": f"{MODULE}.{function}",
        }
    )
    with pytest.raises(EstimatorError, match=f"estimator.train_function: .*{message}"):
        fit(spec, _frame(200, 1, "classification"))


def test_a_change_of_the_user_code_since_a_version_was_trained_is_named():
    spec = _spec(
        "regression",
        estimator={"class_path": "sklearn.linear_model.LinearRegression"},
        features={"factory": f"{MODULE}.ratio"},
    )
    recorded = user_code_tags(spec)
    assert changed_user_code(spec, recorded) == []
    (changed,) = changed_user_code(spec, {**recorded, tags.FEATURES_SHA256: "0" * 64})
    assert changed.startswith(f"{MODULE}.ratio: source sha256 ")
    assert "differs from 000000000000" in changed
    # a version trained before the spec named any feature code: today's code is a change too
    assert len(changed_user_code(spec, {})) == 1
