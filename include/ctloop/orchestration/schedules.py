"""A DAG's schedule from a spec's cron (or none) and the assets that also start it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

if TYPE_CHECKING:
    from airflow.sdk import Asset


def cron_or_assets(cron: str | None, assets: list[Asset]):
    """Run on ``cron`` or whenever ``assets`` get an event; only on the assets without a cron."""
    if cron is None:
        return assets
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=assets)
