"""What the pages show about a pipeline, read from ctloop's own records: the ledger (champion),
the monitor's decision history (drift) and the retrain requests (the policy's state)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ctloop.io.storage import home_storage
from ctloop.monitoring.retrain_requests import active, all_requests, consecutive_rejections, last_closed_at

if TYPE_CHECKING:
    from ctloop.registry.ledger import LedgerEntry
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

HISTORY_LIMIT = 200
"""Decisions a page reads (the newest); each is one object in storage."""


@dataclass(frozen=True)
class PolicyState:
    """Where the retrain policy stands for a pipeline right now."""

    queued: dict | None
    """The retrain request that is open or running, if any."""
    cooldown_until: datetime | None
    """When the cooldown after the last alert-driven retrain ends, while it lasts."""
    rejections: int
    max_rejections: int

    @property
    def breaker_open(self) -> bool:
        return self.rejections >= self.max_rejections


def policy_state(spec: PipelineSpec, settings: Settings, now: datetime) -> PolicyState:
    """The same facts :func:`ctloop.monitoring.retrain_policy.decide` guards on, from the retrain requests."""
    requests = all_requests(home_storage(settings), spec.name)
    closed = last_closed_at(requests)
    until = closed + timedelta(minutes=spec.retrain.cooldown_minutes) if closed else None
    return PolicyState(
        queued=active(requests),
        cooldown_until=until if until and until > now else None,
        rejections=consecutive_rejections(requests),
        max_rejections=spec.retrain.max_consecutive_rejections,
    )


def history(settings: Settings, pipeline: str) -> list[dict]:
    """The monitor's decisions, oldest first (the newest :data:`HISTORY_LIMIT`)."""
    from ctloop.monitoring.monitor_run import history_prefix

    storage = home_storage(settings)
    keys = storage.list_keys(history_prefix(pipeline))[-HISTORY_LIMIT:]  # named by time, sorted
    return [json.loads(storage.read_bytes(key)) for key in keys]


def latest_decision(settings: Settings, pipeline: str) -> dict | None:
    from ctloop.monitoring.monitor_run import history_prefix

    storage = home_storage(settings)
    keys = storage.list_keys(history_prefix(pipeline))
    return json.loads(storage.read_bytes(keys[-1])) if keys else None


def champion(entries: list[LedgerEntry]) -> LedgerEntry | None:
    """The ledger's last move: whose champion it is now, and since when."""
    return entries[-1] if entries else None


def run_id_of(run_key: str | None) -> str | None:
    """The run id of a ``<dag_id>/<run_id>`` run key."""
    return run_key.split("/", 1)[1] if run_key and "/" in run_key else None
