"""Scoring a fitted model on the holdout with the metrics named in ctloop.metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.metrics import metric_names
from ctloop.training import features

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.spec import PipelineSpec


def evaluate(model, holdout: pd.DataFrame, spec: PipelineSpec) -> dict[str, float]:
    """Every metric of the spec's task kind, as plain floats."""
    import numpy as np
    from sklearn import metrics as sk

    x, y = features(holdout, spec), holdout[spec.columns.target].to_numpy()
    if spec.task == "regression":
        predicted = model.predict(x)
        values = {
            "rmse": float(np.sqrt(sk.mean_squared_error(y, predicted))),
            "mae": sk.mean_absolute_error(y, predicted),
            "r2": sk.r2_score(y, predicted),
        }
    else:
        probabilities = model.predict_proba(x)
        classes = list(model.classes_)
        predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
        binary = len(classes) == 2
        scores = probabilities[:, 1] if binary else probabilities
        average = "binary" if binary else "macro"
        values = {
            "roc_auc": sk.roc_auc_score(y, scores, multi_class="raise" if binary else "ovr"),
            "accuracy": sk.accuracy_score(y, predicted),
            "f1": sk.f1_score(y, predicted, average=average, zero_division=0),
            "precision": sk.precision_score(y, predicted, average=average, zero_division=0),
            "recall": sk.recall_score(y, predicted, average=average, zero_division=0),
            "log_loss": sk.log_loss(y, probabilities, labels=classes),
        }
    return {name: float(values[name]) for name in metric_names(spec.task)}
