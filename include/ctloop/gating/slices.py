"""Holdout slices: the metric per group of rows, so a candidate that is better on average but
worse for one segment (a contract type, a tenure band) is seen, and can be stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better, metric_names
from ctloop.evaluation.weighted_metrics import Predictions, metric_value, positive_label
from ctloop.gating.decision import GateVerdict, SliceReport, SliceResult

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import Slice, SliceRules


def slice_labels(frame: pd.DataFrame, slice: Slice) -> pd.Series[Any]:
    """Each row's slice label (``contract=two_year``, ``tenure_months=[12, 24)``), aligned with
    ``frame``; None for rows outside the listed values or bins (and for missing values)."""
    import pandas as pd

    if slice.column not in frame.columns:
        raise SpecError(f"slice {slice.name!r}: column {slice.column!r} is not in the holdout")
    column = frame[slice.column]
    labels = pd.Series([None] * len(frame), index=frame.index, dtype=object, name=slice.name)
    if slice.bins is not None:
        values = pd.to_numeric(column, errors="coerce")
        for label, (low, high) in zip(slice_names(slice, column), _bands(slice.bins), strict=True):
            labels[(values >= low) & (values < high)] = label
        return labels
    for label, value in zip(slice_names(slice, column), _values(slice, column), strict=True):
        labels[column == value] = label
    return labels


def slice_names(slice: Slice, column: pd.Series[Any]) -> list[str]:
    """The labels of a definition's slices, in order; listed values and bins are named even when
    no row falls in them, so an empty slice is reported rather than silently absent."""
    if slice.bins is not None:
        return [f"{slice.column}=[{_text(low)}, {_text(high)})" for low, high in _bands(slice.bins)]
    return [f"{slice.column}={_text(value)}" for value in _values(slice, column)]


def _bands(edges: list[float]) -> list[tuple[float, float]]:
    return list(zip(edges, edges[1:], strict=False))


def _values(slice: Slice, column: pd.Series[Any]) -> list[Any]:
    if slice.values is not None:
        return list(slice.values)
    seen = column.dropna().unique().tolist()
    try:
        return sorted(seen)
    except TypeError:  # a column mixing text and numbers
        return sorted(seen, key=str)


def _text(value: object) -> str:
    """12.0 reads as 12; other values as Python prints them."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def slice_report(
    slices: list[Slice],
    rules: SliceRules | None,
    task: TaskKind,
    holdout: pd.DataFrame,
    y: ArrayLike,
    candidate: Predictions,
    champion: Predictions | None,
) -> SliceReport:
    """Every slice's metrics for candidate and champion, and the verdicts of ``rules`` on them.

    A slice is judged
    when it has at least ``rules.min_rows`` rows and the rule's metric is defined for the
    candidate on it. Verdicts: one ``slice_regression`` per judged slice (``max_regression``) and
    one ``slice_gap`` over all judged slices (``max_gap``).
    """
    import numpy as np

    missing = [
        f"gates.slices.{index}.column: {s.column!r} is not a column of the holdout"
        for index, s in enumerate(slices)
        if s.column not in holdout.columns
    ]
    if missing:
        raise SpecError("; ".join(missing))
    labels_y = np.asarray(y)
    if {len(holdout), len(candidate), len(champion if champion is not None else labels_y)} != {len(labels_y)}:
        raise ValueError("holdout, y, candidate and champion must have the same number of rows")
    positive = positive_label(labels_y, candidate, *([champion] if champion is not None else []))
    entries = []
    for definition in slices:
        labels = slice_labels(holdout, definition).to_numpy()
        for label in slice_names(definition, holdout[definition.column]):
            rows = labels == label
            entries.append(
                _entry(definition, label, rows, rules, task, labels_y, candidate, champion, positive)
            )
    verdicts = []
    judged = [entry for entry in entries if entry.judged]
    if rules is not None and rules.max_regression is not None:
        verdicts += [_regression_verdict(entry, rules.metric, rules.max_regression, task) for entry in judged]
    if rules is not None and rules.max_gap is not None:
        verdicts.append(_gap_verdict(judged, rules.metric, rules.max_gap, task))
    return SliceReport(slices=entries, verdicts=verdicts)


