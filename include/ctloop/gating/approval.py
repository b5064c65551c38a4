"""Human approval of a gated candidate: the evidence a reviewer sees, and what their answer means.

Airflow's ``ApprovalOperator`` asks; with no answer by the timeout it takes its default,
``Reject``, with nobody as the responder, which is recorded as ``timed_out``.
"""

from __future__ import annotations

APPROVE, REJECT = "Approve", "Reject"


def outcome(response: dict | None, required: bool) -> dict:
    """The approval record for the ledger, the model card and the version's tags."""
    if not required:
        return {"required": False, "outcome": "not_required", "by": None, "at": None, "comment": None}
    if not response:
        return {"required": True, "outcome": "pending", "by": None, "at": None, "comment": None}
    user = response.get("responded_by_user") or {}
    chosen = (response.get("chosen_options") or [None])[0]
    if response.get("timedout") or (chosen != APPROVE and not user):
        verdict = "timed_out"  # nobody answered; the scheduler applied the default, Reject
    else:
        verdict = "approved" if chosen == APPROVE else "rejected"
    at = response.get("responded_at")
    return {
        "required": True,
        "outcome": verdict,
        "by": user.get("name") or user.get("id"),
        "at": at.isoformat() if hasattr(at, "isoformat") else at,
        "comment": (response.get("params_input") or {}).get("comment") or None,
    }


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def evidence_markdown(decision: dict, evaluation: dict, provenance: dict, version: str, links: dict) -> str:
    """What the reviewer reads in Airflow's Required actions view: metrics, slices, verdicts, links."""
    champion = evaluation.get("champion") or {}
    lines = [
        f"**Candidate v{version}** against champion "
        f"{'v' + evaluation['champion_version'] if evaluation.get('champion_version') else '(none yet)'}"
        f" on the same frozen holdout ({evaluation.get('holdout_digest', '')[:12]}).",
        "",
        "| metric | candidate | champion |",
        "| --- | --- | --- |",
        *(
            f"| {m} | {_number(v)} | {_number(champion.get(m))} |"
            for m, v in sorted(evaluation["candidate"].items())
        ),
        "",
        "| rule | verdict | note |",
        "| --- | --- | --- |",
        *(
            f"| {r.get('metric')} {r.get('kind')} | {_verdict(r.get('passed'))} | {r.get('note', '')} |"
            for r in decision["rules"]
        ),
    ]
    slices = decision.get("slices") or []
    if slices:
        lines += ["", "| slice | rows | candidate | champion |", "| --- | --- | --- | --- |"]
        metric = decision.get("slice_metric")
        lines += [
            f"| {s['slice']} | {s['rows']} | {_number((s.get('candidate') or {}).get(metric))}"
            f" | {_number((s.get('champion') or {}).get(metric))} |"
            for s in slices
        ]
    lines += [
        "",
        f"Started by: {provenance.get('ctloop.trigger', '')}: {provenance.get('ctloop.reason', '')}",
        *(f"- {name}: {target}" for name, target in links.items() if target),
    ]
    return "\n".join(lines)


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "skipped"}[passed]
