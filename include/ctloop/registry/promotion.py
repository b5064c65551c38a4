"""Moving the ``champion`` alias safely: under a lock, only if the champion has not moved, and on
the record.

``set_registered_model_alias`` is last-writer-wins. Two candidates that both beat champion v1
would otherwise leave whichever wrote last, better or worse. So the move is a compare-and-set in
the promotion ledger (:func:`ctloop.registry.ledger.move_alias`): the champion is read again under the
pipeline's lock; if it changed since the candidate was evaluated, the candidate is re-evaluated
against the new champion, and promoted only if it passes the gates again and beats the new
champion on the spec's primary metric. Then the better of two candidates ends up champion
whichever writes first, even when no gate rule compares with the champion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.gating.decision import GateDecision, PrimaryComparison
from ctloop.registry import ledger

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.settings import Settings

PromotionAction = Literal[
    "promoted",
    "promoted_after_reevaluation",
    "rejected_after_reevaluation",
    "already_champion",
    "not_promoted",
]


class PromotionResult(BaseModel):
    """What the promote step did with a candidate, as logged in ``promotion/outcome.json``.

    ``previous`` is the champion it replaced (None for a first champion, and when nothing moved);
    ``decision`` is the re-evaluated decision when the champion had moved since the gate, else
    the gate's; ``seq`` the ledger row of the move. ``not_promoted`` (the gate said no) carries
    neither a decision nor a move.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: PromotionAction
    version: str
    previous: str | None = None
    decision: GateDecision | None = None
    why: str
    seq: int | None = None

    @property
    def promoted(self) -> bool:
        return self.action in ("promoted", "promoted_after_reevaluation")

    @property
    def turned_down(self) -> bool:
        """The candidate was refused (by the gate, or by the re-evaluation under the lock): the
        train DAG's promote task skips, so such a run has no promote result downstream."""
        return self.action in ("not_promoted", "rejected_after_reevaluation")


def primary_comparison(
    task: TaskKind, metric: str, candidate: dict[str, float], champion: dict[str, float] | None
) -> PrimaryComparison:
    """What a re-evaluation adds to its decision: the candidate's and the champion's value of the
    spec's primary metric (``champion`` is None when there is no champion), and its direction."""
    return PrimaryComparison(
        metric=metric,
        higher_is_better=higher_is_better(task, metric),
        candidate=candidate[metric],
        champion=None if champion is None else champion[metric],
    )


def _beats(primary: PrimaryComparison, champion: ModelVersion | None) -> tuple[bool, str]:
    """Whether the candidate is strictly better than the new champion on the primary metric; a tie
    keeps the champion, so equal candidates do not churn the alias."""
    metric, candidate, incumbent = primary.metric, primary.candidate, primary.champion
    if champion is None:
        return True, f"there is no champion to beat on {metric}"
    if incumbent is None:
        return False, f"the champion's {metric} is unknown, so the candidate cannot be shown to beat it"
    better = candidate > incumbent if primary.higher_is_better else candidate < incumbent
    verb = "beats" if better else "does not beat"
    return better, f"{metric} {candidate:.4f} {verb} the champion's {incumbent:.4f}"


def promote(
    mlflow_client: MlflowClient,
    settings: Settings,
    name: str,
    version: str,
    decision: GateDecision,
    reevaluate: Callable[[ModelVersion | None], GateDecision],
    *,
    reason: str = "",
    run_key: str | None = None,
    mlflow_run_id: str | None = None,
    gate_summary: str | None = None,
    user: str | None = None,
    approver: str | None = None,
    evidence: dict[str, str] | None = None,
) -> PromotionResult:
    """Compare-and-set ``champion`` to ``version`` and record the move in the ledger, which also
    writes the version's promotion tags (see :func:`ctloop.registry.ledger.move_alias`).

    ``decision`` is the gate decision the candidate passed against ``decision.champion_version``.
    If the champion moved since, ``reevaluate(new champion or None)`` is called under the lock and
    must return a fresh gate decision of the candidate against it, with ``primary`` set (see
    :func:`primary_comparison`). The other keyword arguments are recorded in the ledger row;
    ``gate_summary`` defaults to ``decision.summary``.
    """
    decided = {"decision": decision}

    def decide(champion: ModelVersion | None) -> tuple[bool, str]:
        fresh = reevaluate(champion)
        decided["decision"] = fresh
        if not fresh.promote:
            return False, "; ".join(fresh.failed) or fresh.summary or "gates not passed"
        if fresh.primary is None:
            raise ValueError(
                "reevaluate must return 'primary' (see ctloop.registry.promotion.primary_comparison)"
            )
        better, why = _beats(fresh.primary, champion)
        return better, f"{fresh.summary or 'gates passed'}; {why}"

    moved = ledger.move_alias(
        settings,
        mlflow_client,
        name,
        str(version),
        expected_from=decision.champion_version,
        action="promotion",
        reason=reason,
        run_key=run_key,
        mlflow_run_id=mlflow_run_id,
        user=user,
        gate_decision=decision.summary if gate_summary is None else gate_summary,
        approver=approver,
        evidence=evidence,
        decide=decide,
    )
    reevaluated = decided["decision"] is not decision
    action: PromotionAction
    if moved.moved:
        action = "promoted_after_reevaluation" if reevaluated else "promoted"
    else:
        action = "already_champion" if moved.from_version == str(version) else "rejected_after_reevaluation"
    return PromotionResult(
        action=action,
        version=str(version),
        previous=None if action == "already_champion" else moved.from_version,
        decision=decided["decision"],
        why=moved.why,
        seq=moved.seq,
    )
