"""What the train steps need from an Airflow task's context, and how their errors fail a task."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from ctloop.errors import CtloopError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from ctloop.train_steps import RunContext


def run_context(context: Context) -> RunContext:
    """The run's identity and reason: ``schedule`` for scheduled runs, the ``reason`` Param otherwise."""
    from ctloop.train_steps import RunContext

    dag_run = context["dag_run"]
    params = context["params"]
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    reason = "schedule" if run_type == "scheduled" else str(params.get("reason") or "manual")
    return RunContext(
        dag_id=dag_run.dag_id, run_id=dag_run.run_id, reason=reason, note=str(params.get("note") or "")
    )


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Bad data or a bad spec will not get better on retry: fail the task at once, keep the message."""
    try:
        yield
    except CtloopError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
