"""Which types a saved model may hold: XGBoost and LightGBM load, the spec's own feature module
loads for its pipeline only, anything else is refused by name, when logging and when loading."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from ctloop.errors import EstimatorError, ModelIntegrityError
from ctloop.registry import mlflow_store as registry
from ctloop.registry.model_trust import DEFAULT, TrustPolicy, policy
from ctloop.settings import load_settings
from ctloop.training.estimator import features, fit
from tests.unit.training.test_user_code import MODULE, _frame, _spec


def _logged(spec, task: str, trust):
    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"trust_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, f"dag/{uuid.uuid4().hex[:6]}", {})
    frame = _frame(400, 1, task)
    model = fit(spec, frame)
    return model, registry.log_model(model, features(frame, spec), run_id, trust), features(frame, spec)


@pytest.mark.parametrize(
    ("task", "class_path"),
    [
        ("classification", "xgboost.XGBClassifier"),
        ("regression", "xgboost.XGBRegressor"),
        ("classification", "lightgbm.LGBMClassifier"),
        ("regression", "lightgbm.LGBMRegressor"),
    ],
)
def test_gradient_boosting_models_round_trip_with_skops_and_the_digest(task, class_path):
    params = {"n_estimators": 20, "n_jobs": 1} | (
        {"verbose": -1} if class_path.startswith("lightgbm") else {}
    )
    spec = _spec(task, estimator={"class_path": class_path, "params": params})
    model, logged, x = _logged(spec, task, policy(spec))
    loaded = registry.load_model(load_settings(), logged.model_uri, logged.sha256, policy(spec))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    pyfunc = registry.load_pyfunc(load_settings(), logged.model_uri, logged.sha256, policy(spec))
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(x)), model.predict(x))


def test_a_feature_module_is_trusted_for_the_spec_naming_it_only():
    spec = _spec(
        "regression",
        estimator={"class_path": "sklearn.linear_model.LinearRegression"},
        features={"factory": f"{MODULE}.ratio"},
    )
    with pytest.raises(EstimatorError, match=f"estimator.trusted_types: .*'{MODULE}.Ratio'"):
        _logged(spec, "regression", DEFAULT)
    model, logged, x = _logged(spec, "regression", policy(spec))
    settings = load_settings()
    with pytest.raises(ModelIntegrityError, match=f"will not trust: \\['{MODULE}.Ratio'\\]"):
        registry.load_model(settings, logged.model_uri, logged.sha256, DEFAULT)
    loaded = registry.load_model(settings, logged.model_uri, logged.sha256, policy(spec))
    np.testing.assert_allclose(loaded.predict(x), model.predict(x))


def test_declared_types_are_trusted_exactly_and_nothing_else():
    spec = _spec(
        estimator={"class_path": "sklearn.linear_model.LogisticRegression", "trusted_types": ["a.b.C"]}
    )
    trust = policy(spec)
    assert trust.trusts("a.b.C")
    assert not trust.trusts("a.b.D")
    assert not trust.trusts("a.b.C.evil")
    assert trust.trusts("xgboost.core.Booster")
    assert not trust.trusts("xgboost.core._some_function")
    assert not TrustPolicy().trusts("tests.unit.training.user_code.custom.Ratio")
    assert TrustPolicy().refused(["numpy.dtype", "os.system"]) == ["os.system"]
