"""Moving the ``champion`` alias safely: under a lock, and only if the champion has not moved.

``set_registered_model_alias`` is last-writer-wins. Two candidates that both beat champion v1
would otherwise leave whichever wrote last, better or worse. So the move re-reads the champion
under a lock; if it changed since the candidate was evaluated, the candidate is re-evaluated
against the new champion and promoted only if it still passes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ctloop.locks import pipeline_lock
from ctloop.registry import CHAMPION, get_champion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.settings import Settings


def promote(
    mlflow_client: MlflowClient,
    settings: Settings,
    name: str,
    version: str,
    decision: dict,
    reevaluate: Callable[[ModelVersion], dict],
) -> dict:
    """Compare-and-set ``champion`` to ``version``; returns what happened and why."""
    with pipeline_lock(settings, name, "promotion"):
        current = get_champion(mlflow_client, name)
        current_version = str(current.version) if current else None
        if current_version == version:
            return {"action": "already_champion", "version": version, "previous": None, "decision": decision}
        action = "promoted"
        if current_version != decision["champion_version"]:
            moved = (
                f"champion moved from {decision['champion_version']} to {current_version} after evaluation"
            )
            decision = reevaluate(current)
            if not decision["promote"]:
                return {
                    "action": "rejected_after_reevaluation",
                    "version": version,
                    "previous": current_version,
                    "decision": decision,
                    "why": f"{moved}; re-evaluated: {'; '.join(decision['failed'])}",
                }
            action = "promoted_after_reevaluation"
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
        tags = {
            "ctloop.previous_champion": current_version or "none",
            "ctloop.promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ctloop.promotion": action,
        }
        for key, value in tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
    return {"action": action, "version": version, "previous": current_version, "decision": decision}
