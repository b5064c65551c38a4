"""Metrics under row weights against scikit-learn, for every task type: binary, multiclass with
text labels, regression; on the rows as they are, on a resample (whole-number weights) and under
any positive weights (scikit-learn's ``sample_weight``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.evaluation.weighted_metrics import (
    Predictions,
    class_column,
    metric_function,
    metric_value,
    positive_label,
)

CLASSES = np.array(["high", "low", "mid"], dtype=object)  # a model's classes_: sorted


def multiclass(n: int, skill: float, seed: int) -> tuple[np.ndarray, Predictions]:
    """Text labels and a model's probabilities, rounded so that rows tie as real models' do."""
    rng = np.random.default_rng(seed)
    y = CLASSES[rng.choice(3, size=n, p=[0.2, 0.5, 0.3])]
    logits = skill * (y[:, None] == CLASSES[None, :]) + rng.normal(size=(n, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities = probabilities.round(2)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted = CLASSES[probabilities.argmax(axis=1)]
    return y, Predictions(predicted, probabilities.max(axis=1), probabilities, CLASSES)


def binary(n: int, seed: int) -> tuple[np.ndarray, Predictions]:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, "yes", "no").astype(object)
    score = np.clip(0.4 * (y == "yes") + 0.6 * rng.random(n), 0, 1).round(2)
    return y, Predictions(np.where(score > 0.5, "yes", "no").astype(object), score)


def regression(n: int, seed: int) -> tuple[np.ndarray, Predictions]:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, n)
    values = y + rng.normal(0, 2, n)
    return y, Predictions(values, values)


def sklearn_metric(task: str, metric: str, y, p: Predictions, weight=None) -> float:
    """The metric as ctloop's holdout evaluation computes it with scikit-learn."""
    if task == "regression":
        return {
            "rmse": lambda: np.sqrt(sk.mean_squared_error(y, p.predicted, sample_weight=weight)),
            "mae": lambda: sk.mean_absolute_error(y, p.predicted, sample_weight=weight),
            "r2": lambda: sk.r2_score(y, p.predicted, sample_weight=weight),
        }[metric]()
    if p.probabilities is not None:  # multiclass
        average: dict = {"average": "macro", "zero_division": 0}
        scores, extra = p.probabilities, {"multi_class": "ovr", "labels": list(p.classes)}
        loss = {"labels": list(p.classes)}
    else:
        average = {"pos_label": "yes"}
        scores, extra, loss = p.score, {}, {"labels": ["no", "yes"]}
    return {
        "accuracy": lambda: sk.accuracy_score(y, p.predicted, sample_weight=weight),
        "f1": lambda: sk.f1_score(y, p.predicted, sample_weight=weight, **average),
        "precision": lambda: sk.precision_score(y, p.predicted, sample_weight=weight, **average),
        "recall": lambda: sk.recall_score(y, p.predicted, sample_weight=weight, **average),
        "roc_auc": lambda: sk.roc_auc_score(y, scores, sample_weight=weight, **extra),
        "log_loss": lambda: sk.log_loss(
            y, scores if p.probabilities is not None else p.score, sample_weight=weight, **loss
        ),
        "brier": lambda: sk.brier_score_loss(
            y, scores, sample_weight=weight, **(loss if p.probabilities is not None else {"pos_label": "yes"})
        ),
    }[metric]()


CASES = [
    *(("binary", m) for m in metric_names("classification")),
    *(("multiclass", m) for m in metric_names("classification")),
    *(("regression", m) for m in metric_names("regression")),
]


