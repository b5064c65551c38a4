"""Rolling ``champion`` back in one step, to the previous champion or to a named version.

A target that never passed its gates (or that a person rejected) is refused unless the caller
forces it and gives a reason; the move is then recorded as an ``override``. The alias moves with
the same compare-and-set as a promotion and lands in the ledger. The drift reference and the
expectation suite follow the champion, since both are read from the champion's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import ModelIntegrityError, RollbackRefused
from ctloop.gating.approval import REFUSALS
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.settings import Settings

PREVIOUS = "previous"


class RollbackOutcome(ledger.LedgerMove):
    """The move, with what follows the new champion: its reference data, suite and run."""

    evidence: dict[str, str]


def previous_champion(settings: Settings, pipeline: str, current: ModelVersion) -> str:
    """The version that was champion before ``current``: from the ledger's last move to it, else
    from the version's ``ctloop.previous_champion`` tag (moves made before the ledger existed)."""
    moves = [e for e in ledger.entries(settings, pipeline) if e.to_version == str(current.version)]
    previous = moves[-1].from_version if moves else current.tags.get(tags.PREVIOUS_CHAMPION)
    if not previous or previous == "none":
        raise RollbackRefused(f"{pipeline}: v{current.version} has no previous champion to roll back to")
    return str(previous)


def gate_record(version: ModelVersion) -> str | None:
    """Why ``version`` may not serve, or None when it passed its gates and nobody rejected it."""
    gate = version.tags.get(tags.GATE)
    approval = version.tags.get(tags.APPROVAL)
    if gate != "passed":
        return f"v{version.version} never passed its promotion gates (ctloop.gate: {gate or 'not recorded'})"
    if approval in REFUSALS:
        return f"v{version.version} passed its gates but its approval was {approval.replace('_', ' ')}"
    return None


def _version(mlflow_client: MlflowClient, pipeline: str, target: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    if not target.isdigit():
        raise RollbackRefused(f"target: {target!r} is neither {PREVIOUS!r} nor a version number")
    try:
        found: ModelVersion = mlflow_client.get_model_version(pipeline, target)
    except MlflowException as exc:
        raise RollbackRefused(f"target: {pipeline} has no version {target}") from exc
    return found


def rollback(
    settings: Settings,
    pipeline: str,
    *,
    target: str,
    reason: str,
    force: bool = False,
    user: str | None = None,
    run_key: str | None = None,
) -> RollbackOutcome:
    """Move ``champion`` to ``target`` (``previous`` or a version number); returns the ledger's
    outcome with the target's evidence. Raises :class:`RollbackRefused` saying why not."""
    if not reason.strip():
        raise RollbackRefused("reason: a rollback needs a reason, for the ledger")
    mlflow_client = registry.client(settings)
    current = registry.get_champion(mlflow_client, pipeline)
    if current is None:
        raise RollbackRefused(f"{pipeline}: there is no champion to roll back from")
    wanted = previous_champion(settings, pipeline, current) if target == PREVIOUS else target
    version = _version(mlflow_client, pipeline, wanted)
    if str(version.version) == str(current.version):
        raise RollbackRefused(f"target: v{version.version} is already the champion of {pipeline}")
    unfit = gate_record(version)
    if unfit and not force:
        raise RollbackRefused(f"target: {unfit}; force it (with a reason) to override")
    try:  # even forced: a champion whose files cannot be checked could not score
        registry.recorded_digest(version)
    except ModelIntegrityError as exc:
        raise RollbackRefused(f"target: {exc}") from exc
    evidence = {
        "reference_snapshot_sha256": version.tags.get(tags.DATA_SHA256, ""),
        "expectation_suite": version.tags.get(tags.SUITE_KEY, ""),
        "mlflow_run_id": version.run_id or "",
    }
    outcome = ledger.move_alias(
        settings,
        mlflow_client,
        pipeline,
        str(version.version),
        expected_from=str(current.version),
        action="override" if unfit else "rollback",
        reason=reason if not unfit else f"{reason} (forced: {unfit})",
        run_key=run_key,
        mlflow_run_id=version.run_id,
        user=user,
        gate_decision=version.tags.get(tags.GATE_SUMMARY, ""),
        evidence=evidence,
    )
    if not outcome.moved:
        raise RollbackRefused(f"{pipeline}: champion not moved: {outcome.why}")
    return RollbackOutcome.model_validate({**outcome.model_dump(), "evidence": evidence})
