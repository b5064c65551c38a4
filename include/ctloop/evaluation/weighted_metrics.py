"""A model's predictions on the holdout, and ctloop's metrics computed from them under row weights.

The bootstrap and slice rules score the same predictions thousands of times (resamples) or per
group of rows (slices). Predicting once and computing each metric from sufficient statistics
weighted by how often each row is drawn turns 1,000 resamples into a few matrix products
instead of 2,000 scikit-learn calls. The values agree with scikit-learn on unweighted data
(tests/unit/gating/test_paired_bootstrap.py); where scikit-learn would return 0 by convention (precision with
no predicted positive) or raise (roc_auc with one class), the value here is undefined (NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.evaluation.metric_catalog import metric_names

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from ctloop.evaluation.metric_catalog import TaskKind

MetricFunction = Callable[["np.ndarray"], "np.ndarray"]
BINARY_ONLY = ("roc_auc", "log_loss", "f1", "precision", "recall")


@dataclass(frozen=True)
class Predictions:
    """One model's output, aligned with the holdout's labels.

    ``predicted`` holds labels (classification) or values (regression); ``score`` holds the
    positive class's probability (binary classification), the predicted class's probability
    (multiclass: only accuracy is computed then) or the value (regression), as
    ``ctloop.scoring.batches.predict`` returns them.
    """

    predicted: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        if len(self.predicted) != len(self.score):
            raise ValueError(f"predicted has {len(self.predicted)} rows but score has {len(self.score)}")

    def __len__(self) -> int:
        return len(self.predicted)

    def take(self, rows: np.ndarray) -> Predictions:
        """The predictions of the selected rows (a boolean mask or indices)."""
        return Predictions(self.predicted[rows], self.score[rows])


def positive_label(y: ArrayLike, *predictions: Predictions) -> Any | None:
    """The positive class, as scikit-learn's binary metrics take it (1, or the larger of two
    labels); None when there are more than two classes, or one class that is not 0/1."""
    import numpy as np

    seen = [np.asarray(y)] + [np.asarray(p.predicted) for p in predictions]
    classes = np.unique(np.concatenate(seen)) if sum(len(s) for s in seen) else np.array([])
    if len(classes) > 2:
        return None
    if set(classes.tolist()) <= {0, 1}:
        return classes.dtype.type(1) if classes.dtype != object else 1
    return classes[-1] if len(classes) == 2 else None


def metric_function(
    task: TaskKind, metric: str, y: ArrayLike, predictions: Predictions, positive: Any | None
) -> MetricFunction:
    """A function of row weights, shape (k, n), returning the metric under each of the k rows of
    weights; NaN where it is undefined (say, one class only among the drawn rows)."""
    import numpy as np

    if metric not in metric_names(task):
        raise ValueError(f"{metric!r} is not a {task} metric; choose one of {', '.join(metric_names(task))}")
    labels = np.asarray(y)
    if task == "regression":
        return _regression(metric, labels.astype(float), np.asarray(predictions.predicted, dtype=float))
    if metric == "accuracy":
        correct = (np.asarray(predictions.predicted) == labels).astype(float)
        return lambda w: _ratio(w @ correct, w.sum(axis=1))
    if positive is None:
        return lambda w: np.full(w.shape[0], np.nan)
    is_positive = (labels == positive).astype(float)
    if metric == "roc_auc":
        return _roc_auc(is_positive, np.asarray(predictions.score, dtype=float))
    if metric == "log_loss":
        score = np.asarray(predictions.score, dtype=float)
        eps = np.finfo(score.dtype).eps
        losses = -np.log(np.clip(np.where(is_positive == 1, score, 1 - score), eps, 1 - eps))
        return lambda w: _ratio(w @ losses, w.sum(axis=1))
    predicted_positive = (np.asarray(predictions.predicted) == positive).astype(float)
    hits = is_positive * predicted_positive
    combine: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = {
        "precision": lambda tp, pp, ap: _ratio(tp, pp),
        "recall": lambda tp, pp, ap: _ratio(tp, ap),
        "f1": lambda tp, pp, ap: _ratio(2 * tp, pp + ap),
    }[metric]
    return lambda w: combine(w @ hits, w @ predicted_positive, w @ is_positive)


def metric_value(
    task: TaskKind, metric: str, y: ArrayLike, predictions: Predictions, positive: Any | None
) -> tuple[float | None, str | None]:
    """The metric on all rows, once: ``(value, None)``, or ``(None, why it is undefined)``."""
    import numpy as np

    if len(predictions) == 0:
        return None, "there are no rows"
    value = float(metric_function(task, metric, y, predictions, positive)(np.ones((1, len(predictions))))[0])
    if np.isfinite(value):
        return value, None
    return None, _why_undefined(task, metric, positive)


def _why_undefined(task: TaskKind, metric: str, positive: Any | None) -> str:
    if task == "classification" and positive is None and metric in BINARY_ONLY:
        return f"{metric} needs binary labels (0/1 or two classes) and these rows have other labels"
    return {
        "roc_auc": "roc_auc needs both classes and these rows hold one class only",
        "precision": "precision is undefined: no row is predicted positive",
        "recall": "recall is undefined: no row is labeled positive",
        "f1": "f1 is undefined: no row is labeled or predicted positive",
        "r2": "r2 is undefined: the target is constant on these rows",
    }.get(metric, f"{metric} is undefined on these rows")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _regression(metric: str, y: np.ndarray, predicted: np.ndarray) -> MetricFunction:
    import numpy as np

    errors = predicted - y
    if metric == "rmse":
        squared = errors**2
        return lambda w: np.sqrt(_ratio(w @ squared, w.sum(axis=1)))
    if metric == "mae":
        absolute = np.abs(errors)
        return lambda w: _ratio(w @ absolute, w.sum(axis=1))
    squared = errors**2
    centered = y - y.mean()  # r2 is shift-invariant; centering keeps the variance sums accurate

    def r2(w: np.ndarray) -> np.ndarray:
        total, sums, squares = w.sum(axis=1), w @ centered, w @ centered**2
        spread = squares - _ratio(sums**2, total)
        # a target constant on the drawn rows leaves only rounding in ``spread``: r2 is undefined
        constant = spread <= 1e-9 * squares
        return np.where(constant, np.nan, 1 - _ratio(w @ squared, np.where(constant, 1.0, spread)))

    return r2


def _roc_auc(is_positive: np.ndarray, score: np.ndarray) -> MetricFunction:
    """Weighted Mann-Whitney U: each positive row wins the negative weight scored below it and
    half the negative weight tied with it. Negatives are sorted by score once; per resample, one
    cumulative sum over them and a lookup at each positive's (precomputed) position suffice."""
    import numpy as np

    positives = np.flatnonzero(is_positive == 1)
    negatives = np.flatnonzero(is_positive == 0)
    negatives = negatives[np.argsort(score[negatives], kind="stable")]
    below = np.searchsorted(score[negatives], score[positives], side="left")
    not_above = np.searchsorted(score[negatives], score[positives], side="right")

    def auc(w: np.ndarray) -> np.ndarray:
        cumulative = np.zeros((w.shape[0], len(negatives) + 1))
        np.cumsum(np.take(w, negatives, axis=1), axis=1, out=cumulative[:, 1:])
        drawn = np.take(w, positives, axis=1)
        ranks = np.take(cumulative, below, axis=1) + np.take(cumulative, not_above, axis=1)
        wins = np.einsum("ij,ij->i", drawn, ranks) / 2
        return _ratio(wins, drawn.sum(axis=1) * cumulative[:, -1])

    return auc
