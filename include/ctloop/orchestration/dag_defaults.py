"""What every ctloop DAG shares, written once: its id, start date, retries, no catch-up, one run at a
time, the spec's owner and tags. The DAG builders add only what differs (schedule, Params)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctloop.spec.models import PipelineSpec

START_DATE = datetime(2026, 1, 1)
# Transient failures (a busy database, a slow S3) are retried; bad data or a bad spec fail at once
# (see ctloop.orchestration.run_context.fail_without_retry).
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True}


def dag_args(spec: PipelineSpec, family: str, *, description: str, **extra: Any) -> dict[str, Any]:
    """The ``@dag`` arguments of ``<pipeline>__<family>`` (train, score, monitor, rollback,
    housekeeping) but its ``schedule``, which each DAG passes itself; ``extra`` (``params``,
    ``doc_md``) adds to them."""
    return {
        "dag_id": f"{spec.name}__{family}",
        "description": description,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {**DEFAULT_ARGS, "owner": spec.owner},
        "tags": ["ctloop", family, *spec.tags],
        **extra,
    }
