"""The promotion ledger: one durable row per move of the ``champion`` alias, and the move itself.

MLflow keeps only where an alias points now. The ledger keeps every move (promotion, rollback,
manual override) with who, why, the gate's verdict and the evidence, so a champion's history can
be read back and audited. Rows are only ever appended. A move and its row are one
compare-and-set under the pipeline's lock; each row's ``seq`` is the next of its pipeline, and
UNIQUE(pipeline, seq) makes the database itself refuse a second writer recording "the next
move", should two ever get past the lock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ctloop import clock
from ctloop.io.database import engine
from ctloop.io.locks import locked_transaction
from ctloop.registry.mlflow_store import CHAMPION, get_champion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

    from ctloop.settings import Settings

TABLE = "promotion_ledger"
Action = Literal["promotion", "rollback", "override"]
ACTIONS: tuple[Action, ...] = ("promotion", "rollback", "override")
_created: set[str] = set()


class LedgerEntry(BaseModel):
    """One move of an alias, as recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    pipeline: str
    action: Action
    alias: str
    from_version: str | None
    to_version: str
    at: str
    run_key: str | None
    mlflow_run_id: str | None
    user: str | None
    reason: str
    gate_decision: str
    approver: str | None
    evidence: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class LedgerMove(BaseModel):
    """What one attempt to move the alias did: ``moved`` or not and why; ``from_version`` (JSON
    ``from``) is the champion found under the lock, ``seq`` the ledger row when it moved."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )

    action: Action
    moved: bool
    from_version: str | None = Field(alias="from")
    to: str
    seq: int | None
    why: str


@functools.cache
def _table() -> Table:
    import sqlalchemy as sa

    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.String(32)),
        sa.Column("to_version", sa.String(32), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("run_key", sa.Text),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("user", sa.String(250)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("gate_decision", sa.Text, nullable=False),
        sa.Column("approver", sa.String(250)),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.UniqueConstraint("pipeline", "seq", name=f"uq_{TABLE}_pipeline_seq"),
        sa.CheckConstraint(f"action IN {ACTIONS!r}", name=f"ck_{TABLE}_action"),
    )


def create_tables(settings: Settings) -> None:
    """Create the ledger's table if it is missing.

    The check and the CREATE run under a database lock, so processes starting at once on a fresh
    database cannot both see no table and both create it.
    """
    with locked_transaction(settings, TABLE, "schema") as connection:
        _table().metadata.create_all(connection, checkfirst=True)
    _created.add(settings.database_url)


def _ensure_tables(settings: Settings) -> None:
    if settings.database_url not in _created:
        create_tables(settings)


def entries(settings: Settings, pipeline: str) -> list[LedgerEntry]:
    """Every recorded move of the pipeline's alias, oldest first."""
    from sqlalchemy import select

    _ensure_tables(settings)
    table = _table()
    query = select(table).where(table.c.pipeline == pipeline).order_by(table.c.seq)
    with engine(settings).connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        LedgerEntry.model_validate(
            {**{f: r[f] for f in LedgerEntry.model_fields}, "evidence": json.loads(r["evidence"])}
        )
        for r in rows
    ]


def _version(version: str | None) -> str:
    return f"v{version}" if version else "none"


def move_alias(
    settings: Settings,
    mlflow_client: MlflowClient,
    pipeline: str,
    to_version: str,
    *,
    expected_from: str | None,
    action: Action,
    reason: str,
    run_key: str | None = None,
    mlflow_run_id: str | None = None,
    user: str | None = None,
    gate_decision: str = "",
    approver: str | None = None,
    evidence: dict[str, str] | None = None,
    decide: Callable[[ModelVersion | None], tuple[bool, str]] | None = None,
) -> LedgerMove:
    """Compare-and-set ``champion`` to ``to_version`` and record the move, as one step.

    Under the pipeline's promotion lock the champion is read again. If it is no longer
    ``expected_from`` (the champion the move was decided against), the move goes ahead only if
    ``decide(the current champion's ModelVersion, or None)`` allows it; without ``decide`` it is
    refused.
    The ledger row is inserted before the alias is set and committed after, so a failed alias
    write leaves no row; if the commit fails after the alias moved, the alias is put back.

    Moving to the current champion is a no-op and records nothing.
    """
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    to_version = str(to_version)
    expected_from = None if expected_from is None else str(expected_from)
    _ensure_tables(settings)
    found: str | None = None

    def refused(why: str) -> LedgerMove:
        return LedgerMove(action=action, moved=False, from_version=found, to=to_version, seq=None, why=why)

    alias_set = False
    try:
        with locked_transaction(settings, pipeline, "promotion") as connection:
            current = get_champion(mlflow_client, pipeline)
            found = str(current.version) if current else None
            if found == to_version:
                return refused(f"{_version(to_version)} is already champion")
            why = f"champion was {_version(expected_from)} as decided"
            if found != expected_from:
                why = f"champion moved from {_version(expected_from)} to {_version(found)}"
                if decide is None:
                    return refused(f"{why} since the decision; refused")
                allowed, verdict = decide(current)
                why = f"{why}; re-decided: {verdict}"
                if not allowed:
                    return refused(why)
                gate_decision = f"{gate_decision} | {why}" if gate_decision else why
            seq = _append(
                connection,
                pipeline=pipeline,
                action=action,
                alias=CHAMPION,
                from_version=found,
                to_version=to_version,
                at=clock.now().isoformat(timespec="microseconds"),
                run_key=run_key,
                mlflow_run_id=mlflow_run_id,
                user=user,
                reason=reason,
                gate_decision=gate_decision,
                approver=approver,
                evidence=json.dumps(evidence or {}, sort_keys=True),
            )
            mlflow_client.set_registered_model_alias(pipeline, CHAMPION, to_version)
            alias_set = True
    except Exception:
        if alias_set:
            _put_back(mlflow_client, pipeline, to_version, found)
        raise
    return LedgerMove(action=action, moved=True, from_version=found, to=to_version, seq=seq, why=why)


def _append(connection: Connection, **row: Any) -> int:
    """Insert ``row`` as the pipeline's next move; returns its ``seq``."""
    from sqlalchemy import func, select

    table = _table()
    last = connection.execute(
        select(func.max(table.c.seq)).where(table.c.pipeline == row["pipeline"])
    ).scalar()
    seq = int(last or 0) + 1
    connection.execute(table.insert().values(seq=seq, **row))
    return seq


def _put_back(mlflow_client: MlflowClient, pipeline: str, moved_to: str, previous: str | None) -> None:
    """Undo an alias move whose ledger row could not be committed, unless someone moved it since."""
    current = get_champion(mlflow_client, pipeline)
    if current is None or str(current.version) != moved_to:
        return
    if previous is None:
        mlflow_client.delete_registered_model_alias(pipeline, CHAMPION)
    else:
        mlflow_client.set_registered_model_alias(pipeline, CHAMPION, previous)
