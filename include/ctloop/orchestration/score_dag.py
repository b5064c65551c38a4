"""``<pipeline>__score``: score each new production batch once with the champion; join late labels.

Each batch is claimed by a mapped task (``claim_batch``: hashed, reserved, its parts planned), the
parts of every claimed batch are scored by one flat list of mapped tasks (``score_part``, in
parallel on the Celery workers: one part unless the batch has more than ``scoring.fan_out_rows``
rows), and each batch is published by a mapped task (``score_batch``: its verdict, its partition,
the predictions asset), so one bad batch fails (and is quarantined) alone while the others are
scored. ``list_parts`` and ``score_batch`` run once their upstream tasks are done, whatever their
state: a batch whose claim failed (a conflict) has no parts and its ``score_batch`` fails with
it, the others go on; a batch one of whose parts failed (not the batch's fault: its model or the
registry) is not published and stays reserved for the next run. Label joining runs beside
scoring, not after it, so a quarantined batch still fails the DAG run; a bad label file is set
aside, the others are joined, and ``join_labels`` fails naming it (ctloop.scoring.late_labels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from airflow.sdk import dag, task

from ctloop.orchestration.assets import predictions_asset
from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.scoring.batches import Batch, Claim, Part
    from ctloop.spec.models import PipelineSpec


class Claimed(TypedDict):
    """A batch's claim and, when nothing is left to score (a duplicate), the batch's result."""

    claim: Claim
    done: dict | None


class Work(TypedDict):
    """One part of a claimed batch, as ``score_part`` receives it."""

    claim: Claim
    part: Part


def build_score_dag(spec: PipelineSpec) -> DAG:
    """The scoring DAG of one pipeline; the work is in ctloop.scoring."""

    @task(task_id="find_batches")
    @ctloop_task(spec)
    def find_batches(run: TaskRun) -> list[Batch]:
        from ctloop.scoring.batches import new_batches

        return new_batches(run.spec, run.settings)

    @task(task_id="claim_batch", multiple_outputs=False, map_index_template="{{ batch.batch_id }}")
    @ctloop_task(spec)
    def claim_batch(run: TaskRun, batch: Batch) -> Claimed:
        from ctloop.scoring import batches as scoring

        claim, done = scoring.claim_batch(run.spec, run.settings, batch)
        return {"claim": claim, "done": done}

    @task(task_id="list_parts", trigger_rule="all_done")
    @ctloop_task(spec)
    def list_parts(run: TaskRun, claimed: list[Claimed]) -> list[Work]:
        from ctloop.scoring import batches as scoring

        return [
            {"claim": c["claim"], "part": part}
            for c in claimed
            if c["done"] is None
            for part in scoring.parts(c["claim"])
        ]

    @task(
        task_id="score_part",
        multiple_outputs=False,
        map_index_template=(
            "{{ work.claim.batch.batch_id }} part {{ work.part.index + 1 }}/{{ work.part.count }}"
        ),
    )
    @ctloop_task(spec)
    def score_part(run: TaskRun, work: Work) -> dict:
        from ctloop.scoring import batches as scoring

        source = work["claim"]["source"]
        result = scoring.score_part(run.spec, run.settings, work["claim"], work["part"])
        return {"batch_id": source["batch_id"], "sha256": source["sha256"], "result": result}

    @task(
        task_id="score_batch",
        trigger_rule="all_done",
        multiple_outputs=False,
        outlets=[predictions_asset(spec.name)],
        map_index_template="{{ batch.batch_id }}",
    )
    @ctloop_task(spec)
    def score_batch(run: TaskRun, batch: Batch, claims: list[Claimed], scored: list[dict]) -> dict:
        """Publish one batch from its parts' results (a duplicate's result passes through), or fail
        with it when its claim failed; a part that did not finish leaves the batch reserved, not
        scored, for the next run."""
        from ctloop.errors import CtloopError
        from ctloop.scoring import batches as scoring

        claimed = next((c for c in claims if c["claim"]["batch"]["key"] == batch["key"]), None)
        if claimed is None:
            raise CtloopError(
                f"{batch['uri']}: not scored: its claim failed (claim_batch {batch['batch_id']})"
            )
        if claimed["done"] is not None:
            return claimed["done"]
        source = claimed["claim"]["source"]
        mine = [
            s["result"]
            for s in scored
            if (s["batch_id"], s["sha256"]) == (source["batch_id"], source["sha256"])
        ]
        return scoring.publish(run.spec, run.settings, claimed["claim"], mine)

    @task(task_id="join_labels")
    @ctloop_task(spec)
    def join_labels(run: TaskRun) -> dict:
        from ctloop.scoring.late_labels import join_labels as join

        return join(run.spec, run.settings)

    @dag(
        schedule=spec.schedule.score,
        **dag_args(
            spec,
            "score",
            description=f"Score new production batches of {spec.name} with the champion; join late labels.",
            doc_md=__doc__,
        ),
    )
    def score_pipeline() -> None:
        found = find_batches()
        claimed = claim_batch.expand(batch=found)
        scored = score_part.expand(work=list_parts(claimed))
        score_batch.partial(claims=claimed, scored=scored).expand(batch=found)
        join_labels()

    return score_pipeline()
