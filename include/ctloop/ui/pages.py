"""The body of each page, from data the routes gathered: the templates in ``ctloop/templates/ui``
hold the markup, this module what they need beyond the data; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.rendering import fragment
from ctloop.ui.chart import pipeline_charts
from ctloop.ui.reports import evidence_note
from ctloop.ui.state import run_id_of

if TYPE_CHECKING:
    from markupsafe import Markup

    from ctloop.registry.ledger import LedgerEntry
    from ctloop.spec.models import PipelineSpec
    from ctloop.ui.card_diff import DiffSection
    from ctloop.ui.links import Urls
    from ctloop.ui.runs import Run, WaitingApproval
    from ctloop.ui.serving import Serving, Training
    from ctloop.ui.state import PolicyState

KINDS = ("train", "score", "monitor")


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline on the overview."""

    spec: PipelineSpec
    champion: LedgerEntry | None
    runs: dict[str, Run | None]
    decision: dict | None
    policy: PolicyState


@dataclass(frozen=True)
class Actions:
    """What the page's two forms need: a form token where the user may trigger the DAG (None: the
    form says they may not), and whether Airflow has each DAG paused (None: not parsed yet)."""

    retrain_csrf: str | None
    rollback_csrf: str | None
    paused: dict[str, bool | None]


@dataclass(frozen=True)
class PipelineView:
    """Everything the pipeline page shows; ``serving`` is None when the user may not read the
    training DAG (models, retrainings and approvals are then left out)."""

    decisions: list[dict]
    moves: list[LedgerEntry]
    policy: PolicyState
    serving: list[Serving] | None
    trainings: list[Training]
    approvals: list[WaitingApproval]
    actions: Actions
    started: Run | None

    @property
    def rollback_targets(self) -> list[str]:
        """Every version the ledger ever named but the champion, newest first."""
        named = {v for move in self.moves for v in (move.from_version, move.to_version) if v}
        current = self.moves[-1].to_version if self.moves else None
        return sorted(named - {current}, key=int, reverse=True)


def _render(name: str, urls: Urls, **context: Any) -> Markup:
    """Every page template gets the links, the DAG kinds and how to read a run key."""
    return fragment(f"ui/{name}.html", urls=urls, kinds=KINDS, run_id_of=run_id_of, **context)


def overview(urls: Urls, rows: list[PipelineRow], invalid: list[str]) -> Markup:
    return _render("overview", urls, rows=rows, invalid=invalid)


def history(
    urls: Urls, spec: PipelineSpec, decisions: list[dict], moves: list[LedgerEntry], policy: PolicyState
) -> Markup:
    """The chart and the table of monitor runs, newest first."""
    chart = pipeline_charts(
        decisions, moves, threshold=spec.monitoring.drift.share, metric=spec.monitoring.quality.metric
    )
    return _render(
        "history",
        urls,
        spec=spec,
        decisions=decisions,
        moves=moves,
        policy=policy,
        chart=chart,
        triggers=triggers(spec),
        watch=watch_rule(spec),
    )


def pipeline(urls: Urls, spec: PipelineSpec, view: PipelineView) -> Markup:
    """The place to decide, with the monitoring (:func:`history`) as its lower half."""
    monitoring = history(urls, spec, view.decisions, view.moves, view.policy)
    return _render("pipeline", urls, spec=spec, view=view, monitoring=monitoring)


def triggers(spec: PipelineSpec) -> str:
    """What makes the monitor alert, in words."""
    drift, quality = spec.monitoring.drift, spec.monitoring.quality
    keys = f", or any of {', '.join(drift.key_features)} drifts" if drift.key_features else ""
    watched = _either([f"{r.metric} more than {r.max_drop:g}" for r in quality.rules])
    reference = "recent holdout (else its holdout)" if quality.reference == "recent" else "holdout"
    return (
        f"drift share at least {drift.share:g}{keys}; {watched} worse than the champion's {reference}"
        f" with {quality.confidence:.0%} confidence ({quality.severe_multiple:g} x that retrains at once)"
        f"{label_shift_rule(spec)}{estimate_rule(spec)}"
    )


