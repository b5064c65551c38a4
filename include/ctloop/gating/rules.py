"""Promotion gate rules, evaluated as a pure function of metrics so every verdict is explainable.

A decision lists every rule with its value, bound and verdict. Absolute rules judge the frozen
holdout (unless the champion fails them in the present, see :func:`_absolute`); relative rules
compare with the champion on the same holdout, the frozen one or, for the runs
``gates.recent_holdout.judge_relative`` names, the recent one (:func:`relative_comparison`); with
no champion they are skipped and say so. Rules that need the predictions or the model (bootstrap,
slices, latency, validity) are computed elsewhere and folded in as verdicts of the same shape
(:class:`~ctloop.gating.decision.GateVerdict`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.gating.alert_metrics import ALERT, judged_metrics
from ctloop.gating.decision import GateDecision, GateVerdict, RelativeComparison
from ctloop.spec.models import GateRule

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.spec.models import Gates, RecentHoldout
    from ctloop.training.contracts import Evaluation

ALERT_TRIGGERS = ("asset", "alert")  # the monitor's asset event, an external alert (RunContext.trigger)


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


def _relative(
    gates: Gates, rule: GateRule, task: TaskKind, relative: RelativeComparison, judged: list[str]
) -> GateVerdict:
    """A relative rule's verdict; in a run judged on fired metrics (``judged``), a min_improvement
    on another metric asks only that the candidate is not worse than the champion by more than
    ``gates.alert_metrics.max_regression``."""
    if not judged or rule.metric in judged or rule.kind != "min_improvement":
        return _check_rule(rule, task, relative.candidate, relative.champion)
    tolerance = gates.alert_metrics.max_regression
    relaxed = GateRule(metric=rule.metric, max_regression=tolerance)
    verdict = _check_rule(relaxed, task, relative.candidate, relative.champion)
    note = (
        f"{verdict.note} (min_improvement {rule.bound:g} relaxed: the run is judged on {', '.join(judged)})"
    )
    fields = {"note": note, "relaxed_from": f"min_improvement {rule.bound:g}"}
    return GateVerdict.model_validate({**verdict.model_dump(), **fields})


def _better_on_alert(task: TaskKind, metric: str, relative: RelativeComparison) -> GateVerdict:
    """A fired metric judged by the point difference: the candidate must be better than the
    champion on the holdout of the relative rules (no champion: skipped)."""
    verdict = {"rule": ALERT, "metric": metric, "kind": "better_than_champion", "bound": 0.0}
    candidate, champion = relative.candidate.get(metric), (relative.champion or {}).get(metric)
    if relative.champion is None:
        note = "skipped: there is no champion yet"
        return GateVerdict.model_validate({**verdict, "value": None, "passed": None, "note": note})
    if candidate is None or champion is None:
        which = "candidate" if candidate is None else "champion"
        note = f"failed: {metric} is undefined on the holdout for the {which}"
        return GateVerdict.model_validate({**verdict, "value": None, "passed": False, "note": note})
    value = _improvement(task, metric, candidate, champion)
    note = f"improvement {value:+.4f} over the champion ({candidate:.4f} vs {champion:.4f}) must be > 0"
    return GateVerdict.model_validate(
        {
            **verdict,
            "value": value,
            "candidate": candidate,
            "champion": champion,
            "passed": value > 0,
            "note": f"{note}: {_word(value > 0)}",
        }
    )


def _absolute(
    gates: Gates, rule: GateRule, task: TaskKind, verdict: GateVerdict, relative: RelativeComparison
) -> GateVerdict:
    """An absolute rule the candidate failed on the frozen holdout, looked at again in the present
    (``gates.recent_holdout.relax_absolute``): when the champion fails the rule on the recent
    holdout as well, refusing the candidate keeps a model that does not meet it either, so the
    candidate passes if it does better than the champion there. How much better it must be is
    for the relative rules and the bootstrap, judged on the same rows."""
    now = relative.champion or {}
    if (
        verdict.passed is not False
        or not gates.recent_holdout.relax_absolute
        or relative.on != "recent_holdout"
        or rule.metric not in now
    ):
        return verdict
    champion, candidate = now[rule.metric], relative.candidate[rule.metric]
    if _check_rule(rule, task, now, None).passed:
        return verdict
    better = _improvement(task, rule.metric, candidate, champion) > 0
    note = (
        f"{verdict.note.rsplit(': ', 1)[0]} on the frozen holdout; on the recent holdout the champion"
        f" misses it too ({champion:.4f}) and the candidate {'does' if better else 'does not do'} better"
        f" ({candidate:.4f}): {_word(better)}"
    )
    return verdict.model_copy(update={"passed": better, "note": note})


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
    relative: RelativeComparison | None = None,
    alert_metrics: Sequence[str] = (),
) -> GateDecision:
    """The gate decision: every rule's verdict, whether all passed, whether to promote, and the
    one-line summary.

    ``candidate`` and ``champion`` are the frozen holdout's metrics; ``relative`` the comparison
    relative rules judge, when not on the frozen holdout. ``extra_verdicts`` are the verdicts of
    the bootstrap, slice, latency and validity rules; they count like the metric rules (a False
    fails the gate, a None is a skip). ``alert_metrics`` are the metrics of the monitor's alert
    that started the run (ctloop.gating.alert_metrics): each one the extra verdicts do not judge
    by a bootstrap is judged by the point difference on the relative comparison.
    """
    unknown = gates.unknown_metrics(task)
    if relative is None:
        relative = RelativeComparison(on="frozen_holdout", why="", candidate=candidate, champion=champion)
    missing = [
        r.metric for r in gates.rules if r.metric not in (relative.candidate if r.relative else candidate)
    ]
    if unknown or missing:
        raise SpecError("; ".join(unknown) or f"gate metrics {missing} missing from {sorted(candidate)}")
    judged, judged_why = judged_metrics(gates, task, alert_metrics)
    rules = [
        _relative(gates, rule, task, relative, judged)
        if rule.relative
        else _absolute(gates, rule, task, _check_rule(rule, task, candidate, champion), relative)
        for rule in gates.rules
    ]
    bootstrapped = {v.metric for v in extra_verdicts if v.rule == ALERT}
    rules += [_better_on_alert(task, m, relative) for m in judged if m not in bootstrapped]
    rules += extra_verdicts
    failed = [r for r in rules if r.passed is False]
    decision = GateDecision(
        mode=gates.mode,
        passed=not failed,
        promote=not failed and gates.mode == "enabled",
        champion_version=champion_version,
        rules=rules,
        failed=[f"{r.metric} {r.kind}: {r.note}" for r in failed],
        relative_on=relative.on,
        relative_on_why=relative.why,
        alert_metrics=judged,
        alert_metrics_why=judged_why,
    )
    return decision.model_copy(update={"summary": describe(decision)})


def describe(decision: GateDecision) -> str:
    """One line a person can read in a log or a tag; it names the recent holdout when the relative
    rules were judged there (the frozen holdout is the default and goes unsaid), and the alert's
    metrics when the run was judged on them."""
    if decision.passed:
        verdict = "passed" if decision.mode == "enabled" else "passed (dry run: not promoting)"
    else:
        verdict = "rejected: " + "; ".join(decision.failed)
        if decision.mode == "dry_run":
            verdict += " (dry run)"
    against = decision.champion_version
    basis = "; relative rules on the recent holdout" if decision.relative_on == "recent_holdout" else ""
    if decision.alert_metrics:
        basis += f"; judged on the alert's {', '.join(decision.alert_metrics)}"
    line = f"gate {verdict} (against champion {'v' + against if against else 'none'}{basis})"
    return " ".join(line.split())


def relative_comparison(policy: RecentHoldout, evaluation: Evaluation) -> RelativeComparison:
    """Where this run's relative rules and bootstrap compare: on the recent holdout when there is
    one and ``policy.judge_relative`` covers the run's trigger, else on the frozen holdout."""
    recent, trigger = evaluation.recent, evaluation.trigger
    frozen = {"on": "frozen_holdout", "candidate": evaluation.candidate, "champion": evaluation.champion}
    setting = f"gates.recent_holdout.judge_relative is {policy.judge_relative!r}"
    if policy.judge_relative == "never":
        return RelativeComparison.model_validate({**frozen, "why": setting})
    if policy.judge_relative == "alert" and trigger not in ALERT_TRIGGERS:
        why = f"{setting} and this run's trigger is {trigger!r}, not an alert"
        return RelativeComparison.model_validate({**frozen, "why": why})
    if recent is None:
        why = f"{setting}, but there is no recent holdout ({evaluation.recent_note})"
        return RelativeComparison.model_validate({**frozen, "why": why})
    return RelativeComparison(
        on="recent_holdout",
        why=f"{setting} and this run's trigger is {trigger!r}: judged on the {recent.holdout.rows}"
        " most recent labeled rows, set aside from training",
        candidate=recent.candidate,
        champion=recent.champion,
    )
