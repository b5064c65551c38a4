"""Scoring a model with the metrics named in ctloop.evaluation.metric_catalog: on the holdout, or from the
prediction log once labels arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.training.estimator import features

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

    from ctloop.spec.models import PipelineSpec


class FittedModel(Protocol):
    """What ctloop uses of a fitted scikit-learn model (``classes_`` and ``predict_proba``:
    classifiers only)."""

    classes_: NDArray[Any]

    def predict(self, x: pd.DataFrame) -> NDArray[Any]: ...

    def predict_proba(self, x: pd.DataFrame) -> NDArray[Any]: ...


def outputs(model: FittedModel, frame: pd.DataFrame, spec: PipelineSpec) -> tuple[NDArray[Any], NDArray[Any]]:
    """One pass of the model over ``frame``: the predicted label (or value), and every class's
    probability (the value again for regression). Metrics and the prediction log both read it."""
    x = features(frame, spec)
    if spec.task == "regression":
        predicted = model.predict(x)
        return predicted, predicted
    probabilities = model.predict_proba(x)
    return model.classes_[probabilities.argmax(axis=1)], probabilities


def evaluate(model: FittedModel, holdout: pd.DataFrame, spec: PipelineSpec) -> dict[str, float]:
    """Every metric of the spec's task kind, as plain floats."""
    return evaluate_outputs(model, holdout, spec, *outputs(model, holdout, spec))


def evaluate_outputs(
    model: FittedModel,
    holdout: pd.DataFrame,
    spec: PipelineSpec,
    predicted: NDArray[Any],
    probabilities: NDArray[Any],
) -> dict[str, float]:
    """:func:`evaluate` from the model's :func:`outputs` on ``holdout``, computed once elsewhere."""
    y = holdout[spec.columns.target].to_numpy()
    if spec.task == "regression":
        return _named(spec, _regression(y, predicted))
    classes = list(model.classes_)
    scores = probabilities[:, 1] if len(classes) == 2 else probabilities
    return _named(spec, _classification(y, predicted, scores, classes))


def evaluate_logged(
    spec: PipelineSpec, y: NDArray[Any], predicted: NDArray[Any], score: NDArray[Any]
) -> dict[str, float]:
    """Metrics from the prediction log's ``prediction`` and ``score`` columns.

    The log keeps one score per row (the positive class's probability for binary models), so
    for multiclass models, or labels of one class only, ranking metrics are left out.
    """
    import numpy as np

    if spec.task == "regression":
        return _named(spec, _regression(y, predicted))
    classes = sorted(set(np.unique(y)) | set(np.unique(predicted)))
    if len(classes) == 2 and len(np.unique(y)) == 2:
        return _named(spec, _classification(y, predicted, score, classes))
    return _label_metrics(y, predicted, "binary" if len(classes) <= 2 else "macro")


def _named(spec: PipelineSpec, values: dict[str, float]) -> dict[str, float]:
    return {name: float(values[name]) for name in metric_names(spec.task)}


def _regression(y: NDArray[Any], predicted: NDArray[Any]) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as sk

    return {
        "rmse": float(np.sqrt(sk.mean_squared_error(y, predicted))),
        "mae": float(sk.mean_absolute_error(y, predicted)),
        "r2": float(sk.r2_score(y, predicted)),
    }


def _label_metrics(y: NDArray[Any], predicted: NDArray[Any], average: str) -> dict[str, float]:
    from sklearn import metrics as sk

    return {
        "accuracy": float(sk.accuracy_score(y, predicted)),
        "f1": float(sk.f1_score(y, predicted, average=average, zero_division=0)),
        "precision": float(sk.precision_score(y, predicted, average=average, zero_division=0)),
        "recall": float(sk.recall_score(y, predicted, average=average, zero_division=0)),
    }


def _classification(
    y: NDArray[Any], predicted: NDArray[Any], scores: NDArray[Any], classes: list[Any]
) -> dict[str, float]:
    """``scores`` is the positive class's probability when binary, else the probability matrix."""
    import numpy as np
    from sklearn import metrics as sk

    binary = len(classes) == 2
    probabilities = np.column_stack([1 - scores, scores]) if binary else scores
    return {
        **_label_metrics(y, predicted, "binary" if binary else "macro"),
        "roc_auc": float(sk.roc_auc_score(y, scores, multi_class="raise" if binary else "ovr")),
        "log_loss": float(sk.log_loss(y, probabilities, labels=classes)),
    }
