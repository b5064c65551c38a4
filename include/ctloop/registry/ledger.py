"""The promotion ledger: one durable row per move of the ``champion`` alias, and the move itself.

MLflow keeps only where an alias points now. The ledger keeps every move (promotion, rollback,
manual override) with who, why, the gate's verdict and the evidence, so a champion's history can
be read back and audited. Rows are only ever appended; each row's ``seq`` is the next of its
pipeline, and UNIQUE(pipeline, seq) makes the database itself refuse a second writer recording
"the next move", should two ever get past the lock.

An alias lives in MLflow and the ledger in ctloop's database, so no transaction spans both. A move
is therefore a protocol, run under the pipeline's promotion lock held across its steps: commit
the row in state ``intent``; move the alias; write the version's tags; mark the row ``done``. A
process killed between two steps leaves an ``intent`` row, and the next touch (a move, or a
reader of :func:`entries`) settles it: ``done`` (tags written) when the alias points at its
target, ``abandoned`` when it does not. After that the ledger's ``done`` rows, the alias and the
version tags agree.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ctloop import clock
from ctloop.io.database import engine
from ctloop.io.locks import LockBusy, held_lock, locked_transaction
from ctloop.registry import faults, tags
from ctloop.registry.mlflow_store import CHAMPION, client, get_champion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

    from ctloop.settings import Settings

TABLE = "promotion_ledger"
Action = Literal["promotion", "rollback", "override"]
ACTIONS: tuple[Action, ...] = ("promotion", "rollback", "override")
State = Literal["intent", "done", "abandoned"]
INTENT: State = "intent"
DONE: State = "done"
ABANDONED: State = "abandoned"
_created: set[str] = set()
log = logging.getLogger(__name__)
# Who made a move when no person did: the ledger's "by" names the automatic actor, its reason
# column says why (the monitor's alert, the champion watch's regression, the schedule).
SCHEDULE = "schedule"
MONITOR = "monitor"  # a retrain the monitor asked for, or its champion watch's rollback
ALERT = "alert:"  # an external alert, followed by its id
MANUAL = "manual"  # a manual run whose person Airflow did not record (e.g. ``dag.test()``)


def actor(trigger: str, user: str | None = None, alert_id: str = "") -> str:
    """The ledger's "by" of a move decided by a run that ``trigger`` started (a RunContext's
    ``trigger``: ``manual``, ``schedule``, ``asset``, ``alert``): the person who started a manual
    run, else the automatic actor. An alert names its id, as the person who posted it is a system."""
    if trigger == "schedule":
        return SCHEDULE
    if trigger == "asset":
        return MONITOR
    if trigger == "alert":
        return f"{ALERT}{alert_id}"
    return user or MANUAL


def is_automatic(by: str | None) -> bool:
    """Whether a ledger "by" names an automatic actor rather than a person (or the CLI's user)."""
    return by in (SCHEDULE, MONITOR) or (by or "").startswith(ALERT)


class LedgerEntry(BaseModel):
    """One move of an alias, as recorded: ``done`` when it happened, ``intent`` while it is under
    way (or its process died and nobody has settled it yet), ``abandoned`` when it never moved
    the alias. ``reevaluated``: the move was decided again under the lock, the champion having
    moved since the gate."""

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
    state: State = DONE
    reevaluated: bool = False

    @property
    def automatic(self) -> bool:
        """Whether an automatic actor made this move (see :func:`actor`)."""
        return is_automatic(self.user)

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
        # Added after release: a column added later has a server default, which fills the rows
        # of existing databases when _add_missing_columns adds it (those moves all completed).
        sa.Column("state", sa.String(16), nullable=False, server_default=DONE),
        sa.Column("reevaluated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("pipeline", "seq", name=f"uq_{TABLE}_pipeline_seq"),
        sa.CheckConstraint(f"action IN {ACTIONS!r}", name=f"ck_{TABLE}_action"),
    )


def create_tables(settings: Settings) -> None:
    """Create the ledger's table if it is missing, and add the columns a database created by an
    earlier release lacks.

    The checks and the DDL run under a database lock, so processes starting at once on a fresh
    database cannot both see no table (or no column) and both create it.
    """
    with locked_transaction(settings, TABLE, "schema") as connection:
        _table().metadata.create_all(connection, checkfirst=True)
        _add_missing_columns(connection)
    _created.add(settings.database_url)


def _add_missing_columns(connection: Connection) -> None:
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    present = {column["name"] for column in inspect(connection).get_columns(TABLE)}
    for column in _table().columns:
        if column.name not in present:
            definition = CreateColumn(column).compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN {definition}")


def _ensure_tables(settings: Settings) -> None:
    if settings.database_url not in _created:
        create_tables(settings)


def entries(settings: Settings, pipeline: str, *, every_state: bool = False) -> list[LedgerEntry]:
    """The pipeline's completed moves of its alias, oldest first; with ``every_state`` also the
    moves under way and the abandoned ones.

    A move left in ``intent`` by a process that died is settled first (see :func:`settle`),
    unless a move holds the lock right now. A reader never fails for that: when MLflow cannot be
    reached, the row stays ``intent`` and is left out of the completed moves.
    """
    _ensure_tables(settings)
    with engine(settings).connect() as connection:
        found = _read(connection, pipeline)
    if any(entry.state == INTENT for entry in found):
        try:
            settle(settings, client(settings), pipeline, wait=False)
        except LockBusy:
            log.info("%s: a move of %s is under way; its row is left as it is", pipeline, CHAMPION)
        except Exception:  # a reader shows the ledger as it is rather than fail
            log.warning("%s: could not settle the ledger's unfinished move", pipeline, exc_info=True)
        with engine(settings).connect() as connection:
            found = _read(connection, pipeline)
    return found if every_state else [entry for entry in found if entry.state == DONE]


def settle(
    settings: Settings, mlflow_client: MlflowClient, pipeline: str, *, wait: bool = True
) -> list[LedgerEntry]:
    """Finish or abandon the pipeline's moves left in ``intent``, under its promotion lock; returns
    them as settled. With ``wait=False`` it raises :class:`LockBusy` when a move is under way."""
    _ensure_tables(settings)
    with held_lock(settings, pipeline, "promotion", wait=wait) as connection:
        return _settle(connection, mlflow_client, pipeline)


def _read(connection: Connection, pipeline: str) -> list[LedgerEntry]:
    from sqlalchemy import select

    table = _table()
    query = select(table).where(table.c.pipeline == pipeline).order_by(table.c.seq)
    with connection.begin():
        rows = connection.execute(query).mappings().all()
    return [
        LedgerEntry.model_validate(
            {**{f: r[f] for f in LedgerEntry.model_fields}, "evidence": json.loads(r["evidence"])}
        )
        for r in rows
    ]


def _settle(connection: Connection, mlflow_client: MlflowClient, pipeline: str) -> list[LedgerEntry]:
    """Settle every ``intent`` row; the caller holds the promotion lock.

    Only the last of them can have moved the alias: every move settles the earlier ones before
    it starts, and fails if it cannot. So the last is finished if the alias points at its target,
    and every other is abandoned.
    """
    pending = [entry for entry in _read(connection, pipeline) if entry.state == INTENT]
    if not pending:
        return []
    current = get_champion(mlflow_client, pipeline)
    at = str(current.version) if current else None
    settled = [_mark(connection, entry, ABANDONED) for entry in pending[:-1]]
    last = pending[-1]
    if at == last.to_version:
        settled.append(_finish(connection, mlflow_client, last))
    else:
        settled.append(_mark(connection, last, ABANDONED))
    for entry in settled:
        log.warning(
            "%s: the move #%d of %s to v%s was interrupted; settled as %s",
            pipeline,
            entry.seq,
            CHAMPION,
            entry.to_version,
            entry.state,
        )
    return settled


def _settle_after_failure(connection: Connection, mlflow_client: MlflowClient, pipeline: str) -> None:
    """Settle the move whose alias write just failed, if MLflow answers now; else the next touch
    will. Never raises: the caller re-raises the failure that matters."""
    try:
        _settle(connection, mlflow_client, pipeline)
    except Exception:  # the alias write's own error is the one to report
        log.warning("%s: the interrupted move stays in intent until the next touch", pipeline, exc_info=True)


def version_tags(entry: LedgerEntry) -> dict[str, str]:
    """The tags a completed move writes on the version it made champion."""
    kind = {"promotion": "promoted_after_reevaluation" if entry.reevaluated else "promoted"}
    return {
        tags.PROMOTION: kind.get(entry.action, entry.action),
        tags.PREVIOUS_CHAMPION: entry.from_version or "none",
        tags.PROMOTED_AT: datetime.fromisoformat(entry.at).isoformat(timespec="seconds"),
        tags.LEDGER_SEQ: str(entry.seq),
    }


def _finish(connection: Connection, mlflow_client: MlflowClient, entry: LedgerEntry) -> LedgerEntry:
    """Complete a move whose alias points at its target: the version's tags, then ``done``."""
    for number, (key, value) in enumerate(version_tags(entry).items()):
        if number == 1:
            faults.point("ledger.during_tags")
        mlflow_client.set_model_version_tag(entry.pipeline, entry.to_version, key, value)
    faults.point("ledger.before_done")
    return _mark(connection, entry, DONE)


def _mark(connection: Connection, entry: LedgerEntry, state: State) -> LedgerEntry:
    table = _table()
    with connection.begin():
        connection.execute(
            table.update()
            .where(table.c.pipeline == entry.pipeline, table.c.seq == entry.seq, table.c.state == INTENT)
            .values(state=state)
        )
    return entry.model_copy(update={"state": state})


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
    """Compare-and-set ``champion`` to ``to_version`` and record the move, crash-safely.

    Under the pipeline's promotion lock, earlier moves left unfinished are settled and the
    champion is read again. If it is no longer ``expected_from`` (the champion the move was
    decided against), the move goes ahead only if ``decide(the current champion's ModelVersion,
    or None)`` allows it; without ``decide`` it is refused. Then the protocol of the module
    docstring runs: ``intent`` committed, alias, version tags, ``done``. If the alias write fails
    the move is settled at once when MLflow can tell where the alias points, and the error is
    raised; whatever is left unfinished, the next touch settles.

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

    with held_lock(settings, pipeline, "promotion") as connection:
        completed = [e for e in _settle(connection, mlflow_client, pipeline) if e.state == DONE]
        current = get_champion(mlflow_client, pipeline)
        found = str(current.version) if current else None
        if found == to_version:
            interrupted = "".join(f"; completed the interrupted move #{e.seq}" for e in completed)
            return refused(f"{_version(to_version)} is already champion{interrupted}")
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
        with connection.begin():
            entry = _append(
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
                evidence=evidence or {},
                state=INTENT,
                reevaluated=found != expected_from,
            )
        faults.point("ledger.after_intent")
        try:
            mlflow_client.set_registered_model_alias(pipeline, CHAMPION, to_version)
        except Exception:
            _settle_after_failure(connection, mlflow_client, pipeline)
            raise
        faults.point("ledger.after_alias")
        _finish(connection, mlflow_client, entry)
        faults.point("ledger.after_done")
    return LedgerMove(action=action, moved=True, from_version=found, to=to_version, seq=entry.seq, why=why)


def _append(connection: Connection, **row: Any) -> LedgerEntry:
    """Insert ``row`` as the pipeline's next move; returns it with its ``seq``."""
    from sqlalchemy import func, select

    table = _table()
    last = connection.execute(
        select(func.max(table.c.seq)).where(table.c.pipeline == row["pipeline"])
    ).scalar()
    seq = int(last or 0) + 1
    values = {**row, "evidence": json.dumps(row["evidence"], sort_keys=True)}
    connection.execute(table.insert().values(seq=seq, **values))
    return LedgerEntry.model_validate({**row, "seq": seq})