def _entry(
    definition: Slice,
    label: str,
    rows: np.ndarray,
    rules: SliceRules | None,
    task: TaskKind,
    y: np.ndarray,
    candidate: Predictions,
    champion: Predictions | None,
    positive: object,
) -> SliceResult:
    def scores(predictions: Predictions) -> tuple[dict[str, float | None], dict[str, str | None]]:
        values: dict[str, float | None] = {}
        whys: dict[str, str | None] = {}
        for metric in metric_names(task):
            values[metric], whys[metric] = metric_value(
                task, metric, y[rows], predictions.take(rows), positive
            )
        return values, whys

    candidate_values, whys = scores(candidate)
    count = int(rows.sum())
    why: str | None
    if rules is None:
        why = "gates.slice_rules is not set"
    elif count < rules.min_rows:
        why = f"{count} rows, fewer than min_rows {rules.min_rows}"
    else:
        why = whys[rules.metric]
    return SliceResult(
        slice=label,
        definition=definition.name,
        column=definition.column,
        rows=count,
        candidate=candidate_values,
        champion=scores(champion)[0] if champion is not None else None,
        judged=why is None,
        why_not_judged=why,
    )


def _judged_value(entry: SliceResult, metric: str) -> float:
    """The candidate's metric on a judged slice, which is defined there by the rule of judging."""
    value = entry.candidate[metric]
    if value is None:
        raise ValueError(f"slice {entry.slice}: judged, yet {metric} of the candidate is undefined")
    return value


def _regression_verdict(
    entry: SliceResult, metric: str, max_regression: float, task: TaskKind
) -> GateVerdict:
    name, candidate = entry.slice, _judged_value(entry, metric)
    champion = (entry.champion or {}).get(metric)
    verdict: dict[str, Any] = {
        "rule": "slice_regression",
        "metric": metric,
        "kind": "max_regression",
        "bound": max_regression,
        "slice": name,
        "rows": entry.rows,
        "candidate": candidate,
        "champion": champion,
        "value": None,
        "passed": None,
    }
    if entry.champion is None:
        return GateVerdict.model_validate({**verdict, "note": f"{name}: skipped: there is no champion yet"})
    if champion is None:
        note = f"{name}: skipped: {metric} of the champion is undefined on this slice"
        return GateVerdict.model_validate({**verdict, "note": note})
    change = candidate - champion if higher_is_better(task, metric) else champion - candidate
    passed = change >= -max_regression
    note = (
        f"{name} ({entry.rows} rows): {metric} {candidate:.4f} against the champion's {champion:.4f},"
        f" change {change:+.4f} must not regress more than {max_regression:.4f}: {_word(passed)}"
    )
    return GateVerdict.model_validate({**verdict, "value": change, "passed": bool(passed), "note": note})


def _gap_verdict(judged: list[SliceResult], metric: str, max_gap: float, task: TaskKind) -> GateVerdict:
    verdict = {"rule": "slice_gap", "metric": metric, "kind": "max_gap", "bound": max_gap}
    if len(judged) < 2:
        note = f"skipped: {len(judged)} slice(s) could be judged, a gap needs two"
        return GateVerdict.model_validate({**verdict, "value": None, "passed": None, "note": note})
    value = {e.slice: _judged_value(e, metric) for e in judged}
    ranked = sorted(value, key=value.__getitem__, reverse=higher_is_better(task, metric))
    best, worst = ranked[0], ranked[-1]
    gap = abs(value[best] - value[worst])
    passed = gap <= max_gap
    note = (
        f"{metric} of the best slice {best} ({value[best]:.4f}) and the worst {worst}"
        f" ({value[worst]:.4f}) differ by {gap:.4f}, which must be <= {max_gap:.4f}: {_word(passed)}"
    )
    return GateVerdict.model_validate(
        {**verdict, "value": gap, "passed": bool(passed), "best": best, "worst": worst, "note": note}
    )


def _word(passed: bool) -> str:
    return "passed" if passed else "failed"
