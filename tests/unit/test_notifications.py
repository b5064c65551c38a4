"""The notification message built by the core, and emit() delivering through the installed sender."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from ctloop import notifications
from ctloop.notifications import (
    APPROVAL_REQUEST,
    CIRCUIT_BREAKER,
    EVENTS,
    LOGGED,
    PROMOTION,
    REJECTION,
    ROLLBACK,
    emit,
    install_sender,
    message,
    strip_uri_credentials,
)

CONTEXT = {
    "run_id": "scheduled__2024-01-01",
    "dag_run": SimpleNamespace(dag_id="churn__train", run_id="scheduled__2024-01-01"),
}


@pytest.fixture
def recorded():
    """A sender that records its calls, installed for the test and removed after it."""
    calls = []

    def sender(event, pipeline, conn_id, fields=None, context=None, *, text=None):
        calls.append(
            {"event": event, "pipeline": pipeline, "conn_id": conn_id, "fields": fields, "text": text}
        )
        return "sent"

    previous = install_sender(sender)
    yield calls
    install_sender(previous)


@pytest.fixture
def no_sender():
    previous = install_sender(None)
    yield
    install_sender(previous)


def test_the_message_has_the_documented_keys():
    at = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    body = message(PROMOTION, "churn", {"version": "4", "previous": "3"}, CONTEXT, at=at)
    assert set(body) == {"event", "pipeline", "text", "fields", "dag_id", "run_id", "at"}
    assert body["event"] == "promotion"
    assert body["pipeline"] == "churn"
    assert body["fields"] == {"version": "4", "previous": "3"}
    assert body["dag_id"] == "churn__train"
    assert body["run_id"] == "scheduled__2024-01-01"
    assert body["at"] == "2024-01-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("event", "fields", "text"),
    [
        (
            PROMOTION,
            {"version": "4", "previous": "3"},
            "Pipeline churn: version 4 was promoted to champion (previous champion: version 3).",
        ),
        (PROMOTION, {"version": "1"}, "Pipeline churn: version 1 was promoted to champion (first champion)."),
        (
            REJECTION,
            {"version": "5", "reason": "roc_auc fell"},
            "Pipeline churn: version 5 was rejected: roc_auc fell.",
        ),
        (REJECTION, {}, "Pipeline churn: the candidate was rejected."),
        (
            ROLLBACK,
            {"version": "6", "to": "5"},
            "Pipeline churn: champion rolled back from version 6 to version 5.",
        ),
        (
            CIRCUIT_BREAKER,
            {"rejections": 3},
            "Pipeline churn: circuit breaker tripped after 3 consecutive rejections;"
            " automatic retraining is paused.",
        ),
        (
            APPROVAL_REQUEST,
            {"version": "7"},
            "Pipeline churn: version 7 passed the automatic gates and awaits approval.",
        ),
    ],
)
def test_one_readable_sentence_per_event(event, fields, text):
    assert message(event, "churn", fields)["text"] == text


def test_a_given_text_replaces_the_sentence():
    assert message(REJECTION, "churn", {"version": "5"}, text="custom words")["text"] == "custom words"


def test_without_a_run_the_identity_is_empty():
    body = message(REJECTION, "churn", {"version": "5"})
    assert body["dag_id"] is None
    assert body["run_id"] is None


def test_the_identity_is_read_from_the_task_instance_too():
    ti = SimpleNamespace(dag_id="churn__monitor", run_id="manual__1")
    body = message(CIRCUIT_BREAKER, "churn", {}, {"ti": ti})
    assert (body["dag_id"], body["run_id"]) == ("churn__monitor", "manual__1")


def test_the_message_is_json_safe_and_has_no_uri_credentials():
    fields = {
        "psi": float("nan"),
        "columns": ("a", "b"),
        "data_uri": "s3://AKIAEXAMPLE:wJalr/XUt+nFEMI@bucket/data.csv",
        "when": datetime(2024, 1, 1, tzinfo=UTC),
        "rows": 1000,
        "ok": True,
    }
    body = message(PROMOTION, "churn", fields)
    json.dumps(body, allow_nan=False)
    assert body["fields"] == {
        "psi": "nan",
        "columns": ["a", "b"],
        "data_uri": "s3://***@bucket/data.csv",
        "when": "2024-01-01 00:00:00+00:00",
        "rows": 1000,
        "ok": True,
    }


def test_unknown_event_is_refused():
    assert set(EVENTS) == {"promotion", "rejection", "rollback", "circuit_breaker", "approval_request"}
    with pytest.raises(ValueError, match="unknown notification event 'promoted'"):
        message("promoted", "churn")
    with pytest.raises(ValueError, match="unknown notification event 'promoted'"):
        emit("promoted", "churn", "ctloop_webhook")


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("s3://AKIA1:abc/def+g@bucket/k", "s3://***@bucket/k"),
        ("see https://user:pass@host/x and http://plain/y", "see https://***@host/x and http://plain/y"),
        ("https://token@host/x", "https://***@host/x"),
        ("https://host:8443/path", "https://host:8443/path"),
        ("mail bob@example.com", "mail bob@example.com"),
    ],
)
def test_uri_userinfo_is_removed(text, scrubbed):
    assert strip_uri_credentials(text) == scrubbed


def test_emit_delivers_through_the_installed_sender(recorded):
    outcome = emit(REJECTION, "churn", "ctloop_webhook", {"version": "5"}, CONTEXT, text="words")
    assert outcome == "sent"
    assert recorded == [
        {
            "event": "rejection",
            "pipeline": "churn",
            "conn_id": "ctloop_webhook",
            "fields": {"version": "5"},
            "text": "words",
        }
    ]


def test_without_a_sender_only_the_sentence_is_logged(no_sender, caplog):
    with caplog.at_level(logging.INFO, logger="ctloop.notifications"):
        outcome = emit(PROMOTION, "churn", "ctloop_webhook", {"version": "4", "api_token": "tok-abc123"})
    assert outcome == LOGGED
    [record] = [r for r in caplog.records if r.name == "ctloop.notifications"]
    assert "Pipeline churn: version 4 was promoted to champion (first champion)." in record.getMessage()
    assert "tok-abc123" not in record.getMessage()


def test_a_failing_sender_never_fails_the_caller(caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("webhook library exploded")

    previous = install_sender(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="ctloop.notifications"):
            outcome = emit(ROLLBACK, "churn", "ctloop_webhook", {"version": "6"})
    finally:
        install_sender(previous)
    assert outcome == "failed: RuntimeError"
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "ctloop.notifications")


def test_install_sender_returns_the_previous_one(no_sender):
    def sender(*args, **kwargs):
        return "sent"

    assert install_sender(sender) is notifications.log_only
    assert install_sender(None) is sender
