"""Promotion gate rules, evaluated as a pure function of metrics so every verdict is explainable.

A decision lists every rule with its value, bound and verdict. Relative rules compare with the
champion on the same holdout; with no champion they are skipped and say so. Rules that need the
predictions or the model (bootstrap, slices, latency, validity) are computed elsewhere and
folded in as verdicts of the same shape:

``{"rule", "metric", "kind", "value", "bound", "passed" (None: skipped), "note"}`` plus extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better, metric_names

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import GateRule, Gates

VERDICT_KEYS = ("rule", "metric", "kind", "value", "bound", "passed", "note")


def _improvement(task: TaskKind, metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is, positive when it is better, in the metric's own units."""
    return candidate - champion if higher_is_better(task, metric) else champion - candidate


def _check_rule(rule: GateRule, task: TaskKind, candidate: dict, champion: dict | None) -> dict:
    verdict = {
        "rule": "relative" if rule.relative else "threshold",
        "metric": rule.metric,
        "kind": rule.kind,
        "bound": rule.bound,
        "candidate": candidate[rule.metric],
    }
    if rule.relative:
        if champion is None:
            return {**verdict, "value": None, "passed": None, "note": "skipped: there is no champion yet"}
        value = _improvement(task, rule.metric, candidate[rule.metric], champion[rule.metric])
        verdict["champion"] = champion[rule.metric]
        if rule.kind == "min_improvement":
            passed, note = value >= rule.bound, f"improvement {value:+.4f} must be >= {rule.bound:+.4f}"
        else:
            passed, note = (
                value >= -rule.bound,
                f"change {value:+.4f} must not regress more than {rule.bound:.4f}",
            )
        return {**verdict, "value": value, "passed": bool(passed), "note": f"{note}: {_word(passed)}"}
    value = candidate[rule.metric]
    if rule.kind == "at_least":
        passed, note = value >= rule.bound, f"{value:.4f} must be >= {rule.bound:.4f}"
    else:
        passed, note = value <= rule.bound, f"{value:.4f} must be <= {rule.bound:.4f}"
    return {**verdict, "value": value, "passed": bool(passed), "note": f"{note}: {_word(passed)}"}


def _word(passed: bool) -> str:
    return "passed" if passed else "failed"


def unknown_gate_metrics(gates: Gates, task: TaskKind) -> list[str]:
    """One message per rule whose metric this task kind does not produce."""
    known = metric_names(task)
    return [
        f"gates.rules.{index}.metric: {rule.metric!r} is not a metric a {task} training produces;"
        f" choose one of {', '.join(known)}"
        for index, rule in enumerate(gates.rules)
        if rule.metric not in known
    ]


def evaluate_gates(
    gates: Gates,
    task: TaskKind,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
    *,
    extra_verdicts: Sequence[dict] = (),
) -> dict:
    """The gate decision: every rule's verdict, whether all passed, and whether to promote.

    ``extra_verdicts`` are the verdicts of the bootstrap, slice, latency and validity rules; they
    count like the metric rules (a False fails the gate, a None is a skip).
    """
    unknown = unknown_gate_metrics(gates, task)
    missing = [r.metric for r in gates.rules if r.metric not in candidate]
    if unknown or missing:
        raise SpecError("; ".join(unknown) or f"gate metrics {missing} missing from {sorted(candidate)}")
    malformed = [why for verdict in extra_verdicts if (why := _malformed(verdict))]
    if malformed:
        raise ValueError("; ".join(malformed))
    rules = [_check_rule(rule, task, candidate, champion) for rule in gates.rules] + list(extra_verdicts)
    failed = [r for r in rules if r["passed"] is False]
    passed = not failed
    return {
        "mode": gates.mode,
        "passed": passed,
        "promote": passed and gates.mode == "enabled",
        "champion_version": champion_version,
        "rules": rules,
        "failed": [f"{r['metric']} {r['kind']}: {r['note']}" for r in failed],
    }


def _malformed(verdict: dict) -> str | None:
    """Why a verdict from another rule cannot be folded in, or None when it can."""
    missing = [key for key in VERDICT_KEYS if key not in verdict]
    if missing:
        return f"verdict {verdict.get('rule', '?')}/{verdict.get('metric', '?')} lacks {', '.join(missing)}"
    if not (verdict["passed"] is None or isinstance(verdict["passed"], bool)):
        return f"verdict {verdict['rule']}/{verdict['metric']}: passed must be true, false or null"
    return None


def describe(decision: dict) -> str:
    """One line a person can read in a log or a tag."""
    if decision["passed"]:
        verdict = "passed" if decision["mode"] == "enabled" else "passed (dry run: not promoting)"
    else:
        verdict = "rejected: " + "; ".join(decision["failed"])
        if decision["mode"] == "dry_run":
            verdict += " (dry run)"
    against = decision["champion_version"]
    line = f"gate {verdict} (against champion {'v' + against if against else 'none'})"
    return " ".join(line.split())