def _either(items: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def label_shift_rule(spec: PipelineSpec) -> str:
    """When label shift alerts, in words (nothing when it is off)."""
    shift = spec.monitoring.label_shift
    if not shift.enabled:
        return ""
    size = (
        f"the label's mean moves more than {shift.max_mean_shift:g} training SDs"
        if spec.task == "regression"
        else f"the label rate or class mix moves more than {shift.max_shift:g}"
    )
    return f"; label shift: {size} with {shift.confidence:.0%} confidence"


def estimate_rule(spec: PipelineSpec) -> str:
    """What the estimate before labels does, in words (nothing when it is off or cannot run)."""
    rule = spec.monitoring.estimate
    if not rule.enabled or spec.task == "regression":
        return ""
    metrics = _either(list(rule.metrics))
    role = (
        "alerts" if rule.decide else "is reported and decides nothing (monitoring.estimate.decide is false)"
    )
    return (
        f"; an estimated {metrics} more than {rule.max_drop:g} below the champion's holdout with"
        f" {rule.confidence:.0%} confidence, before labels, {role}"
    )


def watch_rule(spec: PipelineSpec) -> str:
    """When the monitor rolls a new champion back, in words; after a promotion its gate judged on
    the metrics of the monitor's alert (``gates.alert_metrics``), as the watch then judges it."""
    watch, metric = spec.monitoring.watch, spec.monitoring.quality.metric
    if not watch.enabled:
        return "off: a new champion is not compared with the one it replaced"
    said = (
        f"after a promotion the previous champion shadow-scores every batch; from {watch.min_labels:,}"
        f" labeled rows on, the new champion is rolled back when its {metric} is below the previous"
        f" one's on the same rows by more than {watch.margin:g} with {watch.confidence:.0%} confidence"
    )
    alert = spec.gates.alert_metrics
    if not alert.enabled:
        return said
    return (
        f"{said}; one its gate judged on the metrics of the monitor's alert, when worse on any of those"
        f" by more than {watch.margin:g}, or on {metric} (unless it fired) by more than"
        f" {max(alert.max_regression, watch.margin):g}"
    )


def report(urls: Urls, spec: PipelineSpec, run_id: str, summary: dict | None) -> Markup:
    """ctloop's decision as the headline, and the Evidently report as the evidence under it, in a
    sandboxed frame, with a line on why its numbers may differ from the decision's."""
    note = evidence_note(summary) if summary else None
    return _render("report", urls, spec=spec, run_id=run_id, summary=summary, note=note)


def ledger(
    urls: Urls, spec: PipelineSpec, moves: list[LedgerEntry], *, can_rollback: bool, triggered: Run | None
) -> Markup:
    """Every move of ``champion``, newest first, with the evidence and the way back."""
    return _render("ledger", urls, spec=spec, moves=moves, can_rollback=can_rollback, triggered=triggered)


def rollback_form(
    urls: Urls,
    spec: PipelineSpec,
    moves: list[LedgerEntry],
    *,
    target: str,
    csrf: str,
    can_rollback: bool,
    paused: bool | None,
) -> Markup:
    """The confirmation: what moves where, a required reason, and the button."""
    return _render(
        "rollback",
        urls,
        spec=spec,
        moves=moves,
        target=target,
        csrf=csrf,
        can_rollback=can_rollback,
        paused=paused,
    )


def error(urls: Urls, status_code: int, detail: Any, login: str | None) -> Markup:
    """An error; ``login`` is where a request without a session logs in and comes back."""
    return _render("error", urls, status_code=status_code, detail=detail, login=login)


def version(
    urls: Urls, spec: PipelineSpec, version: str, champion: str | None, diff: list[DiffSection] | None
) -> Markup:
    """A version's card in a sandboxed frame, under its differences from the champion now (None:
    no diff, because there is no other champion or its run could not be read)."""
    return _render("version", urls, spec=spec, version=version, champion=champion, diff=diff)
