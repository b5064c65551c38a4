"""The champion's quality on the window before its labels arrive: confidence-based performance
estimation (CBPE).

The method is NannyML's CBPE (NannyML documentation, "Confidence-based Performance Estimation",
https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html). If the model's
probabilities are calibrated, a row predicted positive with probability p is a true positive with
probability p and a false positive with probability 1 - p; summed over the window's rows, those
give the expected confusion matrix at the model's decision threshold, and so expected accuracy,
precision, recall and f1. The expected ROC AUC follows the same way: a pair of rows is concordant
with the probability that the higher-scored one is positive and the other negative. Calibration is
fitted on labeled reference rows, one isotonic regression of the label on the score per class
(one-vs-rest for a multiclass model, whose calibrated probabilities are then normalised to sum to
one). Covariate shift that moves rows to where the model is less sure, or where it was wrong on its
reference, lowers the estimate before any label exists; a change of the labels alone (concept
shift, prior shift with the same features) is invisible to it by construction, which is what
realised quality and ctloop.monitoring.label_shift are for.

Why not the ``nannyml`` package: its latest release (0.13.1) requires lightgbm<4.6, where the lock
pins 4.7.0 (pip refused the resolution), and it would bring FLAML, kaleido (80 MB), gcsfs, s3fs
and a telemetry client; it also estimates on a whole DataFrame, while a window may hold 20M rows.

The reference is the champion's frozen holdout with its predictions (the monitor's holdout
reference): labeled rows it never trained on. On its own training rows a model that overfits is
surer and more often right than on new rows (a gradient-boosted example model: 0.98 accuracy
in-sample, 0.73 on new rows), and a calibration fitted there would promise the same. The
calibration is fitted on a seeded sample of at most ``calibration_rows`` holdout rows; the
holdout's realised metrics (every row) are the values an estimate is compared with, and a stable
window's estimate lands near them, as both come from the same calibration. The
window is read a row group at a time, only the prediction and score columns; everything kept is a
few sums per class and a histogram of each class's score (``BINS`` bins, within which pairs count as
ties: the expected ROC AUC is exact where calibrated probabilities are constant over a bin, as an
isotonic fit is over most of its range).

An estimate is an expectation; the labels the window's rows will get are draws. Each metric gets
the ``confidence`` interval of what those labels would show if the calibrated probabilities are
right: for accuracy, a mean of one Bernoulli a row, the normal interval from every row's
p (1 - p); for the ratios (precision, recall, f1, roc_auc), a seeded parametric bootstrap that
draws each label from its row's calibrated probabilities on a sample of at most
``bootstrap_rows`` rows (wider than every row would give; the cost bounded). An estimated drop
alerts only when the whole interval is below ``reference - max_drop`` (as a quality rule's,
ctloop.monitoring.quality_rules.significance); past it with an interval that is not, undecided.
The interval leaves out the calibration's own error (fitted on the holdout), which the stable
windows of the tests put at about 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctloop.evaluation.weighted_metrics import CLASS_SEPARATOR
from ctloop.monitoring.label_shift import ALERT, OK, UNDECIDED, as_text, class_names, positive_class
from ctloop.monitoring.quality_rules import percentile_interval, significance

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray
    from sklearn.isotonic import IsotonicRegression

    from ctloop.scoring.prediction_log import ModelColumns
    from ctloop.spec.models import PerformanceEstimate, PipelineSpec

    Rows = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]
    """Rows' raw class scores, calibrated class probabilities and predicted class index."""

BINS = 2048
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
NAME = "estimate"  # how its trigger lines start
SAMPLE_SEED = 0


