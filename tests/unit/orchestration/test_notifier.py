"""Notifications against a real webhook: an HTTP server on loopback, defined as an Airflow connection.

The message itself (events, sentences, fields) is tested in tests/unit/test_notifications.py."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from airflow.sdk import BaseNotifier

from ctloop import notifications
from ctloop.notifications import (
    APPROVAL_REQUEST,
    CIRCUIT_BREAKER,
    EVENTS,
    PROMOTION,
    REJECTION,
    ROLLBACK,
)
from ctloop.orchestration.notifier import CtloopNotifier, is_secret_key, send

PASSWORD = "conn-pass-9f3e71"
CONTEXT = {
    "run_id": "scheduled__2024-01-01",
    "dag_run": SimpleNamespace(dag_id="churn__train", run_id="scheduled__2024-01-01"),
}


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    """A webhook on an ephemeral loopback port; set ``status`` and ``delay`` to misbehave."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received, server.status, server.delay = [], 200, 0.0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _define_connection(monkeypatch, port: int, *, password: str | None = PASSWORD) -> str:
    """A fresh conn id defined the way a user would: an ``AIRFLOW_CONN_*`` variable (JSON form)."""
    conn_id = f"hook_{uuid.uuid4().hex[:8]}"
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
    conn["extra"] = {"path": "/ctloop", "headers": {"X-Extra-Secret": "extra-value-42"}}
    if password:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def test_webhook_receives_the_message_without_secrets(webhook, monkeypatch):
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    fields = {
        "version": "4",
        "previous": "3",
        "api_token": "tok-abc123",
        "aws_secret_access_key": "wJalrXUtnFEMI",
        "data_uri": "s3://AKIAEXAMPLE:wJalr/XUt+nFEMI@bucket/data.csv",
        "report": "https://alice:hunter2@reports.example.com/r/1",
        "nested": {"password": "p4ss", "rows": 1000},
        "note": f"someone pasted {PASSWORD} here",
    }

    outcome = send(PROMOTION, "churn", conn_id, fields, CONTEXT)

    assert outcome == "sent"
    [request] = webhook.received
    assert request["path"] == "/ctloop"
    assert request["headers"]["Authorization"] == f"Bearer {PASSWORD}"
    assert request["headers"]["Content-Type"] == "application/json"
    raw = request["body"].decode()
    for secret in (
        PASSWORD,
        "tok-abc123",
        "wJalr",
        "AKIAEXAMPLE",
        "alice",
        "hunter2",
        "p4ss",
        "extra-value-42",
    ):
        assert secret not in raw
    body = json.loads(raw)
    assert set(body) == {"event", "pipeline", "text", "fields", "dag_id", "run_id", "at"}
    assert body["event"] == "promotion"
    assert body["pipeline"] == "churn"
    assert (
        body["text"] == "Pipeline churn: version 4 was promoted to champion (previous champion: version 3)."
    )
    assert body["dag_id"] == "churn__train"
    assert body["run_id"] == "scheduled__2024-01-01"
    assert body["fields"] == {
        "version": "4",
        "previous": "3",
        "data_uri": "s3://***@bucket/data.csv",
        "report": "https://***@reports.example.com/r/1",
        "nested": {"rows": 1000},
        "note": "someone pasted *** here",
    }


def test_connection_as_uri_uses_the_airflow_http_convention(webhook, monkeypatch):
    # In an Airflow URI the path is the connection's schema, i.e. the scheme of the webhook URL.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CTLOOP_URI_HOOK", f"http://127.0.0.1:{webhook.server_port}/http?path=%2Fhook"
    )
    assert send(REJECTION, "churn", "ctloop_uri_hook", {"version": "5", "reason": "roc_auc fell"}) == "sent"
    [request] = webhook.received
    assert request["path"] == "/hook"
    assert "Authorization" not in request["headers"]
    body = json.loads(request["body"])
    assert body["text"] == "Pipeline churn: version 5 was rejected: roc_auc fell."
    assert body["dag_id"] is None
    assert body["run_id"] is None


def test_undefined_connection_only_logs(caplog):
    with caplog.at_level(logging.INFO, logger="ctloop.orchestration.notifier"):
        outcome = send(ROLLBACK, "churn", "ctloop_not_defined", {"version": "6", "to": "5"}, CONTEXT)
    assert outcome == "logged"
    [record] = [r for r in caplog.records if r.name == "ctloop.orchestration.notifier"]
    assert "logged only" in record.getMessage()
    assert "'ctloop_not_defined' is not defined" in record.getMessage()
    assert "champion rolled back from version 6 to version 5" in record.getMessage()


@pytest.mark.parametrize("status", [500, 503, 404])
def test_failing_endpoint_is_reported_not_raised(webhook, monkeypatch, caplog, status):
    webhook.status = status
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    with caplog.at_level(logging.WARNING, logger="ctloop.orchestration.notifier"):
        outcome = send(CIRCUIT_BREAKER, "churn", conn_id, {"rejections": 3}, CONTEXT)
    assert outcome == f"failed: HTTP {status}"
    [record] = [r for r in caplog.records if r.name == "ctloop.orchestration.notifier"]
    assert record.levelno == logging.WARNING
    assert f"HTTP {status}" in record.getMessage()
    assert PASSWORD not in record.getMessage()


