"""The ``challenger`` alias: the candidate that passed its gates and waits for a person's approval.

While it waits, the challenger shadow-scores every production batch (ctloop.scoring.batches) and
the monitor compares it with the champion on the labeled rows both scored
(ctloop.monitoring.champion_watch), so a reviewer who takes a day to answer answers on production
evidence too. One challenger per pipeline: a newer waiting candidate takes the alias over. The
alias is released when its training run ends, however it ends (approved and promoted, rejected,
timed out, failed); a release never takes the alias from a newer candidate.

Unlike ``champion``, the alias serves nobody, so its moves are tagged on the version
(``ctloop.challenger``) rather than recorded in the promotion ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop import clock
from ctloop.io.locks import pipeline_lock
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags

if TYPE_CHECKING:
    from ctloop.settings import Settings


def mark(settings: Settings, pipeline: str, version: str) -> str | None:
    """Point ``challenger`` at ``version``; returns the version it took the alias from, if any."""
    mlflow_client = registry.client(settings)
    with pipeline_lock(settings, pipeline, registry.CHALLENGER):
        before = registry.get_alias(mlflow_client, pipeline, registry.CHALLENGER)
        mlflow_client.set_registered_model_alias(pipeline, registry.CHALLENGER, version)
    at = clock.now().isoformat(timespec="seconds")
    mlflow_client.set_model_version_tag(pipeline, version, tags.CHALLENGER, f"since {at}")
    replaced = str(before.version) if before is not None and str(before.version) != version else None
    if replaced is not None:
        why = f"replaced at {at} by v{version}, a newer candidate waiting for approval"
        mlflow_client.set_model_version_tag(pipeline, replaced, tags.CHALLENGER, why)
    return replaced


def release(settings: Settings, pipeline: str, version: str, why: str) -> bool:
    """Remove ``challenger`` if it still points at ``version``; whether it did."""
    mlflow_client = registry.client(settings)
    with pipeline_lock(settings, pipeline, registry.CHALLENGER):
        current = registry.get_alias(mlflow_client, pipeline, registry.CHALLENGER)
        if current is None or str(current.version) != version:
            return False
        mlflow_client.delete_registered_model_alias(pipeline, registry.CHALLENGER)
    at = clock.now().isoformat(timespec="seconds")
    mlflow_client.set_model_version_tag(pipeline, version, tags.CHALLENGER, f"released at {at}: {why}")
    return True
