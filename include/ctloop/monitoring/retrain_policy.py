"""The retrain policy: from one monitored window's evidence to a recorded decision.

A pure function of the evidence, the pipeline's history and the retrain ledger, so each guard
can be tested alone. Every outcome carries ``why``, including the decisions not to retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.monitoring.retrain_requests import active, consecutive_rejections, last_closed_at

if TYPE_CHECKING:
    from ctloop.spec.models import PipelineSpec

RETRAIN, ATTACH, HOLD, BREAKER_OPEN = "retrain", "attach", "hold", "breaker_open"


@dataclass(frozen=True)
class Evidence:
    """What the monitor measured on one window, on full data."""

    window_key: str
    current_rows: int
    drift_share: float
    drifted_features: list[str]
    labeled_rows: int
    quality: float | None
    champion_quality: float | None


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
    if evidence.labeled_rows < quality.min_labels:
        undecided.append(
            f"quality: {evidence.labeled_rows} labeled rows"
            f" < monitoring.quality.min_labels {quality.min_labels}"
        )
    elif evidence.quality is None or evidence.champion_quality is None:
        side = "the labeled rows" if evidence.quality is None else "the champion's holdout"
        undecided.append(f"quality: {quality.metric} cannot be computed on {side}")
    else:
        sign = 1.0 if higher_is_better(spec.task, quality.metric) else -1.0
        # rounded, so that 0.80 - 0.75 is a drop of 0.05 and not of 0.05000000000000004
        drop = round(sign * (evidence.champion_quality - evidence.quality), 9)
        if drop > quality.max_drop:
            crossed.append(
                f"{quality.metric} {evidence.quality:.4f} is {drop:.4f} worse than the champion's holdout"
                f" {evidence.champion_quality:.4f} (max_drop {quality.max_drop})"
            )
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
    alert = bool(crossed)
    seen = {h["window_key"]: h for h in history}
    decision = {
        "alert": alert,
        "triggers": crossed,
        "undecided": undecided,
        "window_key": evidence.window_key,
    }
    if evidence.window_key in seen:
        earlier = seen[evidence.window_key]
        why = f"no new batches or labels since monitor run {earlier['run_key']}; nothing new to decide"
        return {**decision, "action": HOLD, "new_evidence": False, "why": why}
    rule = spec.retrain.k_of_n
    recent = [h["alert"] for h in history[-(rule.n - 1) :]] if rule.n > 1 else []
    alerts = sum(recent) + alert
    decision |= {"new_evidence": True, "k_of_n": {"k": rule.k, "n": rule.n, "alerts": alerts}}
    if not alert:
        why = "no trigger crossed" + (f" ({'; '.join(undecided)})" if undecided else "")
        return {**decision, "action": HOLD, "why": why}
    if alerts < rule.k:
        windows = len(recent) + 1
        why = f"{alerts} of the last {windows} windows alerted; retrain.k_of_n needs {rule.k} of {rule.n}"
        return {**decision, "action": HOLD, "why": why}
    return {**decision, **_guard(spec, requests, now)}


def _guard(spec: PipelineSpec, requests: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Coalescing, circuit breaker and cooldown, in that order, for a confirmed alert."""
    queued = active(requests)
    if queued is not None:
        why = f"retrain request {queued['id']} is {queued['state']}; this alert's reason is attached to it"
        return {"action": ATTACH, "why": why, "request_id": queued["id"]}
    rejected = consecutive_rejections(requests)
    if rejected >= spec.retrain.max_consecutive_rejections:
        why = (
            f"circuit breaker open: the gate rejected the last {rejected} candidates"
            f" (retrain.max_consecutive_rejections {spec.retrain.max_consecutive_rejections});"
            " automatic retraining is stopped until a person retrains or resets it"
        )
        return {"action": BREAKER_OPEN, "why": why}
    closed = last_closed_at(requests)
    cooldown = timedelta(minutes=spec.retrain.cooldown_minutes)
    if closed is not None and now - closed < cooldown:
        why = (
            f"in cooldown: the last retrain an alert asked for ended {closed:%Y-%m-%d %H:%M:%S} UTC;"
            f" retrain.cooldown_minutes {spec.retrain.cooldown_minutes:g} ends {closed + cooldown:%H:%M:%S}"
        )
        return {"action": HOLD, "why": why}
    return {"action": RETRAIN, "why": "confirmed alert: retraining"}
