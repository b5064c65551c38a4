"""Notifications of promotions, rejections, rollbacks, breaker trips and approval requests: what
they say, apart from how they travel.

The core knows when something is worth telling and what to say: the event names, one readable
sentence, and the JSON message built from the fields. It does not know where a message goes.
Delivery needs Airflow: the webhook URL and its token live in an Airflow Connection, and
Airflow's secret masker keeps registered secrets out of the message. The core must not import
Airflow, so the orchestration layer installs a sender when it is imported
(:mod:`ctloop.orchestration.notifier`), the way a logging handler is attached to a logger: the
code that emits does not change with the destination. Without a sender (a unit test, a script
outside Airflow) an event is only logged, by its sentence: the fields stay out of that log, as
nothing here can tell a secret-looking field from another.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from ctloop import clock

log = logging.getLogger(__name__)

PROMOTION = "promotion"
REJECTION = "rejection"
ROLLBACK = "rollback"
CIRCUIT_BREAKER = "circuit_breaker"
APPROVAL_REQUEST = "approval_request"
EVENTS = (PROMOTION, REJECTION, ROLLBACK, CIRCUIT_BREAKER, APPROVAL_REQUEST)

SENT, LOGGED = "sent", "logged"

# scheme://user:password@ (a password may hold "/", as AWS secret keys do) or scheme://user@
_URI_USERINFO = re.compile(r"\b([a-z][a-z0-9+.\-]*://)(?:[^\s@/?#]*:[^\s@]*|[^\s@/?#:]+)@", re.I)


class Sender(Protocol):
    """Delivers one event; returns ``"sent"``, ``"logged"`` or ``"failed: <why>"`` and never raises."""

    def __call__(
        self,
        event: str,
        pipeline: str,
        conn_id: str,
        fields: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        text: str | None = None,
    ) -> str: ...


def check_event(event: str) -> str:
    """``event`` if it is one of :data:`EVENTS`; a misspelt event is a bug, so it raises."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; use one of {', '.join(EVENTS)}")
    return event


def strip_uri_credentials(text: str) -> str:
    """``text`` with the userinfo of every URI in it (``scheme://user:password@``) replaced by ``***``."""
    return _URI_USERINFO.sub(r"\1***@", text)


def sentence(event: str, pipeline: str, fields: Mapping[str, Any]) -> str:
    """One readable sentence for the event, from the fields a caller usually passes."""
    version = fields.get("version")
    candidate = f"version {version}" if version is not None else "the candidate"
    reason = fields.get("reason")
    because = f": {reason}" if reason else ""
    if event == PROMOTION:
        previous = fields.get("previous")
        was = f" (previous champion: version {previous})" if previous else " (first champion)"
        return f"Pipeline {pipeline}: {candidate} was promoted to champion{was}."
    if event == REJECTION:
        return f"Pipeline {pipeline}: {candidate} was rejected{because}."
    if event == ROLLBACK:
        target = fields.get("to") or fields.get("previous")
        to = f" to version {target}" if target else ""
        return f"Pipeline {pipeline}: champion rolled back from {candidate}{to}{because}."
    if event == CIRCUIT_BREAKER:
        count = fields.get("rejections")
        after = f" after {count} consecutive rejections" if count is not None else ""
        return (
            f"Pipeline {pipeline}: circuit breaker tripped{after}; automatic retraining is paused{because}."
        )
    return f"Pipeline {pipeline}: {candidate} passed the automatic gates and awaits approval{because}."


def run_identity(context: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The dag id and run id of the run a notification comes from, when the context has them."""
    context = context or {}
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    owners = (context.get("dag"), dag_run, ti)
    dag_id = next((getattr(o, "dag_id", None) for o in owners if getattr(o, "dag_id", None)), None)
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None)
    return dag_id, run_id


def message(
    event: str,
    pipeline: str,
    fields: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The JSON body: event, pipeline, a sentence, the fields and the run it is from.

    JSON-safe (a non-finite float becomes text, a tuple or set a list) and without URI
    credentials; dropping secret-looking fields and masking known secrets is the sender's part.
    """
    fields = dict(fields or {})
    dag_id, run_id = run_identity(context)
    body = {
        "event": check_event(event),
        "pipeline": pipeline,
        "text": text or sentence(event, pipeline, fields),
        "fields": fields,
        "dag_id": dag_id,
        "run_id": run_id,
        "at": (at or clock.now()).isoformat(timespec="seconds"),
    }
    safe: dict[str, Any] = _json_safe(body)
    return safe


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return strip_uri_credentials(str(value))


def log_only(
    event: str,
    pipeline: str,
    conn_id: str,
    fields: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
) -> str:
    """The default sender: log the event's sentence (not its fields) and return ``"logged"``."""
    body = message(event, pipeline, fields, context, text=text)
    log.info("ctloop notification %s (no sender installed for %r): %s", event, conn_id, body["text"])
    return LOGGED


_sender: Sender = log_only


def install_sender(sender: Sender | None) -> Sender:
    """Make ``sender`` deliver every :func:`emit` (``None``: logging only); returns the previous one."""
    global _sender
    previous, _sender = _sender, sender or log_only
    return previous


def emit(
    event: str,
    pipeline: str,
    conn_id: str,
    fields: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
) -> str:
    """Hand one event to the installed sender; returns its outcome (``"sent"``, ``"logged"``,
    ``"failed: <why>"``).

    ``conn_id`` names where it goes (the pipeline's ``notifications.conn_id``); ``context`` is the
    task's, when the caller has it. A notification never fails the work it reports on: a sender
    that raises is logged and reported as failed. An unknown ``event`` is a bug and raises.
    """
    check_event(event)
    try:
        return _sender(event, pipeline, conn_id, fields, context, text=text)
    except Exception as exc:
        outcome = f"failed: {type(exc).__name__}"
        log.warning("ctloop notification %s for %s %s", event, pipeline, outcome)
        return outcome
