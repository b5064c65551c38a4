"""Notifications of promotions, rejections, rollbacks, breaker trips and approval requests.

Built on Airflow's notifier mechanism, so one class serves as a notifier of ``ApprovalOperator``,
as a DAG or task callback, and as a call from inside a task. Delivery is a JSON POST to the
webhook of an Airflow HTTP connection; when that connection is not defined (the default) the
message is only logged. A notification never fails the work it reports on, and never carries a
secret: secret-looking keys are dropped, URI credentials are cut, connection extras stay out.

Imported by DAG-building code at parse time: only the standard library and Airflow's notifier
base class at top level.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

log = logging.getLogger(__name__)

PROMOTION = "promotion"
REJECTION = "rejection"
ROLLBACK = "rollback"
CIRCUIT_BREAKER = "circuit_breaker"
APPROVAL_REQUEST = "approval_request"
EVENTS = (PROMOTION, REJECTION, ROLLBACK, CIRCUIT_BREAKER, APPROVAL_REQUEST)

TIMEOUT_SECONDS = 10.0
SENT, LOGGED = "sent", "logged"

# A field whose name contains one of these, or has one of the words as a whole word (api_key,
# keyId), is dropped with its value; as substrings the words are too common (monkey, author).
_SECRET_SUBSTRINGS = re.compile(r"passw|pwd|secret|token|credential|authori[sz]ation|apikey|accesskey", re.I)
_SECRET_WORDS = frozenset({"key", "keys", "auth", "cookie", "pw"})
# scheme://user:password@ (a password may hold "/", as AWS secret keys do) or scheme://user@
_URI_USERINFO = re.compile(r"\b([a-z][a-z0-9+.\-]*://)(?:[^\s@/?#]*:[^\s@]*|[^\s@/?#:]+)@", re.I)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """Whether a field name looks like it holds a secret."""
    words = {w.lower() for w in _WORD_SPLIT.split(str(key)) if w}
    return bool(_SECRET_SUBSTRINGS.search(str(key)) or words & _SECRET_WORDS)


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URI userinfo replaced by ``***`` and every known secret value cut out."""
    text = _URI_USERINFO.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def scrub(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A JSON-safe copy of ``value`` without secret-looking keys, URI credentials or ``secrets``."""
    if isinstance(value, dict):
        return {str(k): scrub(v, secrets) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return scrub_text(str(value), secrets)


def _sentence(event: str, pipeline: str, fields: dict) -> str:
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


def _run_identity(context: Context | dict) -> tuple[str | None, str | None]:
    """The dag id and run id of the run a notification comes from, when the context has them."""
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag_id = next((o.dag_id for o in (context.get("dag"), dag_run, ti) if getattr(o, "dag_id", None)), None)
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None)
    return dag_id, run_id


class _NotDefined(Exception):
    """The connection does not exist: the default, so the message is only logged."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would replay the Authorization header to wherever they point."""

    def redirect_request(self, req, fp, code, msg, headers, newurl) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class CtloopNotifier(BaseNotifier):
    """Send one ctloop event to the webhook of the Airflow HTTP connection ``conn_id``.

    The connection gives the URL: ``schema`` is the scheme (http or https), ``host`` and
    ``port`` the server, extra ``path`` the path (a ``host`` holding ``://`` is taken as the
    base URL, as Airflow's HttpHook does). Its password, if set, is sent only as a bearer token.
    For example ``AIRFLOW_CONN_CTLOOP_WEBHOOK='{"conn_type": "http", "host": "hooks.example.com",
    "schema": "https", "extra": {"path": "/ctloop"}}'``.

    ``pipeline``, ``conn_id``, ``fields`` and ``text`` are templated when Airflow calls the
    notifier (``notifier(context)``); :meth:`notify` sends them as they are.
    """

    template_fields = ("pipeline", "conn_id", "fields", "text")

    def __init__(
        self,
        *,
        event: str,
        pipeline: str,
        conn_id: str,
        fields: dict[str, Any] | None = None,
        text: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}; use one of {', '.join(EVENTS)}")
        super().__init__()
        self.event = event
        self.pipeline = pipeline
        self.conn_id = conn_id
        self.fields = fields or {}
        self.text = text
        self.timeout = timeout

    def message(self, context: Context | dict, secrets: tuple[str, ...] = ()) -> dict:
        """The JSON body: event, pipeline, a sentence, the scrubbed fields and the run it is from."""
        fields = dict(self.fields or {})
        dag_id, run_id = _run_identity(context)
        return scrub(
            {
                "event": self.event,
                "pipeline": self.pipeline,
                "text": self.text or _sentence(self.event, self.pipeline, fields),
                "fields": fields,
                "dag_id": dag_id,
                "run_id": run_id,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            secrets,
        )

    def notify(self, context: Context | dict) -> str:
        """Deliver or log the message; returns ``"sent"``, ``"logged"`` or ``"failed: <why>"``."""
        try:
            webhook = _webhook(self.conn_id)
        except _NotDefined:
            message = self.message(context)
            log.info(
                "ctloop notification logged only (connection %r is not defined): %s",
                self.conn_id,
                json.dumps(message),
            )
            return LOGGED
        except Exception as exc:  # a broken secrets backend must not fail the promotion either
            message = self.message(context)
            outcome = f"failed: cannot read connection {self.conn_id!r}: {type(exc).__name__}"
            log.warning("ctloop notification %s; message: %s", outcome, json.dumps(message))
            return outcome
        url, password = webhook
        message = self.message(context, secrets=(password,) if password else ())
        outcome = _post(url, message, password, self.timeout)
        if outcome == SENT:
            log.info("ctloop notification %s for %s sent to %s", self.event, self.pipeline, scrub_text(url))
        else:
            log.warning(
                "ctloop notification %s for %s to %s %s; message: %s",
                self.event,
                self.pipeline,
                scrub_text(url),
                outcome,
                json.dumps(message),
            )
        return outcome


def _webhook(conn_id: str) -> tuple[str, str | None]:
    """The webhook URL and bearer token of ``conn_id``; :class:`_NotDefined` when there is none."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException as exc:
        raise _NotDefined(conn_id) from exc
    host = conn.host or ""
    if "://" in host:
        base = host
    else:
        base = f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else "")
    path = str(conn.extra_dejson.get("path") or "")
    url = f"{base.rstrip('/')}/{path.lstrip('/')}" if path else base
    return url, conn.password or None


def _post(url: str, message: dict, password: str | None, timeout: float) -> str:
    """POST ``message`` as JSON; every failure becomes a ``"failed: ..."`` outcome, never an error."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        return (
            f"failed: webhook scheme {scheme!r} is not http or https"
            " (the connection's schema is the URL scheme; put the path in extra 'path')"
        )
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ctloop-notifier"},
    )
    if password:
        request.add_header("Authorization", f"Bearer {password}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"failed: HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return f"failed: {scrub_text(str(exc.reason), (password or '',))}"
    except Exception as exc:  # timeouts, resets, malformed responses
        return f"failed: {type(exc).__name__}: {scrub_text(str(exc), (password or '',))}"
    return SENT


def send(
    event: str,
    pipeline: str,
    conn_id: str,
    fields: dict[str, Any] | None = None,
    context: Context | dict | None = None,
    *,
    text: str | None = None,
) -> str:
    """Send one notification from inside a task; returns the outcome of :meth:`CtloopNotifier.notify`.

    Nothing is rendered as a template here: the fields come from data and runs, and a ``{{ }}``
    inside them must stay text. Without ``context``, the running task's context is used if any.
    """
    if context is None:
        context = _current_context()
    return CtloopNotifier(event=event, pipeline=pipeline, conn_id=conn_id, fields=fields, text=text).notify(
        context
    )


def _current_context() -> Context | dict:
    from airflow.sdk import get_current_context

    try:
        return get_current_context()
    except RuntimeError:  # not inside a task
        return {}
