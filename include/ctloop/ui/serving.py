"""What the pipeline page says about the models that serve and wait: the champion and the
challenger with their key metrics on the frozen holdout, on the recent holdout (both measured when
they were trained) and on labeled production rows (measured by the monitor since), and the last
retrainings with the gate's reason."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.registry import tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.registry.ledger import LedgerEntry
    from ctloop.spec.models import PipelineSpec

RECENT_TRAININGS = 8
"""Retrainings the pipeline page lists (the newest)."""


@dataclass(frozen=True)
class Figure:
    """One metric of one model: on the frozen holdout, the recent holdout and production rows."""

    metric: str
    frozen: float | None
    recent: float | None
    served: float | None
    served_rows: int | None


@dataclass(frozen=True)
class Serving:
    """A model the page shows: the champion, or the challenger waiting for approval."""

    role: str
    version: str
    gate: str
    figures: list[Figure]


@dataclass(frozen=True)
class Training:
    """One retraining: who or what asked, how it ended, and the gate's reason."""

    request: dict[str, Any]
    gate_summary: str | None

    @property
    def asked_by(self) -> list[tuple[str, bool]]:
        """Who or what asked for it, once each: ``(name, is a person)``; the person who started a
        manual run, else the automatic actor (``monitor``, ``schedule``, ``alert:<id>``), else the
        kind of a reason recorded before ctloop named actors."""
        named: dict[str, bool] = {}
        for reason in self.request["reasons"]:
            name = reason.get("user") or reason["kind"]
            named.setdefault(name, reason["kind"] == "manual" and bool(reason.get("user")))
        return list(named.items())


def key_metrics(spec: PipelineSpec) -> list[str]:
    """The metrics people decide by: the gates' primary metric and the one the monitor watches."""
    return list(dict.fromkeys([spec.primary_metric, spec.monitoring.quality.metric]))


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _served(
    role: str, version: str, decisions: list[dict[str, Any]], metric: str, monitored: str
) -> tuple[float | None, int | None]:
    """The latest value the monitor measured for this model on labeled production rows, and on
    how many (unknown for the champion's own quality, which the decision keeps without rows):
    the champion's monitored ``quality``, or either side of a paired comparison."""
    for decision in reversed(decisions):
        own = decision.get("quality")
        mine = role == "champion" and decision.get("champion_version") == version
        if mine and metric == monitored and own is not None:
            return own, None
        for key in ("champion_vs_previous", "challenger_vs_champion"):
            compared = decision.get(key) or {}
            value = (compared.get("values") or {}).get(role)
            if (
                compared.get("metric") == metric
                and compared["versions"].get(role) == version
                and value is not None
            ):
                return value, compared.get("rows")
    return None, None


def serving(
    mlflow_client: MlflowClient,
    spec: PipelineSpec,
    champion: LedgerEntry | None,
    decisions: list[dict[str, Any]],
) -> list[Serving]:
    """The champion (per the ledger) and the challenger (the MLflow alias), when there are."""
    from mlflow.exceptions import MlflowException

    from ctloop.registry.mlflow_store import CHALLENGER

    found: list[tuple[str, Any]] = []
    lookups = [("challenger", lambda: mlflow_client.get_model_version_by_alias(spec.name, CHALLENGER))]
    if champion is not None:
        lookups.insert(
            0, ("champion", lambda: mlflow_client.get_model_version(spec.name, champion.to_version))
        )
    for role, lookup in lookups:
        # no challenger waits, or the ledger names a version the registry lost: the page shows the rest
        with contextlib.suppress(MlflowException):
            found.append((role, lookup()))
    return [
        Serving(
            role=role,
            version=str(version.version),
            gate=version.tags.get(tags.GATE, ""),
            figures=[
                _figure(role, version, metric, decisions, spec.monitoring.quality.metric)
                for metric in key_metrics(spec)
            ],
        )
        for role, version in found
    ]


def _figure(role: str, version: Any, metric: str, decisions: list[dict[str, Any]], monitored: str) -> Figure:
    recorded = version.tags
    served, rows = _served(role, str(version.version), decisions, metric, monitored)
    return Figure(
        metric=metric,
        frozen=_number(recorded.get(f"{tags.VERSION_METRIC_PREFIX}{tags.HOLDOUT_METRIC_PREFIX}{metric}")),
        recent=_number(recorded.get(f"{tags.VERSION_METRIC_PREFIX}{tags.RECENT_METRIC_PREFIX}{metric}")),
        served=served,
        served_rows=rows,
    )


def trainings(mlflow_client: MlflowClient, pipeline: str, requests: list[dict[str, Any]]) -> list[Training]:
    """The newest retrainings (retrain requests), with the gate's summary of the version each made."""
    from mlflow.exceptions import MlflowException

    shown = []
    for request in list(reversed(requests))[:RECENT_TRAININGS]:
        summary = None
        if request.get("version"):
            try:
                summary = mlflow_client.get_model_version(pipeline, request["version"]).tags.get(
                    tags.GATE_SUMMARY
                )
            except MlflowException:
                summary = None  # the page says the gate's reason could not be read
        shown.append(Training(request=request, gate_summary=summary))
    return shown