def test_closed_port_is_reported_not_raised(monkeypatch, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn_id = _define_connection(monkeypatch, port)
    with caplog.at_level(logging.WARNING, logger="ctloop.orchestration.notifier"):
        outcome = send(PROMOTION, "churn", conn_id, {"version": "2"}, CONTEXT)
    assert outcome.startswith("failed: ")
    assert "refused" in outcome.lower()
    assert any(
        r.levelno == logging.WARNING for r in caplog.records if r.name == "ctloop.orchestration.notifier"
    )


def test_slow_endpoint_times_out(webhook, monkeypatch):
    webhook.delay = 1.0
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    notifier = CtloopNotifier(event=PROMOTION, pipeline="churn", conn_id=conn_id, timeout=0.2)
    started = time.monotonic()
    outcome = notifier.deliver(CONTEXT)
    assert outcome.startswith("failed: ")
    assert "timed out" in outcome
    assert time.monotonic() - started < 1.0


def test_redirects_are_not_followed_with_the_token(webhook, monkeypatch):
    webhook.status = 307
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    assert send(PROMOTION, "churn", conn_id, {"version": "2"}, CONTEXT) == "failed: HTTP 307"
    assert [r["path"] for r in webhook.received] == ["/ctloop"]


def test_works_as_an_airflow_notifier_with_templates(webhook, monkeypatch):
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    notifier = CtloopNotifier(
        event=APPROVAL_REQUEST,
        pipeline="churn",
        conn_id="{{ params.conn }}",
        fields={"version": "{{ params.version }}", "approve_in": "{{ run_id }}"},
    )
    assert isinstance(notifier, BaseNotifier)

    notifier({**CONTEXT, "params": {"conn": conn_id, "version": "7"}})  # how ApprovalOperator calls it

    [request] = webhook.received
    body = json.loads(request["body"])
    assert body["event"] == "approval_request"
    assert body["fields"] == {"version": "7", "approve_in": "scheduled__2024-01-01"}
    assert body["text"] == "Pipeline churn: version 7 passed the automatic gates and awaits approval."


def test_send_does_not_render_templates_in_data(webhook, monkeypatch):
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    send(REJECTION, "churn", conn_id, {"reason": "{{ conn }} {{ 7 * 7 }}"}, CONTEXT)
    assert json.loads(webhook.received[0]["body"])["fields"]["reason"] == "{{ conn }} {{ 7 * 7 }}"


def test_unknown_event_is_refused_eagerly():
    assert set(EVENTS) == {"promotion", "rejection", "rollback", "circuit_breaker", "approval_request"}
    with pytest.raises(ValueError, match="unknown notification event 'promoted'"):
        CtloopNotifier(event="promoted", pipeline="churn", conn_id="x")


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_passwd", True),
        ("clientSecret", True),
        ("api_token", True),
        ("api_key", True),
        ("apiKey", True),
        ("Authorization", True),
        ("credentials", True),
        ("version", False),
        ("monkey", False),
        ("author", False),
        ("report_uri", False),
    ],
)
def test_secret_looking_keys(key, secret):
    assert is_secret_key(key) is secret


def test_the_core_emits_through_the_webhook(webhook, monkeypatch):
    conn_id = _define_connection(monkeypatch, webhook.server_port)
    assert notifications.emit(PROMOTION, "churn", conn_id, {"version": "4"}, CONTEXT) == "sent"
    [request] = webhook.received
    body = json.loads(request["body"])
    assert body["text"] == "Pipeline churn: version 4 was promoted to champion (first champion)."
    assert body["run_id"] == "scheduled__2024-01-01"


def test_the_login_is_never_sent_only_the_bearer_token(webhook, monkeypatch):
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": webhook.server_port, "login": "alice"}
    conn.update(password=PASSWORD, extra={"path": "/ctloop", "X-Team": "ml"})
    monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_LOGIN_HOOK", json.dumps(conn))
    assert send(PROMOTION, "churn", "ctloop_login_hook", {"version": "2"}, CONTEXT) == "sent"
    [request] = webhook.received
    assert request["headers"]["Authorization"] == f"Bearer {PASSWORD}"
    assert request["headers"]["X-Team"] == "ml"  # a text extra is a header, as HttpHook has it
    assert "path" not in {name.lower() for name in request["headers"]}


def test_a_wrong_scheme_is_reported_with_a_hint(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CTLOOP_SCHEME_HOOK", "https://hooks.example.com/ctloop")
    outcome = send(PROMOTION, "churn", "ctloop_scheme_hook", {"version": "2"}, CONTEXT)
    assert outcome.startswith("failed: webhook scheme 'ctloop' is not http or https")
