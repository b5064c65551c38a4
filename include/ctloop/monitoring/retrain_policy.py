"""The retrain policy: from one monitored window's evidence to a recorded decision.

A pure function of the evidence, the pipeline's history and the retrain ledger, so each guard
can be tested alone. Every outcome carries ``why``, including the decisions not to retrain.
Drift asks for patience (k of n windows, a cooldown); a severe quality drop on enough labels does
not wait for either, as the labels already show the champion is wrong. Each quality rule arrives
judged (ctloop.monitoring.quality_rules: significant, on enough labels); one that alerts is a
trigger, one that cannot be decided says why; so is each label-shift signal
(ctloop.monitoring.label_shift), and each estimated metric (ctloop.monitoring.performance_estimate)
where ``monitoring.estimate.decide`` says so. A new champion worse than
the one it replaced, on the same rows (ctloop.monitoring.champion_watch), is rolled back at once;
an open circuit breaker stops only the retrain that follows. Times are compared with the
``now`` the caller reads from :mod:`ctloop.clock`, so a replay sees the cooldowns a live run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.monitoring.quality_rules import REFERENCE_NAMES
from ctloop.monitoring.retrain_requests import active, consecutive_rejections, last_closed_at

if TYPE_CHECKING:
    from ctloop.monitoring.quality_rules import RuleOutcome
    from ctloop.spec.models import PipelineSpec

RETRAIN, ATTACH, HOLD, BREAKER_OPEN, ROLLBACK = "retrain", "attach", "hold", "breaker_open", "rollback"


@dataclass(frozen=True)
class Evidence:
    """What the monitor measured on one window, on full data."""

    window_key: str
    current_rows: int
    drift_share: float
    drifted_features: list[str]
    labeled_rows: int
    quality_rules: tuple[RuleOutcome, ...] = ()
    """Each ``monitoring.quality.rules`` rule judged on the window's labeled rows."""
    regression: str | None = None
    """Why the champion is significantly worse than the champion it replaced, on the same rows."""
    label_shift: dict[str, Any] | None = None
    """The label-shift block (ctloop.monitoring.label_shift.measure): its signals, judged."""
    estimate: dict[str, Any] | None = None
    """The performance-estimate block (ctloop.monitoring.performance_estimate.estimate); its
    signals count only when it ``decides`` (``monitoring.estimate.decide``)."""


def severe_drop(spec: PipelineSpec, evidence: Evidence) -> str | None:
    """Why this window's quality drop is severe (``monitoring.quality.severe_multiple``), or None.

    Labels that show the champion this far off are the strongest evidence the monitor gets: more
    windows or a cooldown would only serve bad predictions longer."""
    multiple = spec.monitoring.quality.severe_multiple
    severe = [
        f"{rule.metric} {rule.value:.4f} vs {REFERENCE_NAMES[rule.reference_source]} {rule.reference:.4f}"
        f" on {rule.labeled_rows:,} labels (a drop of {rule.drop:.4f} >= {multiple:g} x max_drop"
        f" {rule.max_drop:g})"
        for rule in evidence.quality_rules
        if rule.severe and rule.value is not None and rule.reference is not None and rule.drop is not None
    ]
    return f"severe quality drop: {'; '.join(severe)}" if severe else None


def triggers(spec: PipelineSpec, evidence: Evidence) -> tuple[list[str], list[str]]:
    """The triggers this window crossed, and what could not be decided for lack of data."""
    drift, quality = spec.monitoring.drift, spec.monitoring.quality
    crossed, undecided = [], []
    if evidence.current_rows < spec.monitoring.min_rows:
        undecided.append(
            f"drift: {evidence.current_rows} rows < monitoring.min_rows {spec.monitoring.min_rows}"
        )
    else:
        if evidence.drift_share >= drift.share:
            crossed.append(f"drift share {evidence.drift_share:.2f} >= {drift.share:.2f}")
        key_drifted = [f for f in drift.key_features if f in evidence.drifted_features]
        if key_drifted:
            crossed.append(f"key feature(s) drifted: {', '.join(key_drifted)}")
    if evidence.labeled_rows < quality.min_labels:  # one line for every rule
        undecided.append(
            f"quality: {evidence.labeled_rows} labeled rows"
            f" < monitoring.quality.min_labels {quality.min_labels}"
        )
    else:
        for rule in evidence.quality_rules:
            found = {"alert": crossed, "undecided": undecided}.get(rule.verdict)
            if found is not None:
                found.append(f"quality {rule.metric}: {rule.why}")
    for block in (evidence.label_shift, evidence.estimate):
        if block is not None and block.get("decides", True):
            judged = [x for x in block["signals"] if x.get("judged", True)]
            crossed += [x["why"] for x in judged if x["verdict"] == "alert"]
            undecided += [x["why"] for x in judged if x["verdict"] == "undecided"]
    return crossed, undecided


