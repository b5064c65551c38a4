"""A model's predictions on the holdout, and ctloop's metrics computed from them under row weights.

The bootstrap and slice rules score the same predictions thousands of times (resamples) or per
group of rows (slices). Predicting once and computing each metric from sufficient statistics
weighted by how often each row is drawn turns 1,000 resamples into a few matrix products
instead of 2,000 scikit-learn calls. The values agree with scikit-learn on unweighted data
(tests/unit/gating/test_paired_bootstrap.py, tests/unit/evaluation/test_weighted_metrics.py); where
scikit-learn would return 0 by convention (precision with no predicted positive) or raise or warn
(roc_auc with one class), the value here is undefined (NaN).

Multiclass models get every classification metric as scikit-learn computes it: accuracy; f1,
precision and recall macro-averaged over the classes among the labels and predictions (a class's
0/0 counting 0, scikit-learn's ``zero_division=0``: one rare class never predicted must not leave
the average undefined); roc_auc one-vs-rest, macro-averaged over the model's classes (undefined
when a class has no row, or a label is not a class of the model); log_loss and brier over every
class's probability. The probability metrics need every class's probability
(:attr:`Predictions.probabilities`); predictions logged without them leave roc_auc, log_loss and
brier undefined, and say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.evaluation.metric_catalog import metric_names

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike

    from ctloop.evaluation.metric_catalog import TaskKind

MetricFunction = Callable[["np.ndarray"], "np.ndarray"]
WEIGHTS_PER_CHUNK = 2_000_000  # resamples x rows held in memory at once (16 MB of float64)
BINARY_ONLY = ("roc_auc", "log_loss", "brier", "f1", "precision", "recall")
CLASS_SEPARATOR = "__"  # a class's probability column: ``<score column>__<class>``


@dataclass(frozen=True)
class Predictions:
    """One model's output, aligned with the holdout's labels.

    ``predicted`` holds labels (classification) or values (regression); ``score`` holds the
    positive class's probability (binary classification), the predicted class's probability
    (multiclass) or the value (regression), as ``ctloop.scoring.batches.predict`` returns them.
    A multiclass model's output also holds ``probabilities``, every class's probability (one
    column per class, in the order of ``classes``, the model's ``classes_``): its ranking metrics
    need them. Without them (a log written before they were kept), only the label metrics are
    defined.
    """

    predicted: np.ndarray
    score: np.ndarray
    probabilities: np.ndarray | None = None
    classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.predicted) != len(self.score):
            raise ValueError(f"predicted has {len(self.predicted)} rows but score has {len(self.score)}")
        if (self.probabilities is None) != (self.classes is None):
            raise ValueError("probabilities and classes go together: give both or neither")
        if self.probabilities is not None and self.classes is not None:
            expected = (len(self.predicted), len(self.classes))
            if self.probabilities.shape != expected:
                raise ValueError(f"probabilities have shape {self.probabilities.shape}, not {expected}")

    def __len__(self) -> int:
        return len(self.predicted)

    def take(self, rows: np.ndarray) -> Predictions:
        """The predictions of the selected rows (a boolean mask or indices)."""
        probabilities = None if self.probabilities is None else self.probabilities[rows]
        return Predictions(self.predicted[rows], self.score[rows], probabilities, self.classes)

    def columns(self, prediction: str, score: str) -> dict[str, np.ndarray]:
        """The columns a frame keeps of these predictions, by name: ``prediction``, ``score``
        and, with every class's probability, ``<score>__<class>`` for each class."""
        found = {prediction: self.predicted, score: self.score}
        if self.probabilities is not None and self.classes is not None:
            found |= {class_column(score, c): self.probabilities[:, i] for i, c in enumerate(self.classes)}
        return found

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, prediction: str, score: str, dtype: Any = None) -> Predictions:
        """Read back what :meth:`columns` wrote (``dtype``: the labels' type, for a column of
        another). Classes are typed like the labels (``"2"`` is the class 2 of an integer label).
        The frame may join several model versions' rows: a class column null on every row is no
        class of these rows' models (a version whose rows were filtered out knew it), and one null
        where the row's other class columns are set is a class its version does not know
        (probability 0). When a row has no class probability at all (a log written before they
        were kept), the predictions have none."""
        import numpy as np

        labels = frame[prediction] if dtype is None else frame[prediction].astype(dtype)
        predicted, score_values = labels.to_numpy(), frame[score].to_numpy(dtype=float)
        prefix = f"{score}{CLASS_SEPARATOR}"
        names = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix)]
        matrix = frame[names].to_numpy(dtype=float)
        kept = ~np.isnan(matrix).all(axis=0)
        matrix, names = matrix[:, kept], [n for n, k in zip(names, kept, strict=True) if k]
        if not names or np.isnan(matrix).all(axis=1).any():
            return cls(predicted, score_values)
        texts = np.asarray([n.removeprefix(prefix) for n in names], dtype=object)
        classes = texts.astype(predicted.dtype) if predicted.dtype.kind in "iuf" else texts
        return cls(predicted, score_values, np.nan_to_num(matrix, nan=0.0), classes)


