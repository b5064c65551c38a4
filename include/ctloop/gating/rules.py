"""Promotion gate rules, evaluated as a pure function of metrics so every verdict is explainable.

A decision lists every rule with its value, bound and verdict. Relative rules compare with the
champion on the same holdout; with no champion they are skipped and say so. Rules that need the
predictions or the model (bootstrap, slices, latency, validity) are computed elsewhere and
folded in as verdicts of the same shape (:class:`~ctloop.gating.decision.GateVerdict`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.gating.decision import GateDecision, GateVerdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import GateRule, Gates


def _improvement(task: TaskKind, metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is, positive when it is better, in the metric's own units."""
    return candidate - champion if higher_is_better(task, metric) else champion - candidate


def _check_rule(
    rule: GateRule, task: TaskKind, candidate: dict[str, float], champion: dict[str, float] | None
) -> GateVerdict:
    verdict = {
        "rule": "relative" if rule.relative else "threshold",
        "metric": rule.metric,
        "kind": rule.kind,
        "bound": rule.bound,
        "candidate": candidate[rule.metric],
    }
    if rule.relative:
        if champion is None:
            note = "skipped: there is no champion yet"
            return GateVerdict.model_validate({**verdict, "value": None, "passed": None, "note": note})
        value = _improvement(task, rule.metric, candidate[rule.metric], champion[rule.metric])
        verdict["champion"] = champion[rule.metric]
        if rule.kind == "min_improvement":
            passed, note = value >= rule.bound, f"improvement {value:+.4f} must be >= {rule.bound:+.4f}"
        else:
            passed, note = (
                value >= -rule.bound,
                f"change {value:+.4f} must not regress more than {rule.bound:.4f}",
            )
    else:
        value = candidate[rule.metric]
        if rule.kind == "at_least":
            passed, note = value >= rule.bound, f"{value:.4f} must be >= {rule.bound:.4f}"
        else:
            passed, note = value <= rule.bound, f"{value:.4f} must be <= {rule.bound:.4f}"
    return GateVerdict.model_validate(
        {**verdict, "value": value, "passed": bool(passed), "note": f"{note}: {_word(passed)}"}
    )


def _word(passed: bool) -> str:
    return "passed" if passed else "failed"


def evaluate_gates(
    gates: Gates,
    task: TaskKind,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
    *,
    extra_verdicts: Sequence[GateVerdict] = (),
) -> GateDecision:
    """The gate decision: every rule's verdict, whether all passed, whether to promote, and the
    one-line summary.

    ``extra_verdicts`` are the verdicts of the bootstrap, slice, latency and validity rules; they
    count like the metric rules (a False fails the gate, a None is a skip).
    """
    unknown = gates.unknown_metrics(task)
    missing = [r.metric for r in gates.rules if r.metric not in candidate]
    if unknown or missing:
        raise SpecError("; ".join(unknown) or f"gate metrics {missing} missing from {sorted(candidate)}")
    rules = [_check_rule(rule, task, candidate, champion) for rule in gates.rules] + list(extra_verdicts)
    failed = [r for r in rules if r.passed is False]
    decision = GateDecision(
        mode=gates.mode,
        passed=not failed,
        promote=not failed and gates.mode == "enabled",
        champion_version=champion_version,
        rules=rules,
        failed=[f"{r.metric} {r.kind}: {r.note}" for r in failed],
    )
    return decision.model_copy(update={"summary": describe(decision)})


def describe(decision: GateDecision) -> str:
    """One line a person can read in a log or a tag."""
    if decision.passed:
        verdict = "passed" if decision.mode == "enabled" else "passed (dry run: not promoting)"
    else:
        verdict = "rejected: " + "; ".join(decision.failed)
        if decision.mode == "dry_run":
            verdict += " (dry run)"
    against = decision.champion_version
    line = f"gate {verdict} (against champion {'v' + against if against else 'none'})"
    return " ".join(line.split())