def decide(
    spec: PipelineSpec,
    evidence: Evidence,
    history: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """The decision for this window; ``history`` is the earlier decisions under the same champion."""
    crossed, undecided = triggers(spec, evidence)
    if evidence.regression is not None:  # first: it is what the decision acts on
        crossed.insert(0, evidence.regression)
    alert = bool(crossed)
    seen = {h["window_key"]: h for h in history}
    decision = {
        "alert": alert,
        "triggers": crossed,
        "undecided": undecided,
        "window_key": evidence.window_key,
    }
    if evidence.regression is not None:  # before the repeat check: a rollback not made is still due
        return {**decision, "new_evidence": True, **_rollback(spec, evidence.regression, requests)}
    if evidence.window_key in seen:
        earlier = seen[evidence.window_key]
        why = f"no new batches or labels since monitor run {earlier['run_key']}; nothing new to decide"
        return {**decision, "action": HOLD, "new_evidence": False, "why": why}
    rule = spec.retrain.k_of_n
    recent = [h["alert"] for h in history[-(rule.n - 1) :]] if rule.n > 1 else []
    alerts = sum(recent) + alert
    severe = severe_drop(spec, evidence)
    decision |= {
        "new_evidence": True,
        "k_of_n": {"k": rule.k, "n": rule.n, "alerts": alerts},
        "severe": severe is not None,
    }
    if not alert:
        why = "no trigger crossed" + (f" ({'; '.join(undecided)})" if undecided else "")
        return {**decision, "action": HOLD, "why": why}
    if severe is None and alerts < rule.k:
        windows = len(recent) + 1
        why = f"{alerts} of the last {windows} windows alerted; retrain.k_of_n needs {rule.k} of {rule.n}"
        return {**decision, "action": HOLD, "why": why}
    return {**decision, **_guard(spec, requests, now, severe)}


def _rollback(spec: PipelineSpec, regression: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Roll back, bypassing k-of-n and the cooldown, and retrain unless the breaker is open.

    The rows show the new champion serving worse than the one it replaced; the rollback stops
    that, and the retrain asks for a champion fit for what made the previous one look stale."""
    rejected = consecutive_rejections(requests)
    if rejected >= spec.retrain.max_consecutive_rejections:
        why = (
            f"{regression}; rolling back; circuit breaker open (the gate rejected the last {rejected}"
            " candidates): no retrain is requested"
        )
        return {"action": ROLLBACK, "retrain": False, "why": why}
    return {"action": ROLLBACK, "retrain": True, "why": f"{regression}; rolling back and retraining"}


def _guard(
    spec: PipelineSpec, requests: list[dict[str, Any]], now: datetime, severe: str | None
) -> dict[str, Any]:
    """Coalescing, circuit breaker and cooldown, in that order, for a confirmed alert.

    A severe quality drop (``severe`` says why) skips only the cooldown: it still joins a queued
    retrain rather than starting a second, and an open breaker still waits for a person."""
    said = f"{severe}; " if severe else ""
    queued = active(requests)
    if queued is not None:
        why = f"retrain request {queued['id']} is {queued['state']}; this alert's reason is attached to it"
        return {"action": ATTACH, "why": said + why, "request_id": queued["id"]}
    rejected = consecutive_rejections(requests)
    if rejected >= spec.retrain.max_consecutive_rejections:
        why = (
            f"circuit breaker open: the gate rejected the last {rejected} candidates"
            f" (retrain.max_consecutive_rejections {spec.retrain.max_consecutive_rejections});"
            " automatic retraining is stopped until a person retrains or resets it"
        )
        return {"action": BREAKER_OPEN, "why": said + why}
    if severe:
        return {"action": RETRAIN, "why": f"{severe}; k-of-n and cooldown bypassed"}
    closed = last_closed_at(requests)
    cooldown = timedelta(minutes=spec.retrain.cooldown_minutes)
    if closed is not None and now - closed < cooldown:
        why = (
            f"in cooldown: the last retrain an alert asked for ended {closed:%Y-%m-%d %H:%M:%S} UTC;"
            f" retrain.cooldown_minutes {spec.retrain.cooldown_minutes:g} ends {closed + cooldown:%H:%M:%S}"
        )
        return {"action": HOLD, "why": why}
    return {"action": RETRAIN, "why": "confirmed alert: retraining"}