def class_column(score: str, label: Any) -> str:
    """The name of the column holding the probability of class ``label`` beside ``score``."""
    return f"{score}{CLASS_SEPARATOR}{label}"


def positive_label(y: ArrayLike, *predictions: Predictions) -> Any | None:
    """The positive class, as scikit-learn's binary metrics take it (1, or the larger of two
    labels); None when there are more than two classes (among the labels, the predictions or a
    model's classes), or one class that is not 0/1."""
    import numpy as np

    if any(p.classes is not None and len(p.classes) > 2 for p in predictions):
        return None
    classes = _seen(np.asarray(y), *predictions)
    if len(classes) > 2:
        return None
    if set(classes.tolist()) <= {0, 1}:
        return classes.dtype.type(1) if classes.dtype != object else 1
    return classes[-1] if len(classes) == 2 else None


def multiclass(y: ArrayLike, predictions: Predictions) -> bool:
    """Whether these are a multiclass model's predictions: it has more than two classes, or the
    labels and predictions hold more than two."""
    import numpy as np

    if predictions.classes is not None:
        return len(predictions.classes) > 2
    return len(_seen(np.asarray(y), predictions)) > 2


def _seen(y: np.ndarray, *predictions: Predictions) -> np.ndarray:
    """The distinct values among the labels and the predicted labels, sorted."""
    import numpy as np

    seen = [y] + [np.asarray(p.predicted) for p in predictions]
    return np.unique(np.concatenate(seen)) if sum(len(s) for s in seen) else np.array([])


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
        if multiclass(labels, predictions):
            return _multiclass(metric, labels, predictions)
        return lambda w: np.full(w.shape[0], np.nan)
    is_positive = (labels == positive).astype(float)
    if metric == "roc_auc":
        return _roc_auc(is_positive, np.asarray(predictions.score, dtype=float))
    if metric in ("log_loss", "brier"):
        score = np.asarray(predictions.score, dtype=float)
        if metric == "brier":  # squared error of the positive class's probability
            losses = (score - is_positive) ** 2
        else:
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


