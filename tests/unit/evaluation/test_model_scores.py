"""A model scored on the holdout and from its prediction log agree, for every task type: binary
(text labels too), multiclass with text labels (every metric, from the logged class
probabilities), regression; a log without class probabilities says what it cannot compute."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.evaluation.model_scores import evaluate, logged_metrics
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.scoring.batches import model_predictions
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import (
    multiclass_batch,
    multiclass_spec,
    regression_batch,
    regression_spec,
)


@pytest.fixture(scope="module")
def multiclass():
    spec = multiclass_spec("scores_mc")
    model = fit(spec, multiclass_batch(1000, seed=1))
    return spec, model, multiclass_batch(500, seed=2)


def _log_frame(spec, model, holdout):
    """The holdout's rows as the prediction log keeps them, labels joined."""
    columns = model_predictions(model, holdout, spec).columns("prediction", "score")
    return holdout.assign(**columns)


def test_a_multiclass_log_scores_every_metric_as_the_holdout_does(multiclass):
    spec, model, holdout = multiclass
    logged = _log_frame(spec, model, holdout)
    assert {"score__high", "score__low", "score__mid"} <= set(logged.columns)

    read = Predictions.from_frame(logged, "prediction", "score")
    values, undefined = logged_metrics(spec, holdout[TARGET].to_numpy(), read)

    assert undefined == {}
    assert values == pytest.approx(evaluate(model, holdout, spec), rel=1e-9)
    assert set(values) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"}


def test_a_multiclass_log_without_class_probabilities_keeps_label_metrics_and_says_why(multiclass):
    spec, model, holdout = multiclass
    logged = _log_frame(spec, model, holdout)[["prediction", "score"]]
    y = holdout[TARGET].to_numpy()

    values, undefined = logged_metrics(spec, y, Predictions.from_frame(logged, "prediction", "score"))

    assert set(undefined) == {"roc_auc", "log_loss", "brier"}
    assert all("every class's probability" in why for why in undefined.values())
    assert values["f1"] == pytest.approx(sk.f1_score(y, logged["prediction"], average="macro"))


def test_rows_of_two_classes_in_a_multiclass_log_are_still_scored_as_multiclass(multiclass):
    spec, model, holdout = multiclass
    logged = _log_frame(spec, model, holdout)
    rows = logged[(logged[TARGET] != "mid") & (logged["prediction"] != "mid")]
    y = rows[TARGET].to_numpy()

    values, undefined = logged_metrics(spec, y, Predictions.from_frame(rows, "prediction", "score"))

    assert values["f1"] == pytest.approx(sk.f1_score(y, rows["prediction"], average="macro"))
    assert "one-vs-rest" in undefined["roc_auc"]
    probabilities = rows[["score__high", "score__low", "score__mid"]]
    expected = sk.log_loss(y, probabilities, labels=list(model.classes_))
    assert values["log_loss"] == pytest.approx(expected, rel=1e-9)
    brier = sk.brier_score_loss(y, probabilities, labels=list(model.classes_))
    assert values["brier"] == pytest.approx(brier, rel=1e-9)


def test_binary_text_labels_are_scored_around_the_larger_label():
    raw = example_spec("scores_yes_no", "data")
    spec = PipelineSpec.model_validate(raw)
    frame, holdout = generate_batch(1500, seed=1), generate_batch(600, seed=2)
    frame[TARGET] = np.where(frame[TARGET] == 1, "yes", "no")
    holdout[TARGET] = np.where(holdout[TARGET] == 1, "yes", "no")
    model = fit(spec, frame)

    metrics = evaluate(model, holdout, spec)

    predicted = model.predict(holdout[spec.columns.features])
    assert metrics["f1"] == pytest.approx(sk.f1_score(holdout[TARGET], predicted, pos_label="yes"))
    assert metrics["recall"] != pytest.approx(sk.recall_score(holdout[TARGET], predicted, pos_label="no"))
    logged = _log_frame(spec, model, holdout)
    values, undefined = logged_metrics(
        spec, holdout[TARGET].to_numpy(), Predictions.from_frame(logged, "prediction", "score")
    )
    assert [c for c in logged.columns if "__" in c] == []
    assert undefined == {}
    assert values == pytest.approx(metrics, rel=1e-9)


def test_a_regression_log_scores_as_the_holdout_does():
    spec = regression_spec("scores_reg")
    model = fit(spec, regression_batch(1000, seed=1))
    holdout = regression_batch(500, seed=2)
    logged = _log_frame(spec, model, holdout)

    values, undefined = logged_metrics(
        spec, holdout[TARGET].to_numpy(), Predictions.from_frame(logged, "prediction", "score")
    )

    assert [c for c in logged.columns if "__" in c] == []
    assert undefined == {}
    assert values == pytest.approx(evaluate(model, holdout, spec), rel=1e-9)
    assert set(values) == {"rmse", "mae", "r2"}


def test_a_multiclass_holdout_missing_a_class_or_holding_an_unknown_one_is_still_scored(multiclass):
    spec, model, holdout = multiclass
    classes = list(model.classes_)
    whole = evaluate(model, holdout, spec)
    probabilities = model.predict_proba(holdout[spec.columns.features])
    # every class present: scikit-learn's own one-vs-rest macro roc_auc
    assert whole["roc_auc"] == pytest.approx(
        sk.roc_auc_score(holdout[TARGET], probabilities, multi_class="ovr")
    )

    rare = classes[-1]
    without = holdout[holdout[TARGET] != rare]
    values = evaluate(model, without, spec)  # scikit-learn's roc_auc_score raises on these rows
    kept = without[spec.columns.features]
    per_class = [
        sk.roc_auc_score(without[TARGET] == c, model.predict_proba(kept)[:, i])
        for i, c in enumerate(classes)
        if c != rare
    ]
    assert values["roc_auc"] == pytest.approx(np.mean(per_class))
    assert values["log_loss"] == pytest.approx(
        sk.log_loss(without[TARGET], model.predict_proba(kept), labels=classes)
    )

    unknown = holdout.copy()
    unknown.loc[unknown.index[:5], TARGET] = "never_seen"
    values = evaluate(model, unknown, spec)
    assert np.isfinite(values["log_loss"])
    assert values["log_loss"] > whole["log_loss"]  # a label the model cannot give is a certain mistake
    assert values["brier"] > whole["brier"]
    assert np.isfinite(values["roc_auc"])