@dataclass
class Sums:
    """Expected (or, with labels, realised) confusion sums per class and each class's score
    histogram: all a window leaves behind, added up a row group at a time."""

    classes: int
    rows: int = 0
    hits: NDArray[np.float64] = field(init=False)  # expected true positives per class
    hit_variance: float = 0.0  # sum over rows of p (1 - p), p the chance the prediction is right
    predicted: NDArray[np.float64] = field(init=False)  # rows predicted as each class
    actual: NDArray[np.float64] = field(init=False)  # expected rows of each class
    counts: NDArray[np.float64] = field(init=False)  # rows per (class, score bin)
    positives: NDArray[np.float64] = field(init=False)  # expected rows of the class per (class, bin)

    def __post_init__(self) -> None:
        import numpy as np

        k = self.classes
        self.hits, self.predicted, self.actual = np.zeros(k), np.zeros(k), np.zeros(k)
        self.counts, self.positives = np.zeros((k, BINS)), np.zeros((k, BINS))

    def add(
        self, scores: NDArray[np.float64], chance: NDArray[np.float64], predicted: NDArray[np.int64]
    ) -> None:
        """Rows' raw class scores (rows x classes), each class's probability (calibrated, or the
        label's indicator) and the predicted class's index (-1: a class the model does not know)."""
        import numpy as np

        chosen = (predicted[:, None] == np.arange(self.classes)[None, :]).astype(float)
        right = chance * chosen
        self.rows += len(predicted)
        self.hits += right.sum(axis=0)
        self.hit_variance += float((right.sum(axis=1) * (1 - right.sum(axis=1))).sum())
        self.predicted += chosen.sum(axis=0)
        self.actual += chance.sum(axis=0)
        bins = np.clip((scores * BINS).astype(np.int64), 0, BINS - 1)
        for c in range(self.classes):
            self.counts[c] += np.bincount(bins[:, c], minlength=BINS)
            self.positives[c] += np.bincount(bins[:, c], weights=chance[:, c], minlength=BINS)

    def metrics(self, positive: int | None) -> dict[str, float | None]:
        """Accuracy; precision, recall and f1 of the positive class (binary) or macro-averaged, a
        class's 0/0 counting 0 (multiclass, as ctloop's realised metrics); ROC AUC of the positive
        class or macro one-vs-rest. None where undefined."""
        import numpy as np

        if self.rows == 0:
            return dict.fromkeys(METRICS)
        hits, predicted, actual = self.hits, self.predicted, self.actual
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = {
                "precision": hits / predicted,
                "recall": hits / actual,
                "f1": 2 * hits / (predicted + actual),
                "roc_auc": np.array([self._auc(c) for c in range(self.classes)]),
            }
        found: dict[str, float | None] = {"accuracy": float(hits.sum() / self.rows)}
        for metric, values in per_class.items():
            if positive is not None:
                value = float(values[positive])
            elif metric == "roc_auc":
                value = float(values.mean())
            else:
                value = float(np.nan_to_num(values, nan=0.0).mean())
            found[metric] = value if np.isfinite(value) else None
        return found

    def _auc(self, c: int) -> float:
        """P(a positive row outscores a negative one), ties (one bin) counting half."""
        import numpy as np

        positives, negatives = self.positives[c], self.counts[c] - self.positives[c]
        below = np.cumsum(negatives) - negatives
        pairs = positives.sum() * negatives.sum()
        return float((positives @ (below + negatives / 2)) / pairs) if pairs > 0 else float("nan")


