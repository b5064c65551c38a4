"""Delivery of ctloop's notifications: a JSON POST to a webhook defined as an Airflow HTTP connection.

Built on Airflow's notifier mechanism and the HTTP provider, so one class serves as a notifier of
``ApprovalOperator``, as a DAG or task callback, and as a call from inside a task. The message
itself comes from the core (:mod:`ctloop.notifications`); importing this module installs
:func:`send` as the core's sender, which the DAG builders do at parse time. When the connection
is not defined (the default) the message is only logged. A notification never fails the work it
reports on, and never carries a secret: fields whose names Airflow's secrets masker treats as
sensitive are dropped with their values, every secret registered with the masker (the
connection's password among them) is masked, URI credentials are cut; connection extras stay out
of the message.

Imported at parse time: only Airflow's notifier base class at top level. ``HttpHook`` (requests,
tenacity) is imported when a message is sent. The provider's ``HttpNotifier`` is not the base
class for that reason: its module imports aiohttp and requests, about 0.1 s on every DAG parse.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from ctloop import notifications
from ctloop.notifications import LOGGED, SENT, check_event, strip_uri_credentials

if TYPE_CHECKING:
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk import Connection
    from airflow.sdk.definitions.context import Context

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0

# Names Airflow's list of sensitive names misses and ctloop has always dropped, matched as words
# of the field name (aws_key, keyId, db_credentials); as substrings they are too common (monkey).
_EXTRA_SECRET_WORDS = frozenset({"key", "keys", "auth", "cookie", "pw", "pwd", "credential", "credentials"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# The extras HttpHook reads as request options; it sends every other extra as a request header.
_REQUEST_OPTIONS = frozenset(
    {
        "stream",
        "cert",
        "proxies",
        "proxy",
        "timeout",
        "verify",
        "verify_ssl",
        "allow_redirects",
        "max_redirects",
        "trust_env",
        "check_response",
        "srv_lookup",
    }
)


def is_secret_key(key: str) -> bool:
    """Whether a field name looks like it holds a secret, by Airflow's rule and ctloop's few additions."""
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    words = {word.lower() for word in _WORD_SPLIT.split(key) if word}
    return bool(should_hide_value_for_key(key)) or not words.isdisjoint(_EXTRA_SECRET_WORDS)


def scrub(value: Any) -> Any:
    """``value`` (a JSON-safe message) without secret-looking fields, with registered secrets masked."""
    from airflow.sdk._shared.secrets_masker import redact

    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items() if not is_secret_key(key)}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return str(redact(value))
    return value


class CtloopNotifier(BaseNotifier):
    """Send one ctloop event to the webhook of the Airflow HTTP connection ``conn_id``.

    The connection gives the URL as Airflow's ``HttpHook`` reads it: ``schema`` is the scheme
    (http or https), ``host`` and ``port`` the server (a ``host`` holding ``://`` is the base
    URL), extra ``path`` the path. Its password, if set, is sent only as a bearer token; its
    login is not used. Other extras follow ``HttpHook``: request options (``verify``, ``proxies``,
    ``cert``) and text-valued headers. Redirects are not followed, so the token never travels to
    where a redirect points. For example ``AIRFLOW_CONN_CTLOOP_WEBHOOK='{"conn_type": "http",
    "host": "hooks.example.com", "schema": "https", "extra": {"path": "/ctloop"}}'``.

    ``pipeline``, ``conn_id``, ``fields`` and ``text`` are templated when Airflow calls the
    notifier (``notifier(context)``); :meth:`deliver` sends them as they are.
    """

    template_fields = ("pipeline", "conn_id", "fields", "text")

    def __init__(
        self,
        *,
        event: str,
        pipeline: str,
        conn_id: str,
        fields: Mapping[str, Any] | None = None,
        text: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.event = check_event(event)
        self.pipeline = pipeline
        self.conn_id = conn_id
        self.fields = dict(fields or {})
        self.text = text
        self.timeout = timeout

    def message(self, context: Context | Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body built by the core, scrubbed of secrets."""
        body = notifications.message(self.event, self.pipeline, self.fields, context, text=self.text)
        return dict(scrub(body))

    def notify(self, context: Context) -> None:
        """What Airflow calls (as a callback or an operator's notifier): deliver, never raise."""
        self.deliver(context)

    def deliver(self, context: Context | Mapping[str, Any]) -> str:
        """Deliver or log the message; returns ``"sent"``, ``"logged"`` or ``"failed: <why>"``."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        try:
            conn = BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            log.info(
                "ctloop notification logged only (connection %r is not defined): %s",
                self.conn_id,
                json.dumps(self.message(context)),
            )
            return LOGGED
        except Exception as exc:  # a broken secrets backend must not fail the promotion either
            outcome = f"failed: cannot read connection {self.conn_id!r}: {type(exc).__name__}"
            log.warning("ctloop notification %s; message: %s", outcome, json.dumps(self.message(context)))
            return outcome
        if conn.password:
            mask_secret(conn.password)
        message = self.message(context)
        hook = _webhook_hook_class()(method="POST", http_conn_id=self.conn_id)
        path = str(conn.extra_dejson.get("path") or "")
        outcome = _post(hook, conn, path, message, self.timeout)
        url = strip_uri_credentials(hook.url_from_endpoint(path))
        if outcome == SENT:
            log.info("ctloop notification %s for %s sent to %s", self.event, self.pipeline, url)
        else:
            log.warning(
                "ctloop notification %s for %s to %s %s; message: %s",
                self.event,
                self.pipeline,
                url,
                outcome,
                json.dumps(message),
            )
        return outcome


@functools.cache
def _webhook_hook_class() -> type[HttpHook]:
    """``HttpHook`` reading its connection as a webhook: without the login (the password goes only
    into the bearer header) and with only the extras HttpHook takes as request options or text
    headers; ctloop's ``path`` is the endpoint, not a header."""
    import attrs
    from airflow.providers.http.hooks.http import HttpHook

    class WebhookHook(HttpHook):
        @classmethod
        def get_connection(cls, conn_id: str) -> Connection:
            conn = super().get_connection(conn_id)
            extra = {
                key: value
                for key, value in conn.extra_dejson.items()
                if key in _REQUEST_OPTIONS or (key != "path" and isinstance(value, str))
            }
            return attrs.evolve(conn, login=None, extra=json.dumps(extra) if extra else None)

    return WebhookHook


