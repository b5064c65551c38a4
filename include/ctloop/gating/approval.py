"""Human approval of a gated candidate: the evidence a reviewer sees, and what their answer means.

Airflow's ``ApprovalOperator`` asks; with no answer by the timeout it takes its default,
``Reject``, with nobody as the responder, which is recorded as ``timed_out``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.registry import tags

if TYPE_CHECKING:
    from ctloop.gating.decision import GateDecision
    from ctloop.training.contracts import Evaluation

APPROVE, REJECT = "Approve", "Reject"
REFUSALS = ("rejected", "timed_out")


class Approval(BaseModel):
    """The approval record for the ledger, the model card and the version's tags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    required: bool
    outcome: Literal["not_required", "pending", "not_asked", "approved", "rejected", "timed_out"]
    """``pending`` while the run may still ask; ``not_asked`` once it ended without an answer."""
    by: str | None = None
    at: str | None = None
    comment: str | None = None

    @property
    def refused(self) -> bool:
        """A person said no, or nobody answered in time."""
        return self.outcome in REFUSALS


def outcome(response: Mapping[str, Any] | None, required: bool) -> Approval:
    """What the reviewer's answer (Airflow's HITL response, None when nobody was asked) means."""
    if not required:
        return Approval(required=False, outcome="not_required")
    if not response:
        return Approval(required=True, outcome="pending")
    user = response.get("responded_by_user") or {}
    chosen = (response.get("chosen_options") or [None])[0]
    verdict: Literal["approved", "rejected", "timed_out"]
    if response.get("timedout") or (chosen != APPROVE and not user):
        verdict = "timed_out"  # nobody answered; the scheduler applied the default, Reject
    else:
        verdict = "approved" if chosen == APPROVE else "rejected"
    at = response.get("responded_at")
    by = user.get("name") or user.get("id")
    return Approval(
        required=True,
        outcome=verdict,
        by=None if by is None else str(by),
        at=at.isoformat() if isinstance(at, datetime) else at,
        comment=(response.get("params_input") or {}).get("comment") or None,
    )


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def evidence_markdown(
    decision: GateDecision,
    evaluation: Evaluation,
    provenance: Mapping[str, str],
    version: str,
    links: Mapping[str, str],
) -> str:
    """What the reviewer reads in Airflow's Required actions view: metrics on both holdouts, the
    holdout the relative rules judged, slices, verdicts, links."""
    against = evaluation.champion_version
    lines = [
        f"**Candidate v{version}** against champion {'v' + against if against else '(none yet)'}"
        f" on the same frozen holdout ({evaluation.holdout_digest[:12]}).",
        "",
        *_metric_table(evaluation.candidate, evaluation.champion),
        "",
    ]
    recent = evaluation.recent
    if recent is None:
        lines += [f"Recent holdout: {evaluation.recent_note}.", ""]
    else:
        lines += [
            f"On the recent holdout ({recent.holdout.rows} rows, {recent.holdout.digest[:12]}):",
            "",
            *_metric_table(recent.candidate, recent.champion),
            "",
        ]
    lines += [
        f"Relative rules and the bootstrap judged on the {decision.relative_on.replace('_', ' ')}"
        + (f": {decision.relative_on_why}." if decision.relative_on_why else "."),
        *(
            [f"Judged on the alert's {', '.join(decision.alert_metrics)}: {decision.alert_metrics_why}."]
            if decision.alert_metrics
            else []
        ),
        "",
        "| rule | verdict | note |",
        "| --- | --- | --- |",
        *(f"| {r.metric} {r.kind} | {_verdict(r.passed)} | {r.note} |" for r in decision.rules),
    ]
    slices = decision.slices or []
    if slices:
        lines += ["", "| slice | rows | candidate | champion |", "| --- | --- | --- | --- |"]
        metric = decision.slice_metric or ""
        lines += [
            f"| {s.slice} | {s.rows} | {_number(s.candidate.get(metric))}"
            f" | {_number((s.champion or {}).get(metric))} |"
            for s in slices
        ]
    lines += [
        "",
        f"Started by: {provenance.get(tags.TRIGGER, '')}: {provenance.get(tags.REASON, '')}",
        *(f"- {name}: {target}" for name, target in links.items() if target),
    ]
    return "\n".join(lines)


def _metric_table(candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> list[str]:
    return [
        "| metric | candidate | champion |",
        "| --- | --- | --- |",
        *(
            f"| {m} | {_number(v)} | {_number((champion or {}).get(m))} |"
            for m, v in sorted(candidate.items())
        ),
    ]


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "skipped"}[passed]
