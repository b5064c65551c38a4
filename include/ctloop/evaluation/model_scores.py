"""Scoring a model with the metrics named in ctloop.evaluation.metric_catalog: on the holdout, or from the
prediction log once labels arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.training.estimator import features

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

    from ctloop.evaluation.weighted_metrics import Predictions
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


def logged_metrics(
    spec: PipelineSpec, y: NDArray[Any], predictions: Predictions
) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics of logged predictions once labels arrived: those defined on these rows, and why
    each other one is not.

    Label metrics are scikit-learn's, as on the holdout (binary around the positive class,
    macro-averaged for multiclass models, 0 where a class's precision or recall divides by
    zero); roc_auc, log_loss and brier are :mod:`ctloop.evaluation.weighted_metrics`' (the champion watch's),
    so they need both classes (binary), or every class's probability as the log keeps it for
    multiclass models (``<score>__<class>`` columns: a log written before then has none).
    """
    import numpy as np

    from ctloop.evaluation.weighted_metrics import metric_value, multiclass, positive_label

    if spec.task == "regression":
        return _named(spec, _regression(y, predictions.predicted)), {}
    positive = positive_label(y, predictions)
    values: dict[str, float] = {}
    if positive is not None or multiclass(y, predictions):
        values = _label_metrics(np.asarray(y), np.asarray(predictions.predicted), positive)
    undefined: dict[str, str] = {}
    for metric in metric_names(spec.task):
        if metric in values:
            continue
        value, why = metric_value(spec.task, metric, y, predictions, positive)
        if value is None:
            undefined[metric] = str(why)
        else:
            values[metric] = value
    return {m: values[m] for m in metric_names(spec.task) if m in values}, undefined


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


def _label_metrics(y: NDArray[Any], predicted: NDArray[Any], positive: Any | None) -> dict[str, float]:
    """Accuracy, and f1, precision and recall of the ``positive`` class (binary) or macro-averaged
    over the classes (``positive`` None)."""
    from sklearn import metrics as sk

    average: dict[str, Any] = {"average": "macro"} if positive is None else {"pos_label": positive}
    return {
        "accuracy": float(sk.accuracy_score(y, predicted)),
        "f1": float(sk.f1_score(y, predicted, zero_division=0, **average)),
        "precision": float(sk.precision_score(y, predicted, zero_division=0, **average)),
        "recall": float(sk.recall_score(y, predicted, zero_division=0, **average)),
    }


def _classification(
    y: NDArray[Any], predicted: NDArray[Any], scores: NDArray[Any], classes: list[Any]
) -> dict[str, float]:
    """``scores`` is the positive class's probability when binary, else the probability matrix;
    ``classes`` the model's, sorted: the positive class of a binary model is the second."""
    import numpy as np
    from sklearn import metrics as sk

    binary = len(classes) == 2
    if binary:
        return {
            **_label_metrics(y, predicted, classes[1]),
            "roc_auc": float(sk.roc_auc_score(y, scores)),
            "log_loss": float(sk.log_loss(y, np.column_stack([1 - scores, scores]), labels=classes)),
            "brier": float(sk.brier_score_loss(y, scores, pos_label=classes[1])),
        }
    return {**_label_metrics(y, predicted, None), **_multiclass_probability_metrics(y, scores, classes)}


def _multiclass_probability_metrics(
    y: NDArray[Any], probabilities: NDArray[Any], classes: list[Any]
) -> dict[str, float]:
    """roc_auc (one-vs-rest, macro), log_loss and brier of a multiclass model on rows that may lack
    one of its classes (a rare class, a small holdout) or hold a label it never saw.

    With every class present this is scikit-learn's ``roc_auc_score(multi_class="ovr")``; a class
    with no row (or only rows) of its own has no one-vs-rest AUC and is left out of the average,
    where scikit-learn would raise. A label the model does not know gets probability 0, so it
    costs log loss and brier as a certain mistake does instead of stopping the evaluation."""
    import numpy as np
    import pandas as pd
    from sklearn import metrics as sk

    labels = np.asarray(y)
    judged = [i for i, c in enumerate(classes) if 0 < int((labels == c).sum()) < len(labels)]
    aucs = [sk.roc_auc_score(labels == classes[i], probabilities[:, i]) for i in judged]
    unknown = sorted(set(labels.tolist()) - set(classes), key=str)
    padded = np.hstack([probabilities, np.zeros((len(labels), len(unknown)))])
    # each row's column among the classes then the unknown labels, in that order (not sorted as
    # scikit-learn's brier_score_loss would take them)
    actual = pd.Index([*classes, *unknown]).get_indexer(labels)[:, None] == np.arange(padded.shape[1])
    return {
        "roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "log_loss": float(sk.log_loss(labels, padded, labels=[*classes, *unknown])),
        "brier": float(((padded - actual) ** 2).sum(axis=1).mean()),
    }