@pytest.mark.parametrize(("kind", "metric"), CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_every_metric_agrees_with_sklearn_unweighted_resampled_and_weighted(kind: str, metric: str) -> None:
    y, predictions = {"binary": binary, "multiclass": multiclass, "regression": regression}[kind](
        *((1500, 1.5, 1) if kind == "multiclass" else (1500, 1))
    )
    task = "regression" if kind == "regression" else "classification"
    positive = positive_label(y, predictions)
    assert positive == ("yes" if kind == "binary" else None)

    value, why = metric_value(task, metric, y, predictions, positive)
    assert why is None
    assert value == pytest.approx(sklearn_metric(task, metric, y, predictions), rel=1e-9, abs=1e-12)

    drawn = np.random.default_rng(3).integers(0, len(y), len(y))
    counts = np.bincount(drawn, minlength=len(y)).astype(float)
    weights = np.random.default_rng(4).gamma(2.0, size=len(y))
    scored = metric_function(task, metric, y, predictions, positive)(np.vstack([counts, weights]))
    resampled = sklearn_metric(task, metric, y[drawn], predictions.take(drawn))
    assert scored[0] == pytest.approx(resampled, rel=1e-9, abs=1e-12)
    assert scored[1] == pytest.approx(
        sklearn_metric(task, metric, y, predictions, weights), rel=1e-9, abs=1e-12
    )
    assert scored[0] != pytest.approx(value, rel=1e-6)


def test_macro_averages_count_a_class_never_predicted_as_zero_like_sklearn() -> None:
    y, predictions = multiclass(900, 1.5, 2)
    rare = np.where(predictions.predicted == "high", "low", predictions.predicted).astype(object)
    never = Predictions(rare, predictions.score, predictions.probabilities, CLASSES)
    for metric in ("f1", "precision", "recall"):
        value, why = metric_value("classification", metric, y, never, None)
        assert why is None
        assert value == pytest.approx(sklearn_metric("classification", metric, y, never), rel=1e-9)
    precision, _ = metric_value("classification", "precision", y, never, None)
    assert precision < metric_value("classification", "precision", y, predictions, None)[0]


def test_roc_auc_needs_every_class_among_the_labels_and_names_the_missing_one() -> None:
    y, predictions = multiclass(600, 1.5, 5)
    rows = y != "mid"
    value, why = metric_value("classification", "roc_auc", y[rows], predictions.take(rows), None)
    assert value is None
    assert "one-vs-rest" in why
    assert "mid" in why
    loss, _ = metric_value("classification", "log_loss", y[rows], predictions.take(rows), None)
    expected = sk.log_loss(y[rows], predictions.probabilities[rows], labels=list(CLASSES))
    assert loss == pytest.approx(expected, rel=1e-9)  # log_loss stays defined on two of three classes


def test_a_label_the_model_does_not_know_leaves_ranking_metrics_undefined() -> None:
    y, predictions = multiclass(300, 1.5, 6)
    y = y.copy()
    y[:5] = "urgent"
    for metric in ("roc_auc", "log_loss", "brier"):
        value, why = metric_value("classification", metric, y, predictions, None)
        assert value is None
        assert "'urgent'" in why
        assert "not among the model's classes" in why
    accuracy, _ = metric_value("classification", "accuracy", y, predictions, None)
    assert accuracy == pytest.approx(sk.accuracy_score(y, predictions.predicted))


def test_without_every_class_probability_label_metrics_stay_and_ranking_ones_say_why() -> None:
    y, predictions = multiclass(600, 1.5, 7)
    top_only = Predictions(predictions.predicted, predictions.score)
    f1, _ = metric_value("classification", "f1", y, top_only, positive_label(y, top_only))
    assert f1 == pytest.approx(sklearn_metric("classification", "f1", y, predictions), rel=1e-9)
    for metric in ("roc_auc", "log_loss"):
        value, why = metric_value("classification", metric, y, top_only, positive_label(y, top_only))
        assert value is None
        assert "every class's probability" in why


def test_a_multiclass_model_stays_multiclass_on_rows_showing_two_classes() -> None:
    """The model's classes decide, not the rows: its top probability is no positive-class score."""
    y, predictions = multiclass(900, 1.5, 8)
    rows = (y != "mid") & (predictions.predicted != "mid")
    some = predictions.take(rows)
    assert positive_label(y[rows], some) is None
    accuracy, _ = metric_value("classification", "accuracy", y[rows], some, None)
    f1, _ = metric_value("classification", "f1", y[rows], some, None)
    assert accuracy == pytest.approx(sk.accuracy_score(y[rows], some.predicted))
    assert f1 == pytest.approx(sk.f1_score(y[rows], some.predicted, average="macro", zero_division=0))


def test_columns_and_from_frame_round_trip_and_type_classes_like_the_labels() -> None:
    classes = np.array([0, 1, 2])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    predictions = Predictions(np.array([0, 2]), probabilities.max(axis=1), probabilities, classes)
    columns = predictions.columns("prediction", "score")
    assert list(columns) == ["prediction", "score", "score__0", "score__1", "score__2"]
    assert class_column("shadow_score", "low") == "shadow_score__low"
    frame = pd.DataFrame({**columns, "shadow_score": [0.5, 0.5]})
    back = Predictions.from_frame(frame, "prediction", "score")
    assert back.classes.tolist() == [0, 1, 2]
    assert back.classes.dtype.kind == "i"
    np.testing.assert_array_equal(back.probabilities, probabilities)
    assert Predictions.from_frame(frame, "prediction", "shadow_score").probabilities is None


def test_from_frame_reads_several_versions_and_old_rows() -> None:
    """A class a version does not know has probability 0 on its rows; one row logged without class
    probabilities (an old log) leaves the predictions without them."""
    frame = pd.DataFrame(
        {
            "prediction": ["a", "b", "c"],
            "score": [0.6, 0.5, 0.9],
            "score__a": [0.6, 0.3, 0.05],
            "score__b": [0.3, 0.5, 0.05],
            "score__c": [0.1, 0.2, 0.9],
            "score__d": [np.nan, np.nan, 0.0],
        }
    )
    read = Predictions.from_frame(frame, "prediction", "score")
    assert read.classes.tolist() == ["a", "b", "c", "d"]
    assert read.probabilities[:, 3].tolist() == [0.0, 0.0, 0.0]
    old = pd.concat([frame, pd.DataFrame({"prediction": ["a"], "score": [0.8]})], ignore_index=True)
    assert Predictions.from_frame(old, "prediction", "score").probabilities is None
    stale = frame.assign(score__e=np.nan)  # a class of a version none of these rows came from
    assert Predictions.from_frame(stale, "prediction", "score").classes.tolist() == ["a", "b", "c", "d"]


def test_mismatched_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        Predictions(np.array(["a"]), np.array([1.0]), np.array([[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        Predictions(np.array(["a"]), np.array([1.0]), np.array([[1.0, 0.0]]), CLASSES)
