"""External alerts: an id ctloop can trust, and one training per alert id, whatever the run id.

An external monitoring system retries deliveries, and it may pick its own run id each time, so
Airflow's unique run id alone does not stop a repeated alert from starting a second training.
ctloop records each (pipeline, alert id) once in its own database, under a unique constraint,
with the training run that received it; a retry of that same run is the same claim, any other run
is refused. Ids are short and plain (ctloop.monitoring.alert_ids).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from ctloop import clock
from ctloop.errors import AlertRefused
from ctloop.io.database import engine
from ctloop.io.locks import locked_transaction
from ctloop.monitoring.alert_ids import ALERT_ID_MAX_LENGTH, ALERT_ID_PATTERN

if TYPE_CHECKING:
    from sqlalchemy import Table

    from ctloop.settings import Settings

TABLE = "ctloop_alerts"
_ALERT_ID = re.compile(ALERT_ID_PATTERN)
_created: set[str] = set()


class AlertClaim(BaseModel):
    """The training run that received an alert id, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str
    alert_id: str
    run_key: str
    at: str


def check_alert_id(alert_id: str) -> str:
    """``alert_id`` if it is a plain id (letters, digits, then also ``.``, ``_``, ``:``, ``-``; at
    most ``ALERT_ID_MAX_LENGTH`` characters); else :class:`AlertRefused` saying what is wrong,
    without echoing the id."""
    if _ALERT_ID.fullmatch(alert_id):
        return alert_id
    why = (
        f"{len(alert_id):,} characters, more than {ALERT_ID_MAX_LENGTH}"
        if len(alert_id) > ALERT_ID_MAX_LENGTH
        else "it must start with a letter or digit and hold only letters, digits, '.', '_', ':' and '-'"
    )
    raise AlertRefused(f"alert_id refused: {why}")


def claim(settings: Settings, pipeline: str, alert_id: str, run_key: str) -> AlertClaim:
    """Record that ``run_key`` received ``alert_id``; :class:`AlertRefused` naming the earlier run
    when another run already did. Claiming again from the same run (a retried task) is a no-op."""
    from sqlalchemy import select

    check_alert_id(alert_id)
    _ensure_table(settings)
    table = _table()
    with locked_transaction(settings, pipeline, "alerts") as connection:
        query = select(table).where(table.c.pipeline == pipeline, table.c.alert_id == alert_id)
        found = connection.execute(query).mappings().first()
        if found is None:
            row = {"pipeline": pipeline, "alert_id": alert_id, "run_key": run_key}
            row["at"] = clock.now().isoformat(timespec="seconds")
            connection.execute(table.insert().values(**row))
            return AlertClaim.model_validate(row)
    earlier = AlertClaim.model_validate(dict(found))
    if earlier.run_key != run_key:
        raise AlertRefused(
            f"alert {alert_id!r} was already received by {earlier.run_key} at {earlier.at};"
            " a repeated alert starts no second training"
        )
    return earlier


def release(settings: Settings, pipeline: str, alert_id: str, run_key: str) -> None:
    """Forget ``run_key``'s claim of ``alert_id``, for a run that could not be started after all."""
    _ensure_table(settings)
    table = _table()
    with locked_transaction(settings, pipeline, "alerts") as connection:
        connection.execute(
            table.delete().where(
                table.c.pipeline == pipeline, table.c.alert_id == alert_id, table.c.run_key == run_key
            )
        )


def claimed(settings: Settings, pipeline: str, alert_id: str) -> AlertClaim | None:
    """The claim of ``alert_id``, if a run received it."""
    from sqlalchemy import select

    _ensure_table(settings)
    table = _table()
    query = select(table).where(table.c.pipeline == pipeline, table.c.alert_id == alert_id)
    with engine(settings).connect() as connection:
        found = connection.execute(query).mappings().first()
    return None if found is None else AlertClaim.model_validate(dict(found))


def create_table(settings: Settings) -> None:
    """Create the alerts table if it is missing, under the schema lock (see ledger.create_tables)."""
    with locked_transaction(settings, TABLE, "schema") as connection:
        _table().metadata.create_all(connection, checkfirst=True)
    _created.add(settings.database_url)


def _ensure_table(settings: Settings) -> None:
    if settings.database_url not in _created:
        create_table(settings)


@functools.cache
def _table() -> Table:
    import sqlalchemy as sa

    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("pipeline", sa.String(250), primary_key=True),
        sa.Column("alert_id", sa.String(ALERT_ID_MAX_LENGTH), primary_key=True),
        sa.Column("run_key", sa.Text, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
    )
