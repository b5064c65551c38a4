"""Attempts of one Airflow training run, and versions nobody will judge any more.

Clearing an Airflow run re-runs it under the same run id, so under the same ``run_key``. A retry
on the same snapshot and spec finds the MLflow run and the version its earlier try made (tasks are
transactions). A re-run on another snapshot or spec is another training: MLflow refuses to change
a logged param, and the earlier candidate was never judged against this data. So it opens a new
MLflow run, attempt N+1 (tag ``ctloop.attempt``). The attempt it replaces is tagged superseded on
its run and on the version it registered; that version, unless it had already been decided (gate
verdict and promotion recorded, or champion), is abandoned: ``ctloop.gate`` becomes ``abandoned``
with the reason in ``ctloop.abandoned``, so rollback refuses it, its tasks refuse to judge or
promote it, and nobody waits for it.

A version whose run ended before its gate judged it (a failed task, a deleted or killed MLflow
run) is abandoned too, by its run's last task or by the next training of the pipeline; unlike a
superseded one, clearing the failed tasks of its own run takes it up again.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ctloop.errors import RunSuperseded
from ctloop.registry import challenger, tags
from ctloop.registry import mlflow_store as registry

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

PENDING, ABANDONED = "pending", "abandoned"
IDENTITY = (tags.DATA_SHA256, tags.SPEC_SHA256)  # what an attempt trains on: other values, other attempt
ENDED = ("FAILED", "KILLED")  # statuses of an MLflow run that will judge nothing more


class Attempt(BaseModel):
    """The MLflow run this attempt of an Airflow run works in; ``replaced``: the run of the
    attempt it superseded, if it started a new one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    number: int
    replaced: str | None = None


def spec_sha256(spec: PipelineSpec) -> str:
    """The digest of the spec a run trains by (with the run's trigger-form choices applied)."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def number(run: Run) -> int:
    """Which attempt of its Airflow run ``run`` is; runs from before attempts were counted are 1."""
    return int(run.data.tags.get(tags.ATTEMPT, "1"))


def latest_run(mlflow_client: MlflowClient, experiment_id: str, run_key: str) -> Run | None:
    """The MLflow run of the latest attempt of an Airflow run, deleted or not, or None."""
    from mlflow.entities import ViewType

    found = f"tags.`{tags.RUN_KEY}` = '{run_key}'"
    runs = mlflow_client.search_runs([experiment_id], found, run_view_type=ViewType.ALL)
    return max(runs, key=number) if runs else None


def _live(run: Run) -> bool:
    """Whether ``run`` is an attempt still in force: neither deleted nor superseded."""
    return run.info.lifecycle_stage == "active" and tags.SUPERSEDED_BY not in run.data.tags


def open_attempt(
    settings: Settings,
    mlflow_client: MlflowClient,
    experiment_id: str,
    run_key: str,
    run_tags: dict[str, str],
) -> Attempt:
    """The MLflow run of this attempt of ``run_key``: the latest one if it is still there and
    trains on the same data and spec (``run_tags`` hold them), else a new one superseding it."""
    latest = latest_run(mlflow_client, experiment_id, run_key)
    same = latest is not None and all(latest.data.tags.get(k) == run_tags.get(k) for k in IDENTITY)
    if latest is not None and same and _live(latest):
        if latest.info.status != "RUNNING":  # a retry after the run ended: it is working again
            mlflow_client.update_run(latest.info.run_id, status="RUNNING")
        return Attempt(run_id=latest.info.run_id, number=number(latest))
    count = number(latest) + 1 if latest is not None else 1
    run = mlflow_client.create_run(
        experiment_id,
        tags={**run_tags, tags.RUN_KEY: run_key, tags.ATTEMPT: str(count)},
        run_name=run_key if count == 1 else f"{run_key} attempt {count}",
    )
    if latest is None or not _live(latest):
        return Attempt(run_id=run.info.run_id, number=count)
    changed = " and ".join(
        k.removeprefix("ctloop.") for k in IDENTITY if latest.data.tags.get(k) != run_tags.get(k)
    )
    why = (
        f"superseded by attempt {count} of the same Airflow run {run_key} (MLflow run {run.info.run_id}):"
        f" the re-run's {changed} differ from this attempt's"
    )
    _supersede(settings, mlflow_client, latest, why)
    return Attempt(run_id=run.info.run_id, number=count, replaced=latest.info.run_id)


def _supersede(settings: Settings, mlflow_client: MlflowClient, run: Run, why: str) -> None:
    """Tag the replaced attempt's run and version; end the run and abandon the version unless the
    attempt had been decided (its promotion recorded)."""
    run_id, run_tags = run.info.run_id, run.data.tags
    mlflow_client.set_tag(run_id, tags.SUPERSEDED_BY, why)
    decided = tags.PROMOTION in run_tags
    if not decided and run.info.status not in ENDED:
        mlflow_client.set_terminated(run_id, "KILLED")
    pipeline = run_tags.get(tags.PIPELINE, "")
    version = registry.version_of_run(mlflow_client, pipeline, run_tags[tags.RUN_KEY], run_id)
    if version is None:
        return
    mlflow_client.set_model_version_tag(pipeline, version, tags.SUPERSEDED_BY, why)
    if not decided:
        abandon(settings, mlflow_client, pipeline, version, f"abandoned: {why}")


def abandon(settings: Settings, mlflow_client: MlflowClient, pipeline: str, version: str, why: str) -> bool:
    """Mark ``version`` as never to be judged (``ctloop.gate`` ``abandoned``, ``why`` recorded)
    and release ``challenger`` from it; the champion is never abandoned. Whether it was marked."""
    champion = registry.get_champion(mlflow_client, pipeline)
    if champion is not None and str(champion.version) == version:
        return False
    mlflow_client.set_model_version_tag(pipeline, version, tags.GATE, ABANDONED)
    mlflow_client.set_model_version_tag(pipeline, version, tags.ABANDONED, why[: tags.TAG_VALUE_CHARS])
    challenger.release(settings, pipeline, version, why)
    return True


def take_up(mlflow_client: MlflowClient, pipeline: str, version: str) -> None:
    """Let a retried task of this version's own attempt register, judge or promote it: refused
    when a later attempt superseded it; an abandonment for an ended run is lifted."""
    version_tags = mlflow_client.get_model_version(pipeline, version).tags
    if tags.SUPERSEDED_BY in version_tags:
        raise RunSuperseded(
            f"{pipeline} v{version} will not be judged or promoted: {version_tags[tags.SUPERSEDED_BY]}"
        )
    if tags.ABANDONED in version_tags:
        mlflow_client.delete_model_version_tag(pipeline, version, tags.ABANDONED)


def settle_orphans(settings: Settings, mlflow_client: MlflowClient, pipeline: str) -> list[str]:
    """Abandon every version of ``pipeline`` still waiting for its gate whose MLflow run is gone
    (deleted) or ended FAILED or KILLED; returns their numbers."""
    from mlflow.exceptions import MlflowException

    waiting = mlflow_client.search_model_versions(f"name = '{pipeline}' and tags.`{tags.GATE}` = '{PENDING}'")
    settled = []
    for version in waiting:
        try:
            run = mlflow_client.get_run(str(version.run_id))
            state = "deleted" if run.info.lifecycle_stage == "deleted" else run.info.status
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            state = "deleted"
        if state != "deleted" and state not in ENDED:
            continue
        why = f"abandoned: its MLflow run {version.run_id} was {state.lower()} before its gate judged it"
        if abandon(settings, mlflow_client, pipeline, str(version.version), why):
            settled.append(str(version.version))
    return settled