@dataclass(frozen=True)
class Calibration:
    """The champion's classes (as text), which score columns hold them, and one isotonic map per
    column from raw score to the probability the class is the label."""

    classes: list[str]
    columns: list[str]
    positive: int | None
    maps: list[IsotonicRegression]

    def raw(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Each class's raw score (rows x classes): a binary model's score is the positive
        class's, the other class's is its complement."""

        values = frame[self.columns].to_numpy(dtype=float)
        return values if self.positive is None else self._both(values[:, 0])

    def _both(self, positive: NDArray[np.float64]) -> NDArray[np.float64]:
        """A binary model's two classes' columns from the positive class's."""
        import numpy as np

        both = np.empty((len(positive), 2))
        both[:, self.positive], both[:, 1 - (self.positive or 0)] = positive, 1 - positive
        return both

    def probabilities(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Each class's calibrated probability (rows x classes), rows summing to one."""
        import numpy as np

        values = frame[self.columns].to_numpy(dtype=float)
        calibrated = np.column_stack([m.predict(values[:, i]) for i, m in enumerate(self.maps)])
        if self.positive is not None:
            return self._both(calibrated[:, 0])
        totals = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / calibrated.shape[1])
        return np.where(totals > 0, calibrated / np.where(totals > 0, totals, 1.0), uniform)

    def predicted(self, values: pd.Series) -> NDArray[np.int64]:
        """The index of each predicted class, -1 for a class the model does not have."""
        import numpy as np

        index = {c: i for i, c in enumerate(self.classes)}
        found: NDArray[np.int64] = as_text(values).map(index).fillna(-1).to_numpy(dtype=np.int64)
        return found

    def labels(self, values: pd.Series) -> NDArray[np.float64]:
        """The label's class indicator (rows x classes): a realised probability."""
        import numpy as np

        found: NDArray[np.float64] = self.predicted(values)[:, None] == np.arange(len(self.classes))[None, :]
        return found.astype(np.float64)


def estimate(
    spec: PipelineSpec,
    reference: Path | None,
    current: list[Path],
    model: ModelColumns,
    realised: dict[str, float] | None,
) -> dict[str, Any]:
    """The estimate block of the monitor's summary: each metric's estimate on the window (all its
    rows, labeled or not), the holdout's (``reference``) realised value, the realised value on the window's
    labeled rows where there is one, and a verdict for each judged metric."""
    from ctloop.scoring.prediction_log import file_columns

    rule = spec.monitoring.estimate
    if not rule.enabled:
        return _block(False, OK, "monitoring.estimate.enabled is false")
    if spec.task == "regression":
        return _block(True, OK, "not estimated for regression: the method needs class probabilities")
    if reference is None:
        return _block(
            True, UNDECIDED, f"{NAME}: the champion has no stored holdout to calibrate its scores on"
        )
    target = spec.columns.target
    on_reference = file_columns(reference)
    prefix = f"{model.score}{CLASS_SEPARATOR}"
    class_columns = [c for c in on_reference if c.startswith(prefix)]
    columns = class_columns or [model.score]
    read = [target, model.prediction, *columns]
    calibration, realised_sums = _calibrate(
        reference, read, target, model, columns, prefix, rule.calibration_rows
    )
    if calibration is None:
        why = (
            "the holdout's labels and scores calibrate no binary or multiclass model (a multiclass"
            " holdout needs every class's probability)"
        )
        return _block(True, UNDECIDED, f"{NAME}: {why}")
    window, sample = _window(rule, calibration, current, [model.prediction, *columns], model.prediction)
    estimated, on_training = window.metrics(calibration.positive), realised_sums.metrics(calibration.positive)
    intervals = _intervals(rule, window, sample, calibration.positive) if window.rows >= rule.min_rows else {}
    signals = [
        _signal(
            spec,
            metric,
            (estimated[metric], on_training[metric], (realised or {}).get(metric)),
            intervals.get(metric),
            window.rows,
        )
        for metric in METRICS
    ]
    judged = [s for s in signals if s["judged"]]
    verdicts = {s["verdict"] for s in judged}
    verdict = ALERT if ALERT in verdicts else UNDECIDED if UNDECIDED in verdicts else OK
    return {
        **_block(True, verdict, "; ".join(s["why"] for s in judged)),
        "decides": rule.decide,
        "rows": window.rows,
        "reference_rows": realised_sums.rows,
        "method": "CBPE: the champion's scores calibrated on its holdout by isotonic regression",
        "interval": (
            f"{rule.confidence:.0%}: what the window's labels will show if the calibrated probabilities"
            f" hold (accuracy: normal, every row; the others: {rule.resamples} label draws on a seeded"
            f" sample of at most {rule.bootstrap_rows:,} rows)"
        ),
        "classes": calibration.classes,
        "signals": signals,
    }


def _window(
    rule: PerformanceEstimate, calibration: Calibration, current: list[Path], read: list[str], prediction: str
) -> tuple[Sums, list[Rows]]:
    """The window's expected sums, a row group at a time, and a seeded sample of about
    ``bootstrap_rows`` of its rows for the interval's label draws."""
    import numpy as np

    from ctloop.scoring.prediction_log import file_rows, iter_row_groups

    rng = np.random.default_rng(SAMPLE_SEED)
    rate = min(1.0, rule.bootstrap_rows / max(sum(file_rows(current)), 1))
    window, sample = Sums(len(calibration.classes)), []
    for chunk in iter_row_groups(current, read):
        kept = chunk.dropna()  # a row without every score column (an old log's) cannot be estimated
        if kept.empty:
            continue
        rows = (
            calibration.raw(kept),
            calibration.probabilities(kept),
            calibration.predicted(kept[prediction]),
        )
        window.add(*rows)
        drawn = rng.random(len(kept)) < rate
        sample.append((rows[0][drawn], rows[1][drawn], rows[2][drawn]))
    return window, sample


def _intervals(
    rule: PerformanceEstimate, window: Sums, sample: list[Rows], positive: int | None
) -> dict[str, tuple[float, float] | str]:
    """Each metric's ``confidence`` interval of what the window's labels will show if the
    calibrated probabilities are right (or why it has none).

    Accuracy is a mean of independent Bernoullis, one a row: its interval is the normal one from
    every row's p (1 - p). The others are ratios: their percentile interval over ``resamples``
    draws of each sampled row's label from its calibrated probabilities (a parametric bootstrap,
    seeded), moved by the whole window's estimate minus the sample's, so that it is centred where
    the estimate is; a sample of fewer rows than the window makes it wider, never narrower."""
    from statistics import NormalDist

    import numpy as np

    z = NormalDist().inv_cdf(0.5 + rule.confidence / 2)
    accuracy = window.hits.sum() / window.rows
    half = z * np.sqrt(window.hit_variance) / window.rows
    found: dict[str, tuple[float, float] | str] = {
        "accuracy": (float(max(accuracy - half, 0.0)), float(min(accuracy + half, 1.0)))
    }
    raw, chance, predicted = (np.concatenate(part) for part in zip(*sample, strict=True))
    classes, cumulative = window.classes, chance.cumsum(axis=1)
    expected = Sums(classes)
    expected.add(raw, chance, predicted)
    centre, whole = expected.metrics(positive), window.metrics(positive)
    rng = np.random.default_rng([SAMPLE_SEED, 1])
    draws = {metric: np.empty(rule.resamples) for metric in METRICS if metric != "accuracy"}
    for i in range(rule.resamples):
        labels = np.minimum((rng.random(len(raw))[:, None] >= cumulative).sum(axis=1), classes - 1)
        drawn = Sums(classes)
        drawn.add(raw, np.eye(classes)[labels], predicted)
        measured = drawn.metrics(positive)
        for metric, values in draws.items():
            value = measured[metric]
            values[i] = np.nan if value is None else value
    for metric, values in draws.items():
        interval = percentile_interval(values, rule.confidence, metric)
        on_window, on_sample = whole[metric], centre[metric]
        if isinstance(interval, str) or on_window is None or on_sample is None:
            found[metric] = interval if isinstance(interval, str) else f"{metric} is undefined on the sample"
        else:
            moved = on_window - on_sample
            found[metric] = (interval[0] + moved, interval[1] + moved)
    return found


def _block(enabled: bool, verdict: str, why: str) -> dict[str, Any]:
    return {"enabled": enabled, "decides": False, "verdict": verdict, "signals": [], "why": why}


def _calibrate(
    reference: Path,
    read: list[str],
    target: str,
    model: ModelColumns,
    columns: list[str],
    prefix: str,
    most: int,
) -> tuple[Calibration | None, Sums]:
    """Two passes over the reference, a row group at a time: a seeded sample of about ``most``
    rows fits the calibration, then every row adds to the realised sums."""
    import numpy as np
    import pandas as pd

    from ctloop.scoring.prediction_log import file_rows, iter_row_groups

    rng = np.random.default_rng(SAMPLE_SEED)
    rate = min(1.0, most / max(sum(file_rows([reference])), 1))
    drawn = [g[rng.random(len(g)) < rate].dropna() for g in iter_row_groups([reference], read)]
    calibration = _fit(pd.concat(drawn, ignore_index=True), target, model, columns, prefix) if drawn else None
    if calibration is None:
        return None, Sums(0)
    sums = Sums(len(calibration.classes))
    for group in iter_row_groups([reference], read):
        kept = group.dropna()
        if kept.empty:
            continue
        sums.add(
            calibration.raw(kept),
            calibration.labels(kept[target]),
            calibration.predicted(kept[model.prediction]),
        )
    return calibration, sums


def _fit(
    sample: pd.DataFrame, target: str, model: ModelColumns, columns: list[str], prefix: str
) -> Calibration | None:
    """The isotonic maps: one per class column of a multiclass model, one for a binary model's
    positive-class score; None when the sample's classes cannot make either."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression

    if columns != [model.score]:
        classes = [c.removeprefix(prefix) for c in columns]
        positive = None
    else:
        classes = class_names(as_text(sample[target]).unique(), as_text(sample[model.prediction]).unique())
        name = positive_class(classes) if len(classes) == 2 else None
        if name is None:
            return None
        positive = classes.index(name)
    labels = as_text(sample[target]).to_numpy()
    if len(labels) == 0:
        return None
    targets = [classes[positive]] if positive is not None else classes
    maps = []
    for column, cls in zip(columns, targets, strict=True):
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        maps.append(fitted.fit(sample[column].to_numpy(dtype=float), (labels == cls).astype(np.float64)))
    return Calibration(classes, columns, positive, maps)


def _signal(
    spec: PipelineSpec,
    metric: str,
    values: tuple[float | None, float | None, float | None],
    interval: tuple[float, float] | str | None,
    rows: int,
) -> dict[str, Any]:
    """One estimated metric: ``values`` are its estimate on the window, its realised value on the
    holdout (the reference) and on the window's labeled rows. A drop above ``max_drop`` alerts
    only when the whole interval is below ``reference - max_drop``, as a quality rule's does."""
    rule = spec.monitoring.estimate
    value, reference, realised = values
    judged = metric in rule.metrics
    drop = None if value is None or reference is None else round(reference - value, 9)
    found = {
        "name": metric,
        "value": value,
        "reference": reference,
        "realised": realised,
        "drop": drop,
        "threshold": rule.max_drop,
        "interval": list(interval) if isinstance(interval, tuple) else None,
        "confidence": rule.confidence,
        "judged": judged,
        "rows": rows,
    }
    if rows < rule.min_rows:
        why = f"{NAME} {metric}: {rows} rows < monitoring.estimate.min_rows {rule.min_rows}"
        return {**found, "verdict": UNDECIDED, "why": why}
    if value is None or reference is None or drop is None:
        why = f"{NAME} {metric}: undefined on the {'window' if value is None else 'holdout'}"
        return {**found, "verdict": UNDECIDED, "why": why}
    bound = f"{reference - rule.max_drop:.4f}"
    if isinstance(interval, tuple):
        low, high = interval
        spread = f"{rule.confidence:.0%} interval [{low:.4f}, {high:.4f}]"
        verdict = significance(drop, round(reference - high, 9), rule.max_drop)
        after = {
            ALERT: f"; its {spread} lies wholly below {bound}",
            UNDECIDED: f", but not significantly: its {spread} is not wholly below {bound}",
            OK: f"; {spread}",
        }[verdict]
    else:
        verdict = significance(drop, float("-inf"), rule.max_drop)
        after = f", but has no interval: {interval}" if interval else ""
    said = "above" if drop > rule.max_drop else "within"
    why = (
        f"{NAME} {metric}: {value:.4f} expected on the window's {rows:,} rows against {reference:.4f} on the"
        f" champion's holdout, a drop of {drop:.4f} {said} max_drop {rule.max_drop:g}{after}"
    )
    return {**found, "verdict": verdict, "why": why if judged else f"{why} (reported, not judged)"}
