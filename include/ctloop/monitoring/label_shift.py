"""Label shift: the labels of the window's production rows against the champion's training data.

Two signals, each the difference of the mean of a per-row vector between the window's labeled rows
and the champion's training snapshot (the monitor's reference, which holds its label and the
champion's prediction on every row):

- ``label_rate`` (classification) or ``label_mean`` (regression): how the labels themselves moved.
  The vector is the label's class indicator (one column per class), or the label's value.
- ``predicted_rate`` (classification) or ``prediction_bias`` (regression): how far the champion's
  predictions now are from the labels, against how far they were on its training data. The vector
  is (predicted class indicator - label class indicator), or (prediction - label). A model trained
  at one prior keeps predicting it: when the world's prior moves, this gap opens even while every
  feature, and so every drift test, stays still. The training side's own gap is the baseline, as a
  model's predicted positive rate differs from its label rate at any threshold but the calibrated one.

The size of a shift is the total variation distance between the two sides' class mixes (the share
of rows that would have to change class; for two classes, the change of the positive rate), or the
change of the mean in training standard deviations (regression). A signal alerts when the size is
above its threshold AND the difference is significant at ``confidence``: a Wald chi-square test of
the difference of the two mean vectors, each side's covariance from its own rows (for two classes,
the two-proportion z-test with unpooled variances; for a number, Welch's z-test). Why this test:
every figure it needs is a count (the confusion matrix of label x prediction) or a sum, so the
window's rows are never resampled nor held, and at the sizes decided on (``min_labels`` upward on the
window, the training snapshot on the other side) the normal approximation is sound. The training
snapshot is the reference the monitor already keeps.

A regression label can change without its mean moving: wider, narrower, skewed, two modes. A third
regression signal, ``label_distribution``, compares the whole distribution of the window's labels
with the training labels': its size is the Wasserstein distance between the two (the mean absolute
move of a label, quantile by quantile) in training standard deviations, above
``max_label_distance`` and significant by the two-sample Kolmogorov-Smirnov test at ``confidence``.
A same-mean change of the spread by a factor s moves it by about 0.8 |s - 1|; a change of the mean
alone by the mean's own shift. The two sides are seeded samples of at most ``DISTRIBUTION_ROWS``
labels each (every label of a smaller side), kept a row group at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Iterable

    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

    from ctloop.spec.models import LabelShift, PipelineSpec

ALERT, OK, UNDECIDED = "alert", "ok", "undecided"
NAME = "label shift"  # how its trigger lines start
DISTRIBUTION_ROWS = 100_000  # labels a side the distribution test keeps at most
SAMPLE_SEED = 0


@dataclass(frozen=True)
class Moments:
    """One side's per-row vectors reduced to what the test needs: rows, their sum and the sum of
    their outer products (a count or a sum each, added up a row group at a time)."""

    rows: int
    total: NDArray[np.float64]
    outer: NDArray[np.float64]

    @property
    def mean(self) -> NDArray[np.float64]:
        return self.total / max(self.rows, 1)

    @property
    def covariance(self) -> NDArray[np.float64]:
        import numpy as np

        mean = self.mean
        return self.outer / max(self.rows, 1) - np.outer(mean, mean)


def class_moments(confusion: NDArray[np.float64]) -> tuple[Moments, Moments]:
    """The label indicator's and the (prediction - label) indicator's moments from a confusion
    matrix (``confusion[label, prediction]`` counts rows)."""
    import numpy as np

    k, rows = confusion.shape[0], int(confusion.sum())
    labels = confusion.sum(axis=1)
    eye = np.eye(k)
    gap_total, gap_outer = np.zeros(k), np.zeros((k, k))
    for a, b in zip(*np.nonzero(confusion), strict=True):
        d = eye[b] - eye[a]
        gap_total += confusion[a, b] * d
        gap_outer += confusion[a, b] * np.outer(d, d)
    return Moments(rows, labels.astype(float), np.diag(labels).astype(float)), Moments(
        rows, gap_total, gap_outer
    )


def value_moments(values: NDArray[np.float64]) -> Moments:
    """The moments of one number a row."""
    import numpy as np

    return Moments(len(values), np.array([values.sum()]), np.array([[float(values @ values)]]))


def add(a: Moments, b: Moments) -> Moments:
    return Moments(a.rows + b.rows, a.total + b.total, a.outer + b.outer)


@dataclass
class Sample:
    """A seeded uniform sample of at most ``most`` values of a stream read a chunk at a time: each
    value draws a random key and the ``most`` smallest keys stay (every value of a shorter stream)."""

    most: int
    seed: int
    values: NDArray[np.float64] = field(init=False)
    _keys: NDArray[np.float64] = field(init=False)
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        import numpy as np

        self.values, self._keys, self._rng = np.zeros(0), np.zeros(0), np.random.default_rng(self.seed)

    def add(self, values: NDArray[np.float64]) -> None:
        import numpy as np

        keys = np.concatenate([self._keys, self._rng.random(len(values))])
        kept = np.concatenate([self.values, values])
        if len(keys) > self.most:
            smallest = np.argpartition(keys, self.most)[: self.most]
            keys, kept = keys[smallest], kept[smallest]
        self._keys, self.values = keys, kept


@dataclass(frozen=True)
class Test:
    """The Wald chi-square test of (window mean - reference mean) and the per-component intervals."""

    difference: NDArray[np.float64]
    p_value: float
    half_width: NDArray[np.float64]


def wald(window: Moments, reference: Moments, confidence: float) -> Test:
    """Each side's covariance from its own rows; a pseudo-inverse, as class indicators sum to a
    constant (their covariance is singular); a difference outside what either side's rows vary in
    (a class only one side has, every row alike) is certain."""
    import numpy as np
    from scipy import stats

    difference = window.mean - reference.mean
    spread = window.covariance / window.rows + reference.covariance / reference.rows
    inverse = np.linalg.pinv(spread, hermitian=True)
    rank = int(np.linalg.matrix_rank(spread, hermitian=True))
    unexplained = difference - spread @ inverse @ difference
    if np.abs(unexplained).max(initial=0.0) > 1e-9:
        p_value = 0.0
    elif rank == 0:
        p_value = 1.0
    else:
        p_value = float(stats.chi2.sf(float(difference @ inverse @ difference), rank))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Test(difference, p_value, z * np.sqrt(np.clip(np.diag(spread), 0.0, None)))


def class_names(*labels: Iterable[Any]) -> list[str]:
    """Every class seen on either side, as text (so 1 and "1" are one class), sorted."""
    return sorted({str(v) for values in labels for v in values})


def as_text(values: pd.Series) -> pd.Series:
    """Class labels as text, whole numbers read back as floats (a column that held a null) as the
    integers they are, so every side names a class alike."""
    if values.dtype.kind == "f" and bool((values.dropna() % 1 == 0).all()):
        return values.astype("Int64").astype(str)
    return values.astype(str)


def pair_counts(frame: pd.DataFrame, target: str, prediction: str) -> Counter[tuple[str, str]]:
    """Rows counted by (label, prediction), as text; rows with no label or prediction left out."""
    from collections import Counter

    kept = frame[[target, prediction]].dropna()
    pairs = zip(as_text(kept[target]), as_text(kept[prediction]), strict=True)
    return Counter(pairs)


def confusion_matrix(counts: Counter[tuple[str, str]], classes: list[str]) -> NDArray[np.float64]:
    """``counts`` as a matrix over ``classes``: ``[label, prediction]``."""
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)))
    for (label, predicted), n in counts.items():
        matrix[index[label], index[predicted]] += n
    return matrix


def positive_class(classes: list[str]) -> str | None:
    """The binary metrics' positive class among text labels (ctloop.evaluation.weighted_metrics):
    ``1`` of 0/1 labels, else the larger of two; None for more than two classes."""
    if len(classes) > 2:
        return None
    if set(classes) <= {"0", "1", "0.0", "1.0"}:
        return next((c for c in classes if c in ("1", "1.0")), classes[-1])
    return classes[-1]


TRAINING, HOLDOUT = "the training data", "the champion's holdout"


def measure(
    spec: PipelineSpec,
    reference: Iterable[pd.DataFrame],
    holdout: Iterable[pd.DataFrame] | None,
    labeled: pd.DataFrame,
    prediction: str,
) -> dict[str, Any]:
    """The label-shift block of the monitor's summary: the window's labeled rows (``labeled``, with
    the label and the champion's ``prediction``) against the training data's row groups (their
    labels) and the champion's holdout's (its labels and predictions: rows it never trained on,
    so its predictions there are what they are on new rows; None when the version has none).
    Each side is read once, a row group at a time, and reduced to counts or sums."""
    rule = spec.monitoring.label_shift
    if not rule.enabled:
        why = "monitoring.label_shift.enabled is false"
        return {"enabled": False, "verdict": OK, "signals": [], "why": why}
    target = spec.columns.target
    window = labeled[[target, prediction]] if not labeled.empty else None
    sides = (reference, holdout, window, target, prediction)
    signals = _regression(rule, *sides) if spec.task == "regression" else _classification(rule, *sides)
    verdicts = {s["verdict"] for s in signals}
    verdict = ALERT if ALERT in verdicts else UNDECIDED if UNDECIDED in verdicts else OK
    return {
        "enabled": True,
        "verdict": verdict,
        "labeled_rows": 0 if window is None else len(window),
        "confidence": rule.confidence,
        "test": "Wald chi-square on the difference of mean vectors (per-side covariances)",
        "signals": signals,
        "why": "; ".join(s["why"] for s in signals),
    }


def _classification(
    rule: LabelShift,
    reference: Iterable[pd.DataFrame],
    holdout: Iterable[pd.DataFrame] | None,
    window: pd.DataFrame | None,
    target: str,
    prediction: str,
) -> list[dict[str, Any]]:
    from collections import Counter

    def counted(chunks: Iterable[pd.DataFrame]) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        for chunk in chunks:
            found.update(pair_counts(chunk, target, prediction))
        return found

    on_reference, on_window = counted(reference), counted([] if window is None else [window])
    on_holdout = None if holdout is None else counted(holdout)
    classes = class_names(*on_reference, *on_window, *(on_holdout or {}))
    ref_labels, _ = class_moments(confusion_matrix(on_reference, classes))
    win_labels, win_gap = class_moments(confusion_matrix(on_window, classes))
    hold_gap = None if on_holdout is None else class_moments(confusion_matrix(on_holdout, classes))[1]
    positive = positive_class(classes)
    if positive is None:
        what = ("the labels' class mix", "the champion's predicted minus observed class mix")
    else:
        what = (
            f"the rate of class {positive}",
            f"the champion's predicted minus observed rate of class {positive}",
        )
    return [
        _class_signal(rule, "label_rate", what[0], classes, positive, win_labels, (ref_labels, TRAINING)),
        _class_signal(rule, "predicted_rate", what[1], classes, positive, win_gap, (hold_gap, HOLDOUT)),
    ]


def _class_signal(
    rule: LabelShift,
    name: str,
    what: str,
    classes: list[str],
    positive: str | None,
    window: Moments,
    against: tuple[Moments | None, str],
) -> dict[str, Any]:
    """One class signal: binary signals speak of the positive class's rate, multiclass ones of
    each class's share; the size is the total variation distance."""
    import numpy as np

    reference, side = against
    base: dict[str, Any] = {"name": name, "threshold": rule.max_shift, "rows": window.rows, "against": side}
    undecided = _undecided(rule, name, window.rows, reference, side)
    if undecided is not None or reference is None:
        return {**base, **(undecided or {})}
    test = wald(window, reference, rule.confidence)
    distance = float(np.abs(test.difference).sum() / 2)
    if positive is None:
        value: Any = dict(zip(classes, window.mean.round(6).tolist(), strict=True))
        ref: Any = dict(zip(classes, reference.mean.round(6).tolist(), strict=True))
        interval: Any = {
            c: [round(float(d - h), 6), round(float(d + h), 6)]
            for c, d, h in zip(classes, test.difference, test.half_width, strict=True)
        }
        said = f"{what} moved by {distance:.3f} (total variation) from {side}'s"
    else:
        i = classes.index(positive)
        value, ref = float(window.mean[i]), float(reference.mean[i])
        difference, half = float(test.difference[i]), float(test.half_width[i])
        interval = [difference - half, difference + half]
        said = f"{what} is {value:.3f} against {ref:.3f} on {side}"
    verdict = ALERT if distance > rule.max_shift and test.p_value < 1 - rule.confidence else OK
    return {
        **base,
        "reference_rows": reference.rows,
        "value": value,
        "reference": ref,
        "shift": distance,
        "interval": interval,
        "p_value": test.p_value,
        "verdict": verdict,
        "why": _why(rule.max_shift, rule, name, said, distance, test.p_value, window.rows, verdict),
    }


def _regression(
    rule: LabelShift,
    reference: Iterable[pd.DataFrame],
    holdout: Iterable[pd.DataFrame] | None,
    window: pd.DataFrame | None,
    target: str,
    prediction: str,
) -> list[dict[str, Any]]:
    import numpy as np

    def summed(chunks: Iterable[pd.DataFrame], seed: int) -> tuple[Moments, Moments, Sample]:
        labels = gaps = value_moments(np.zeros(0))
        sample = Sample(DISTRIBUTION_ROWS, seed)
        for chunk in chunks:
            label, predicted = _pairs(chunk, target, prediction)
            labels, gaps = add(labels, value_moments(label)), add(gaps, value_moments(predicted - label))
            sample.add(label)
        return labels, gaps, sample

    ref_label, _, ref_sample = summed(reference, SAMPLE_SEED)
    hold_gap = None if holdout is None else summed(holdout, SAMPLE_SEED)[1]
    win_label, win_gap, win_sample = summed([] if window is None else [window], SAMPLE_SEED + 1)
    scale = float(np.sqrt(ref_label.covariance[0, 0])) if ref_label.rows else 0.0
    bias = "the champion's mean prediction minus label"
    return [
        _value_signal(rule, "label_mean", "the label's mean", win_label, (ref_label, TRAINING), scale),
        _value_signal(rule, "prediction_bias", bias, win_gap, (hold_gap, HOLDOUT), scale),
        _distribution_signal(rule, (win_label, win_sample), (ref_label, ref_sample), scale),
    ]


def _pairs(
    frame: pd.DataFrame, target: str, prediction: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    kept = frame[target].notna() & frame[prediction].notna()
    return frame.loc[kept, target].to_numpy(float), frame.loc[kept, prediction].to_numpy(float)


def _value_signal(
    rule: LabelShift,
    name: str,
    what: str,
    window: Moments,
    against: tuple[Moments | None, str],
    scale: float,
) -> dict[str, Any]:
    """One regression signal: the size is the mean's change in the training label's standard
    deviations (``max_mean_shift``)."""
    reference, side = against
    base: dict[str, Any] = {
        "name": name,
        "threshold": rule.max_mean_shift,
        "rows": window.rows,
        "against": side,
    }
    undecided = _undecided(rule, name, window.rows, reference, side)
    if undecided is not None or reference is None:
        return {**base, **(undecided or {})}
    test = wald(window, reference, rule.confidence)
    difference, half = float(test.difference[0]), float(test.half_width[0])
    distance = abs(difference) / scale if scale > 0 else (0.0 if difference == 0 else float("inf"))
    value, ref = float(window.mean[0]), float(reference.mean[0])
    said = f"{what} is {value:.4g} against {ref:.4g} on {side} ({distance:.3f} standard deviations)"
    verdict = ALERT if distance > rule.max_mean_shift and test.p_value < 1 - rule.confidence else OK
    return {
        **base,
        "reference_rows": reference.rows,
        "value": value,
        "reference": ref,
        "shift": distance,
        "interval": [difference - half, difference + half],
        "p_value": test.p_value,
        "verdict": verdict,
        "why": _why(rule.max_mean_shift, rule, name, said, distance, test.p_value, window.rows, verdict),
    }


def _distribution_signal(
    rule: LabelShift, window: tuple[Moments, Sample], reference: tuple[Moments, Sample], scale: float
) -> dict[str, Any]:
    """The regression label's whole distribution against the training labels': the Wasserstein
    distance in training standard deviations (``max_label_distance``), significant by the
    two-sample Kolmogorov-Smirnov test. ``value`` and ``reference`` are the two sides' standard
    deviations (the means have their own signal)."""
    import numpy as np
    from scipy import stats

    name = "label_distribution"
    (on_window, window_sample), (on_reference, reference_sample) = window, reference
    base: dict[str, Any] = {
        "name": name,
        "threshold": rule.max_label_distance,
        "rows": on_window.rows,
        "against": TRAINING,
    }
    undecided = _undecided(rule, name, on_window.rows, on_reference, TRAINING)
    if undecided is not None:
        return {**base, **undecided}
    w, r = window_sample.values, reference_sample.values
    moved = float(stats.wasserstein_distance(w, r))
    distance = moved / scale if scale > 0 else (0.0 if moved == 0 else float("inf"))
    ks = stats.ks_2samp(w, r)
    value, ref = float(np.sqrt(on_window.covariance[0, 0])), float(np.sqrt(on_reference.covariance[0, 0]))
    said = (
        f"the label's distribution is {distance:.3f} standard deviations (Wasserstein) from {TRAINING}'s"
        f" (its standard deviation {value:.4g} against {ref:.4g}; Kolmogorov-Smirnov D {ks.statistic:.3f})"
    )
    p_value = float(ks.pvalue)
    verdict = ALERT if distance > rule.max_label_distance and p_value < 1 - rule.confidence else OK
    return {
        **base,
        "reference_rows": on_reference.rows,
        "value": value,
        "reference": ref,
        "shift": distance,
        "statistic": float(ks.statistic),
        "p_value": p_value,
        "sample_rows": [len(w), len(r)],
        "verdict": verdict,
        "why": _why(rule.max_label_distance, rule, name, said, distance, p_value, on_window.rows, verdict),
    }


def _undecided(
    rule: LabelShift, name: str, rows: int, reference: Moments | None, side: str
) -> dict[str, Any] | None:
    """Why a signal cannot be decided (too few labels, no reference rows), or None."""
    if reference is None:
        why = f"{NAME}: {name}: the champion has no stored holdout to compare its predictions on"
    elif reference.rows == 0:
        why = f"{NAME}: {name}: {side} has no labeled rows"
    elif rows < rule.min_labels:
        why = f"{NAME}: {name}: {rows} labeled rows < monitoring.label_shift.min_labels {rule.min_labels}"
    else:
        return None
    return {
        "value": None,
        "reference": None,
        "shift": None,
        "p_value": None,
        "verdict": UNDECIDED,
        "why": why,
    }


def _why(
    limit: float,
    rule: LabelShift,
    name: str,
    said: str,
    distance: float,
    p_value: float,
    rows: int,
    verdict: str,
) -> str:
    against = ">" if distance > limit else "<="
    significance = "<" if p_value < 1 - rule.confidence else ">="
    return (
        f"{NAME}: {name}: {said} on {rows:,} labels ({verdict}: shift {distance:.3f} {against} {limit:g},"
        f" p={p_value:.2g} {significance} {1 - rule.confidence:.2g})"
    )
