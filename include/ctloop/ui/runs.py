"""Airflow's side: the latest runs of a pipeline's DAGs, read from the metadata DB, and starting
a run the way Airflow's own ``POST /api/v2/dags/{dag_id}/dagRuns`` does.

Only ever imported in the API server, where Airflow's ORM session is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from airflow.models.dagbag import DBDagBag
    from fastapi import Request


@dataclass(frozen=True)
class Run:
    """One DAG run, as a page shows it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    run_after: datetime
    end_date: datetime | None
    triggered_by: str | None


def latest_runs(dag_ids: list[str]) -> dict[str, Run | None]:
    """The newest run of each DAG (None for a DAG that never ran)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    newest = select(func.max(DagRun.id)).where(DagRun.dag_id.in_(dag_ids)).group_by(DagRun.dag_id)
    with create_session() as session:
        rows = session.scalars(select(DagRun).where(DagRun.id.in_(newest))).all()
        found = {row.dag_id: _run(row) for row in rows}
    return {dag_id: found.get(dag_id) for dag_id in dag_ids}


def find_run(dag_id: str, run_id: str) -> Run | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        return _run(row) if row else None


def _run(row) -> Run:
    return Run(
        dag_id=row.dag_id,
        run_id=row.run_id,
        state=str(getattr(row.state, "value", row.state)),
        run_type=str(getattr(row.run_type, "value", row.run_type)),
        run_after=row.run_after,
        end_date=row.end_date,
        triggered_by=row.triggering_user_name,
    )


@dataclass(frozen=True)
class WaitingApproval:
    """A task of ``dag_id`` that asks a person and waits (Airflow's human-in-the-loop request)."""

    dag_id: str
    run_id: str
    task_id: str
    subject: str
    asked_at: datetime


def waiting_approvals(dag_id: str) -> list[WaitingApproval]:
    """The approvals ``dag_id``'s runs wait for now, oldest first: unanswered, the task parked for
    input (Airflow 3.3's ``awaiting_input``; deferred in releases that parked HITL tasks that way)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    query = (
        select(TaskInstance.run_id, TaskInstance.task_id, HITLDetail.subject, HITLDetail.created_at)
        .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
        .where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.state.in_([TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED]),
            HITLDetail.responded_at.is_(None),
        )
        .order_by(HITLDetail.created_at)
    )
    with create_session() as session:
        return [WaitingApproval(dag_id, *row) for row in session.execute(query).all()]


def is_paused(dag_id: str) -> bool | None:
    """Whether the DAG is paused; None if Airflow does not know it (not parsed yet)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))


def trigger(
    dag_bag: DBDagBag,
    request: Request,
    user: BaseUser,
    dag_id: str,
    conf: dict,
    note: str,
    run_id: str | None = None,
) -> str:
    """Start a manual run of ``dag_id`` as ``user`` (named ``run_id`` when given); returns its run id.

    Delegates to the handler of Airflow's public trigger endpoint, so the run gets the same checks
    (stale DAG, import errors, allowed run types, the DAG's Params) and records the user the same
    way. The caller has checked the permission to trigger it.
    """
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run
    from airflow.utils.session import create_session

    body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=conf, note=note)
    with create_session() as session:
        run = trigger_dag_run(
            dag_id=dag_id, body=body, dag_bag=dag_bag, user=user, session=session, request=request
        )
        # The handler returns the ORM DagRun (FastAPI serialises it into its annotated DAGRunResponse).
        return run.run_id  # type: ignore[attr-defined]
