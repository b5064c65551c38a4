"""Paired bootstrap of candidate against champion on the shared holdout.

A point difference on one holdout can be luck; resampling the holdout rows and scoring both
models on the same draws gives an interval for the difference, so a candidate replaces the
champion only when it is better with the configured confidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.evaluation.weighted_metrics import (
    Predictions,
    bootstrap_weights,
    metric_function,
    metric_value,
    positive_label,
)
from ctloop.gating.decision import GateVerdict

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import BootstrapRule

MAX_DEGENERATE_SHARE = 0.1  # more draws than this without a defined metric: the interval is not trusted


def paired_bootstrap(
    rule: BootstrapRule, task: TaskKind, y: ArrayLike, candidate: Predictions, champion: Predictions | None
) -> GateVerdict:
    """The bootstrap verdict: ``value`` is the interval's lower bound, ``bound`` the margin.

    Extras: ``interval`` [lo, hi] of (candidate - champion) in the metric's good direction,
    ``estimate`` (the difference on the whole holdout), ``candidate``/``champion`` (their metric
    on the whole holdout), ``resamples`` and ``degenerate`` (draws where the metric was undefined
    for either model, say one class only; they are left out of the interval).
    """
    import numpy as np

    verdict: dict[str, Any] = {
        "rule": "bootstrap",
        "metric": rule.metric,
        "kind": "ci_lower_bound",
        "bound": rule.margin,
        "confidence": rule.confidence,
        "resamples": rule.resamples,
    }
    if champion is None:
        note = "skipped: there is no champion yet"
        return GateVerdict.model_validate({**verdict, "value": None, "passed": None, "note": note})
    y = np.asarray(y)
    if not len(y) == len(candidate) == len(champion):
        raise ValueError(
            f"y, candidate and champion differ in length: {len(y)}, {len(candidate)}, {len(champion)}"
        )
    positive = positive_label(y, candidate, champion)
    sign = 1.0 if higher_is_better(task, rule.metric) else -1.0
    whole: dict[str, float] = {}
    for name, predictions in (("candidate", candidate), ("champion", champion)):
        value, why = metric_value(task, rule.metric, y, predictions, positive)
        if why or value is None:
            return _failed(verdict, f"cannot compare on the holdout: {why}")
        whole[name] = value
    differences = sign * _resampled(rule, task, y, candidate, champion, positive)
    valid = differences[np.isfinite(differences)]
    degenerate = rule.resamples - len(valid)
    verdict |= {
        **whole,
        "estimate": sign * (whole["candidate"] - whole["champion"]),
        "degenerate": degenerate,
    }
    if degenerate > MAX_DEGENERATE_SHARE * rule.resamples:
        return _failed(
            verdict,
            f"{degenerate} of {rule.resamples} resamples left {rule.metric} undefined (more than"
            f" {MAX_DEGENERATE_SHARE:.0%}): the holdout is too small for an interval",
        )
    tail = (1 - rule.confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(valid, [tail, 100 - tail]))
    passed = low >= rule.margin
    skipped = f"; {degenerate} degenerate resamples left out" if degenerate else ""
    note = (
        f"{rule.confidence:.0%} interval of the {rule.metric} improvement over the champion is"
        f" [{low:+.4f}, {high:+.4f}] (estimate {verdict['estimate']:+.4f}, {len(valid)} resamples{skipped});"
        f" its lower bound must be >= {rule.margin:+.4f}: {'passed' if passed else 'failed'}"
    )
    return GateVerdict.model_validate(
        {**verdict, "value": low, "interval": [low, high], "passed": bool(passed), "note": note}
    )


def _failed(verdict: dict[str, Any], why: str) -> GateVerdict:
    return GateVerdict.model_validate({**verdict, "value": None, "passed": False, "note": f"failed: {why}"})


def _resampled(
    rule: BootstrapRule,
    task: TaskKind,
    y: np.ndarray,
    candidate: Predictions,
    champion: Predictions,
    positive: object,
) -> np.ndarray:
    """candidate minus champion metric on each resample; both scored on the same drawn rows.

    A resample is a vector of how often each row was drawn, so every metric is a weighted sum
    over the rows (roc_auc a weighted rank statistic), computed for a chunk of resamples at once.
    """
    import numpy as np

    score_candidate = metric_function(task, rule.metric, y, candidate, positive)
    score_champion = metric_function(task, rule.metric, y, champion, positive)
    differences = [
        score_candidate(weights) - score_champion(weights)
        for weights in bootstrap_weights(len(y), rule.resamples, rule.seed)
    ]
    return np.concatenate(differences)