def _post(hook: HttpHook, conn: Connection, path: str, message: dict[str, Any], timeout: float) -> str:
    """POST ``message`` as JSON; every failure becomes a ``"failed: ..."`` outcome, never an error."""
    from airflow.sdk._shared.secrets_masker import redact

    host = conn.host or ""
    scheme = (host.split("://", 1)[0] if "://" in host else conn.schema or "http").lower()
    if scheme not in ("http", "https"):
        return (
            f"failed: webhook scheme {scheme!r} is not http or https"
            " (the connection's schema is the URL scheme; put the path in extra 'path')"
        )
    headers = {"User-Agent": "ctloop-notifier"}
    if conn.password:
        headers["Authorization"] = f"Bearer {conn.password}"
    try:
        response = hook.run(
            endpoint=path,
            json=message,
            headers=headers,
            extra_options={"timeout": timeout, "allow_redirects": False, "check_response": False},
        )
    except Exception as exc:  # refused, timed out, reset, malformed response
        return f"failed: {type(exc).__name__}: {strip_uri_credentials(str(redact(str(exc))))}"
    if not 200 <= response.status_code < 300:
        return f"failed: HTTP {response.status_code}"
    return SENT


def send(
    event: str,
    pipeline: str,
    conn_id: str,
    fields: Mapping[str, Any] | None = None,
    context: Context | Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
) -> str:
    """Send one notification from inside a task; returns the outcome of :meth:`CtloopNotifier.deliver`.

    Nothing is rendered as a template here: the fields come from data and runs, and a ``{{ }}``
    inside them must stay text. Without ``context``, the running task's context is used if any.
    This is the sender the core's :func:`ctloop.notifications.emit` delivers through.
    """
    if context is None:
        context = _current_context()
    notifier = CtloopNotifier(event=event, pipeline=pipeline, conn_id=conn_id, fields=fields, text=text)
    return notifier.deliver(context)


def _current_context() -> Context | Mapping[str, Any]:
    from airflow.sdk import get_current_context

    try:
        return get_current_context()
    except RuntimeError:  # not inside a task
        return {}


notifications.install_sender(send)
