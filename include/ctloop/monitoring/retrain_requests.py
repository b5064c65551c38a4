"""The retrain ledger: one record per retraining, from the alert that asked for it to its outcome.

The monitor opens a request (or, while one is open or running, attaches its reason to it, so
five alerts make one retrain). Every training run claims the open request, or records its own
(schedule, manual, external alert), and closes it with the gate's outcome. Cooldown and the
circuit breaker read their facts from here. Changes happen under a per-pipeline lock.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctloop import clock
from ctloop.io.locks import pipeline_lock
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings

OPEN, RUNNING, CLOSED = "open", "running", "closed"
REJECTED, PROMOTED = "rejected", "promoted"


def _prefix(pipeline: str) -> str:
    return f"retrain/{pipeline}/requests"


def _now() -> str:
    return clock.now().isoformat(timespec="microseconds")


def all_requests(storage: Storage, pipeline: str) -> list[dict[str, Any]]:
    """Every request of the pipeline, oldest first."""
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(_prefix(pipeline))]


def _save(storage: Storage, request: dict[str, Any]) -> dict[str, Any]:
    storage.write_bytes(f"{_prefix(request['pipeline'])}/{request['id']}.json", json.dumps(request).encode())
    return request


def _new(pipeline: str, state: str, reason: dict[str, Any]) -> dict[str, Any]:
    opened = _now()
    stamp = opened.replace(":", "").replace("-", "").replace(".", "").replace("+0000", "Z")
    return {
        "id": f"{stamp}-{uuid.uuid4().hex[:8]}",
        "pipeline": pipeline,
        "state": state,
        "opened_at": opened,
        "reasons": [reason],
        "claimed_by": None,
        "claimed_at": None,
        "closed_at": None,
        "outcome": None,
        "version": None,
    }


def active(requests: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The request that is queued or being trained, if any."""
    return next((r for r in reversed(requests) if r["state"] in (OPEN, RUNNING)), None)


def request_retrain(settings: Settings, pipeline: str, reason: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Open a request, or attach ``reason`` to the one already queued or running.

    Returns ``("opened" | "attached", request)``; only an opened request needs a new run.
    """
    storage = home_storage(settings)
    with pipeline_lock(settings, pipeline, "retrain"):
        current = active(all_requests(storage, pipeline))
        if current is not None:
            current["reasons"].append({**reason, "at": _now()})
            return "attached", _save(storage, current)
        return "opened", _save(storage, _new(pipeline, OPEN, {**reason, "at": _now()}))


def claim(settings: Settings, pipeline: str, run_key: str, own_reason: dict[str, Any]) -> dict[str, Any]:
    """The request this training run serves: its own from an earlier attempt, the open one, or a
    new record of why it runs."""
    storage = home_storage(settings)
    with pipeline_lock(settings, pipeline, "retrain"):
        requests = all_requests(storage, pipeline)
        mine = next((r for r in requests if r["claimed_by"] == run_key), None)
        if mine is not None:
            return mine
        current = active(requests)
        if current is not None and current["state"] == OPEN:
            current["reasons"].append({**own_reason, "at": _now()})
            request = current
        else:
            request = _new(pipeline, RUNNING, {**own_reason, "at": _now()})
        request.update(state=RUNNING, claimed_by=run_key, claimed_at=_now())
        return _save(storage, request)


def close(
    settings: Settings, pipeline: str, run_key: str, outcome: str, version: str | None
) -> dict[str, Any] | None:
    """Record how the run that claimed a request ended (promoted, rejected, failed)."""
    storage = home_storage(settings)
    with pipeline_lock(settings, pipeline, "retrain"):
        mine = next((r for r in all_requests(storage, pipeline) if r["claimed_by"] == run_key), None)
        if mine is None:
            return None
        mine.update(state=CLOSED, outcome=outcome, version=version, closed_at=_now())
        return _save(storage, mine)


def consecutive_rejections(requests: list[dict[str, Any]]) -> int:
    """How many of the latest closed retrains the gate rejected in a row; failed runs are skipped."""
    count = 0
    for request in sorted((r for r in requests if r["state"] == CLOSED), key=lambda r: r["closed_at"]):
        if request["outcome"] == REJECTED:
            count += 1
        elif request["outcome"] == PROMOTED:
            count = 0
    return count


def asked_by_monitor(request: dict[str, Any]) -> bool:
    """Whether a monitor alert asked for this retrain (a scheduled or manual run may serve one)."""
    return any(reason["kind"] == "monitor" for reason in request["reasons"])


def last_closed_at(requests: list[dict[str, Any]]) -> datetime | None:
    """When the last retrain a monitor alert asked for ended: the start of the cooldown.

    Scheduled, manual and external-alert trainings start no cooldown: a person or a calendar
    chose them, and they must not hold back the monitor's next alert."""
    closed = [r["closed_at"] for r in requests if r["state"] == CLOSED and asked_by_monitor(r)]
    return datetime.fromisoformat(max(closed)) if closed else None
