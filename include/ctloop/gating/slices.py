"""Holdout slices: the metric per group of rows, so a candidate that is better on average but
worse for one segment (a contract type, a tenure band) is seen, and can be stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better, metric_names
from ctloop.evaluation.weighted_metrics import Predictions, metric_value, positive_label

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import Slice, SliceRules


def slice_labels(frame: pd.DataFrame, slice: Slice) -> pd.Series:
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


def slice_names(slice: Slice, column: pd.Series) -> list[str]:
    """The labels of a definition's slices, in order; listed values and bins are named even when
    no row falls in them, so an empty slice is reported rather than silently absent."""
    if slice.bins is not None:
        return [f"{slice.column}=[{_text(low)}, {_text(high)})" for low, high in _bands(slice.bins)]
    return [f"{slice.column}={_text(value)}" for value in _values(slice, column)]


def _bands(edges: list[float]) -> list[tuple[float, float]]:
    return list(zip(edges, edges[1:], strict=False))


def _values(slice: Slice, column: pd.Series) -> list:
    if slice.values is not None:
        return list(slice.values)
    seen = column.dropna().unique().tolist()
    try:
        return sorted(seen)
    except TypeError:  # a column mixing text and numbers
        return sorted(seen, key=str)


def _text(value) -> str:
    """12.0 reads as 12; other values as Python prints them."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def slice_report(
    slices: list[Slice],
    rules: SliceRules | None,
    task: TaskKind,
    holdout: pd.DataFrame,
    y,
    candidate: Predictions,
    champion: Predictions | None,
) -> dict:
    """Every slice's metrics for candidate and champion, and the verdicts of ``rules`` on them.

    ``{"slices": [{"slice", "definition", "column", "rows", "candidate": {metric: value|None},
    "champion": {...}|None, "judged", "why_not_judged"}], "verdicts": [...]}``. A slice is judged
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
    y = np.asarray(y)
    if {len(holdout), len(candidate), len(champion if champion is not None else y)} != {len(y)}:
        raise ValueError("holdout, y, candidate and champion must have the same number of rows")
    positive = positive_label(y, candidate, *([champion] if champion is not None else []))
    entries = []
    for definition in slices:
        labels = slice_labels(holdout, definition).to_numpy()
        for label in slice_names(definition, holdout[definition.column]):
            rows = labels == label
            entries.append(_entry(definition, label, rows, rules, task, y, candidate, champion, positive))
    verdicts = []
    if rules is not None and rules.max_regression is not None:
        verdicts += [_regression_verdict(entry, rules, task) for entry in entries if entry["judged"]]
    if rules is not None and rules.max_gap is not None:
        verdicts.append(_gap_verdict([e for e in entries if e["judged"]], rules, task))
    return {"slices": entries, "verdicts": verdicts}


def _entry(definition, label, rows, rules, task, y, candidate, champion, positive) -> dict:
    def scores(predictions: Predictions) -> tuple[dict, dict]:
        values, whys = {}, {}
        for metric in metric_names(task):
            values[metric], whys[metric] = metric_value(
                task, metric, y[rows], predictions.take(rows), positive
            )
        return values, whys

    candidate_values, whys = scores(candidate)
    count = int(rows.sum())
    if rules is None:
        why = "gates.slice_rules is not set"
    elif count < rules.min_rows:
        why = f"{count} rows, fewer than min_rows {rules.min_rows}"
    else:
        why = whys[rules.metric]
    return {
        "slice": label,
        "definition": definition.name,
        "column": definition.column,
        "rows": count,
        "candidate": candidate_values,
        "champion": scores(champion)[0] if champion is not None else None,
        "judged": why is None,
        "why_not_judged": why,
    }


def _regression_verdict(entry: dict, rules: SliceRules, task: TaskKind) -> dict:
    name, metric, candidate = entry["slice"], rules.metric, entry["candidate"][rules.metric]
    champion = (entry["champion"] or {}).get(metric)
    verdict = {
        "rule": "slice_regression",
        "metric": metric,
        "kind": "max_regression",
        "bound": rules.max_regression,
        "slice": name,
        "rows": entry["rows"],
        "candidate": candidate,
        "champion": champion,
        "value": None,
        "passed": None,
    }
    if entry["champion"] is None:
        return {**verdict, "note": f"{name}: skipped: there is no champion yet"}
    if champion is None:
        return {**verdict, "note": f"{name}: skipped: {metric} of the champion is undefined on this slice"}
    change = candidate - champion if higher_is_better(task, metric) else champion - candidate
    passed = change >= -rules.max_regression
    note = (
        f"{name} ({entry['rows']} rows): {metric} {candidate:.4f} against the champion's {champion:.4f},"
        f" change {change:+.4f} must not regress more than {rules.max_regression:.4f}: {_word(passed)}"
    )
    return {**verdict, "value": change, "passed": bool(passed), "note": note}


def _gap_verdict(judged: list[dict], rules: SliceRules, task: TaskKind) -> dict:
    verdict = {"rule": "slice_gap", "metric": rules.metric, "kind": "max_gap", "bound": rules.max_gap}
    if len(judged) < 2:
        note = f"skipped: {len(judged)} slice(s) could be judged, a gap needs two"
        return {**verdict, "value": None, "passed": None, "note": note}
    value = {e["slice"]: e["candidate"][rules.metric] for e in judged}
    ranked = sorted(value, key=value.__getitem__, reverse=higher_is_better(task, rules.metric))
    best, worst = ranked[0], ranked[-1]
    gap = abs(value[best] - value[worst])
    passed = gap <= rules.max_gap
    note = (
        f"{rules.metric} of the best slice {best} ({value[best]:.4f}) and the worst {worst}"
        f" ({value[worst]:.4f}) differ by {gap:.4f}, which must be <= {rules.max_gap:.4f}: {_word(passed)}"
    )
    return {**verdict, "value": gap, "passed": bool(passed), "best": best, "worst": worst, "note": note}


def _word(passed: bool) -> str:
    return "passed" if passed else "failed"
