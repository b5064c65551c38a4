from __future__ import annotations

import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.errors import EstimatorError
from ctloop.evaluation.model_scores import evaluate
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit, load_estimator_class
from tests.helpers import example_spec


def _spec(class_path="sklearn.linear_model.LogisticRegression", **params) -> PipelineSpec:
    spec = example_spec("t", "data")
    spec["estimator"] = {"class_path": class_path, "params": params}
    return PipelineSpec.model_validate(spec)


def test_fits_and_scores_every_metric():
    frame = generate_batch(3000, seed=2)
    model = fit(_spec(max_iter=500), frame.iloc[:2000])
    metrics = evaluate(model, frame.iloc[2000:], _spec())
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"}
    assert metrics["roc_auc"] > 0.75


def test_unseen_categories_and_missing_values_at_prediction_do_not_crash():
    frame = generate_batch(1000, seed=2)
    model = fit(_spec(max_iter=500), frame)
    later = generate_batch(50, seed=3)
    later.loc[:10, "region"] = "mars"
    later.loc[:10, "age"] = None
    assert model.predict_proba(later).shape == (50, 2)


@pytest.mark.parametrize(
    ("class_path", "message"),
    [
        ("sklearn.linear_model.NoSuchModel", "cannot import 'sklearn.linear_model.NoSuchModel'"),
        ("nosuchpackage.Model", "cannot import 'nosuchpackage.Model'"),
        ("os.path.join", "is not a scikit-learn estimator class"),
    ],
)
def test_unknown_estimator_is_named(class_path, message):
    with pytest.raises(EstimatorError, match="estimator.class_path") as raised:
        load_estimator_class(class_path)
    assert message in str(raised.value)


def test_bad_params_are_named():
    frame = generate_batch(200, seed=2)
    with pytest.raises(EstimatorError, match="estimator.params"):
        fit(_spec(no_such_param=1), frame)
    with pytest.raises(EstimatorError, match="estimator.params"):
        fit(_spec("sklearn.ensemble.HistGradientBoostingClassifier", max_iter=-3), frame)


def test_holdout_scoring_predicts_each_model_once_and_agrees_with_evaluate_and_the_log():
    from ctloop.scoring.batches import predict
    from ctloop.training.steps import _score_both

    frame, holdout = generate_batch(2000, seed=2), generate_batch(500, seed=4)
    candidate, champion = fit(_spec(max_iter=500), frame), fit(_spec(max_iter=50), frame.iloc[:300])
    calls = []

    class Counting:
        def __init__(self, model):
            self.model, self.classes_ = model, model.classes_

        def predict_proba(self, x):
            calls.append(id(self))
            return self.model.predict_proba(x)

    wrapped = Counting(candidate), Counting(champion)
    metrics, champion_metrics, rows = _score_both(_spec(), *wrapped, holdout)

    assert sorted(calls) == sorted(id(w) for w in wrapped)  # one pass over the holdout per model
    assert metrics == evaluate(candidate, holdout, _spec())
    assert champion_metrics == evaluate(champion, holdout, _spec())
    assert metrics != champion_metrics
    predicted, score = predict(champion, holdout, _spec())
    assert rows["champion_prediction"].tolist() == predicted.tolist()
    assert rows["champion_score"].to_numpy() == pytest.approx(score)