def bootstrap_weights(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples of ``rows`` rows as weights (how often each row is drawn), a chunk
    of resamples at a time: each is a (chunk, rows) array for a :data:`MetricFunction`. Seeded, so a
    re-run draws the same resamples."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chunk = max(1, WEIGHTS_PER_CHUNK // rows)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, rows, size=(size, rows), dtype=np.int64) + rows * np.arange(size)[:, None]
        yield np.bincount(drawn.ravel(), minlength=size * rows).reshape(size, rows).astype(float)


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
    return None, _why_undefined(task, metric, np.asarray(y), predictions, positive)


def _why_undefined(
    task: TaskKind, metric: str, y: np.ndarray, predictions: Predictions, positive: Any | None
) -> str:
    if task == "classification" and positive is None and metric in BINARY_ONLY:
        if multiclass(y, predictions):
            return _why_multiclass_undefined(metric, y, predictions)
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


def _multiclass(metric: str, labels: np.ndarray, predictions: Predictions) -> MetricFunction:
    """A multiclass metric other than accuracy, as scikit-learn computes it (see the module)."""
    import numpy as np

    predicted = np.asarray(predictions.predicted)
    if metric in ("f1", "precision", "recall"):
        return _macro(metric, labels, predicted)
    if predictions.probabilities is None or predictions.classes is None:
        return lambda w: np.full(w.shape[0], np.nan)
    probabilities = np.asarray(predictions.probabilities, dtype=float)
    position = _positions(labels, predictions.classes)
    unknown = (position < 0).astype(float)  # a label the model has no class for: undefined
    if metric == "roc_auc":
        per_class = [
            _roc_auc((position == i).astype(float), probabilities[:, i])
            for i in range(len(predictions.classes))
        ]
        return lambda w: np.where(
            w @ unknown > 0, np.nan, np.column_stack([auc(w) for auc in per_class]).mean(axis=1)
        )
    if metric == "brier":  # squared error summed over the classes, in [0, 2]
        actual = position[:, None] == np.arange(len(predictions.classes))[None, :]
        losses = np.where(position < 0, 0.0, ((probabilities - actual) ** 2).sum(axis=1))
    else:
        eps = np.finfo(probabilities.dtype).eps
        chosen = probabilities[np.arange(len(labels)), np.where(position < 0, 0, position)]
        losses = np.where(position < 0, 0.0, -np.log(np.clip(chosen, eps, 1 - eps)))
    return lambda w: np.where(w @ unknown > 0, np.nan, _ratio(w @ losses, w.sum(axis=1)))


def _macro(metric: str, labels: np.ndarray, predicted: np.ndarray) -> MetricFunction:
    """f1, precision or recall per class, averaged over the classes drawn among the labels or the
    predictions (scikit-learn's ``average="macro"``); a class's 0/0 counts 0."""
    import numpy as np

    classes = np.unique(np.concatenate([labels, predicted]))
    actual = (labels[:, None] == classes[None, :]).astype(float)
    guessed = (predicted[:, None] == classes[None, :]).astype(float)
    hits = actual * guessed
    numerator = 2 * hits if metric == "f1" else hits
    denominator = {"precision": guessed, "recall": actual, "f1": guessed + actual}[metric]

    def macro(w: np.ndarray) -> np.ndarray:
        present = (w @ actual + w @ guessed) > 0
        top, bottom = w @ numerator, w @ denominator
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), 0.0)
        return _ratio((per_class * present).sum(axis=1), present.sum(axis=1).astype(float))

    return macro


def _positions(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each label's column among ``classes``; -1 for a label that is not one of them."""
    import pandas as pd

    found: np.ndarray = pd.Index(classes).get_indexer(labels)
    return found


def _why_multiclass_undefined(metric: str, y: np.ndarray, predictions: Predictions) -> str:
    """Why a multiclass metric is undefined on these rows."""
    import numpy as np

    if predictions.probabilities is None or predictions.classes is None:
        return (
            f"{metric} of a multiclass model needs every class's probability, and these predictions"
            " hold only the top class's (a prediction log from before ctloop kept them, say)"
        )
    classes = predictions.classes
    unknown = sorted({str(v) for v in y[_positions(y, classes) < 0]})
    if unknown:
        return f"labels {unknown[:5]} are not among the model's classes {[str(c) for c in classes]}"
    if metric == "roc_auc":
        missing = [str(c) for c in classes if not np.any(y == c)]
        return (
            f"roc_auc (one-vs-rest) needs a row of every class of the model, and these rows hold no"
            f" {', '.join(missing)}"
        )
    return f"{metric} is undefined on these rows"
