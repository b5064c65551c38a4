"""Choosing what an alert-started retrain trains on, from evidence rather than a fixed default.

After a change in the world, all history is mostly the old world: a model fitted on it can score
well on a holdout of the past and badly on the present. A retrain an alert started (the monitor's
asset event or an external alert), whose spec leaves ``retrain.data`` unset, fits one candidate
per window (all history first, then the last k labeled batches, then the labeled batches since
the detected change point) and scores each on the recent holdout, the newest labeled rows no
candidate trains on; the largest window within ``retrain.selection.min_gain`` of the best score
is kept, so more data wins unless the present says otherwise. Every candidate's rows, score and
status, and why the kept one won, are recorded. Windows are scored by the spec's primary metric,
or, in a run the monitor's alert on quality metrics started, by the first metric that fired
(``gates.alert_metrics``): after a moved decision threshold every window ranks alike, and only
the metric that fired tells the windows of the new world from those of the old.

The change point is read from the labeled prediction log: among the batches the champion served
(per batch, the quality rule's metric on at least ``monitoring.quality.min_labels`` labels), the
first of the trailing run that scores more than the rule's ``max_drop`` below the champion's
holdout, the quality alert's own threshold, after at least one batch that did not; the rule is
that of the metric the windows are scored by when the monitor watches it, else the first. A
fixed k guesses how long ago the world changed; the log says when the champion started failing.

A window is cut from the run's snapshot (its rows come from its sources in order) and split by
the spec's frozen holdout like the snapshot of an explicit ``retrain.data`` of the same window
would be, so the kept candidate is exactly what that explicit window would have trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctloop.data import holdout as holdouts
from ctloop.data.training_window import batch_id_of
from ctloop.errors import SpecError
from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.evaluation.model_scores import evaluate, logged_metrics
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.alert_metrics import judged_metrics
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.scoring.prediction_log import LABELED, read_partitions
from ctloop.training.contracts import WindowCandidate, WindowChoice
from ctloop.training.estimator import fit

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec, QualityRule, TrainingWindow
    from ctloop.training.contracts import SnapshotRef

ALL = "all"
SINCE = "since:"  # the window since the change point: ``since:<batch id>``
ALERT_TRIGGERS = ("asset", "alert")  # the monitor's retrain request, an external alert


@dataclass(frozen=True)
class Chosen:
    """The kept candidate's model, the rows it was trained on and its frozen holdout, and the record."""

    model: Pipeline
    training: pd.DataFrame
    holdout: pd.DataFrame
    record: WindowChoice


@dataclass(frozen=True)
class ChangePoint:
    """The batch where the champion's served quality broke (None: no change point), how many of the
    run's trained-on labeled batches start there (0: it is in the recent holdout), and why."""

    batch_id: str | None
    batches: int
    why: str


NO_CHANGE = ChangePoint(None, 0, "")


def find_change_point(
    spec: PipelineSpec,
    log: pd.DataFrame,
    champion: str,
    champion_quality: float | None,
    trained_on: list[str],
    rule: QualityRule | None = None,
) -> ChangePoint:
    """The change point in ``log`` (labeled prediction log rows, batches in order) of the rows
    ``champion`` served, judged by ``rule`` (None: the first quality rule) against the champion's
    holdout value ``champion_quality`` of its metric; ``trained_on``: the run's trained-on labeled
    batch ids, oldest first."""
    quality = spec.monitoring.quality
    rule = rule or quality.rules[0]
    metric = rule.metric
    if champion_quality is None:
        return ChangePoint(None, 0, f"none looked for: champion v{champion} has no holdout {metric}")
    served = log[log["model_version"].astype(str) == champion] if not log.empty else log
    sign = 1.0 if higher_is_better(spec.task, metric) else -1.0
    threshold = champion_quality - sign * rule.max_drop
    judged: list[tuple[str, float]] = []  # batch id, value, of the batches with enough labels
    batches = [] if served.empty else list(served.groupby("batch_id", sort=True))
    for batch_id, rows in batches:
        if len(rows) < quality.min_labels:
            continue
        predictions = Predictions.from_frame(rows, "prediction", "score")
        values = logged_metrics(spec, rows[spec.columns.target].to_numpy(), predictions)[0]
        if metric in values:
            judged.append((str(batch_id), values[metric]))
    below = [round(sign * (threshold - value), 9) > 0 for _, value in judged]
    start = len(judged)
    while start > 0 and below[start - 1]:
        start -= 1
    line = (
        f"champion v{champion}'s {metric} per served batch (>= {quality.min_labels} labels):"
        f" {', '.join(f'{b} {v:.4f}' for b, v in judged) or 'none'}; threshold {threshold:.4f}"
        f" (holdout {champion_quality:.4f}, max_drop {rule.max_drop:g})"
    )
    if start == len(judged):
        return ChangePoint(None, 0, f"no change point: {line}; the latest is not below it")
    if start == 0:
        return ChangePoint(None, 0, f"no change point: {line}; no batch before was above it")
    batch_id = judged[start][0]
    since = len(trained_on) - trained_on.index(batch_id) if batch_id in trained_on else 0
    return ChangePoint(batch_id, since, f"change point {batch_id}: {line}")


def load_change_point(
    spec: PipelineSpec,
    settings: Settings,
    snapshot: SnapshotRef,
    recent: list[str],
    metric: str | None = None,
) -> ChangePoint:
    """The change point of a run's labeled batches (the snapshot's and the recent holdout's
    ``recent`` URIs), so a retried task finds the same one; judged by the quality rule of
    ``metric`` when the monitor watches it, else by the first rule."""
    rules = spec.monitoring.quality.rules
    rule = next((r for r in rules if r.metric == metric), rules[0])
    client = registry.client(settings)
    champion = registry.get_champion(client, spec.name)
    if champion is None:
        return ChangePoint(None, 0, "none looked for: no champion")
    metrics = client.get_run(champion.run_id).data.metrics if champion.run_id else {}
    labeled = snapshot.sources[len(snapshot.sources) - snapshot.labeled_sources :]
    trained_on = [batch_id_of(uri) for uri in labeled]
    batches = list(dict.fromkeys(trained_on + [batch_id_of(uri) for uri in recent]))  # a batch may be in both
    log = read_partitions(LABELED, spec.name, batches, settings)
    value = metrics.get(f"{tags.HOLDOUT_METRIC_PREFIX}{rule.metric}")
    return find_change_point(spec, log, str(champion.version), value, trained_on, rule)


def window_label(window: TrainingWindow) -> str:
    """A training window as runs record it: ``all``, ``batches:2``, ``days:7``."""
    return window.window + (f":{window.last}" if window.last else "")


def selection_metric(spec: PipelineSpec, alert_metrics: tuple[str, ...] | list[str]) -> str:
    """What the windows are scored by: the first metric of the alert that started the run, where
    the gate judges the run on them (``gates.alert_metrics``), else the primary metric."""
    judged, _ = judged_metrics(spec.gates, spec.task, alert_metrics)
    return judged[0] if judged else spec.primary_metric


def selects(spec: PipelineSpec, trigger: str) -> bool:
    """Whether a run with a recent holdout chooses its window: an alert started it, ``retrain.data``
    was not set (in the YAML or the trigger form) and selection is enabled."""
    retrain = spec.retrain
    return trigger in ALERT_TRIGGERS and not retrain.data_is_explicit and retrain.selection.enabled


def _windows(
    spec: PipelineSpec, source_rows: list[int], labeled_sources: int, change: ChangePoint
) -> list[tuple[str, int | None, str]]:
    """Each window to try, in order (all history first, then k ascending, then since the change
    point), with the snapshot row it starts at, or None and why it cannot be cut."""
    windows: list[tuple[str, int | None, str]] = [(ALL, 0, "")]
    last = [(f"batches:{k}", k) for k in sorted(set(spec.retrain.selection.last_batches))]
    if change.batch_id is not None:
        last.append((f"{SINCE}{change.batch_id}", change.batches))
    for name, k in last:
        if k == 0:
            windows.append(
                (name, None, "the change point is in the recent holdout: nothing since is trained on")
            )
        elif k > labeled_sources:
            windows.append((name, None, f"only {labeled_sources} labeled batch(es) are trained on"))
        else:
            windows.append((name, sum(source_rows[: len(source_rows) - k]), ""))
    return windows


def _cut(frame: pd.DataFrame, start: int, spec: PipelineSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A window's (training rows, frozen holdout rows): the snapshot from row ``start``, split as
    a snapshot of that window alone would be."""
    return holdouts.split(frame.iloc[start:].reset_index(drop=True), spec)


def refit(
    spec: PipelineSpec,
    frame: pd.DataFrame,
    source_rows: list[int],
    labeled_sources: int,
    record: WindowChoice,
    change: ChangePoint = NO_CHANGE,
) -> Chosen:
    """The window an earlier attempt of the run chose, fitted again: a retried task keeps the choice
    the run recorded, which a budget could otherwise cut differently."""
    starts = {name: start for name, start, _ in _windows(spec, source_rows, labeled_sources, change)}
    start = starts.get(record.chosen)
    if start is None:
        raise SpecError(
            f"retrain.selection: the window {record.chosen!r} this run chose cannot be cut any more;"
            " start a new run"
        )
    training, holdout = _cut(frame, start, spec)
    return Chosen(model=fit(spec, training), training=training, holdout=holdout, record=record)


def _too_small(spec: PipelineSpec, training: pd.DataFrame) -> str:
    """Why a window's training rows cannot make a candidate, or ''."""
    min_rows = spec.retrain.selection.min_rows
    if len(training) < min_rows:
        return f"{len(training)} training rows < retrain.selection.min_rows {min_rows}"
    if spec.task == "classification" and training[spec.columns.target].nunique() < 2:
        return "its training rows are of one class only"
    return ""


def choose_window(
    spec: PipelineSpec,
    frame: pd.DataFrame,
    source_rows: list[int],
    labeled_sources: int,
    recent: pd.DataFrame,
    change: ChangePoint = NO_CHANGE,
    timer: Callable[[], float] = time.monotonic,
    metric: str | None = None,
) -> Chosen:
    """Fit a candidate per window of ``frame`` (the snapshot; ``source_rows`` and ``labeled_sources``
    say how its rows came; ``change`` adds the window since the change point), score each on
    ``recent`` by ``metric`` (None: the primary metric), keep the largest window within
    ``min_gain`` of the best. No candidate but all history starts after ``budget_seconds``; a
    window of the same rows as one tried before takes its score without a second fit."""
    policy, metric = spec.retrain.selection, metric or spec.primary_metric
    higher = higher_is_better(spec.task, metric)
    started = timer()
    tried: list[tuple[str, int, float | None, str]] = []  # window, rows, score, note
    fitted: dict[str, tuple[Pipeline, pd.DataFrame, pd.DataFrame]] = {}
    by_start: dict[int, int] = {}  # snapshot row -> index in ``tried`` of the window starting there
    for name, start, why_not in _windows(spec, source_rows, labeled_sources, change):
        elapsed = timer() - started
        if start is None:
            tried.append((name, 0, None, why_not))
            continue
        if start in by_start:
            twin, rows, score, note = tried[by_start[start]]
            tried.append((name, rows, score, f"the same rows as {twin}" + (f": {note}" if note else "")))
            continue
        by_start[start] = len(tried)
        training, holdout = _cut(frame, start, spec)
        if name != ALL and elapsed >= policy.budget_seconds:
            budget = f"retrain.selection.budget_seconds {policy.budget_seconds:g}"
            tried.append((name, len(training), None, f"not reached: {elapsed:.0f} s spent of {budget}"))
            continue
        too_small = _too_small(spec, training) if name != ALL else ""
        if too_small:
            tried.append((name, len(training), None, too_small))
            continue
        model = fit(spec, training)
        tried.append((name, len(training), evaluate(model, recent, spec)[metric], ""))
        best_so_far = _keep(tried, higher, policy.min_gain)
        fitted = {k: v for k, v in fitted.items() if k == best_so_far}  # keep one model in memory
        if name == best_so_far:
            fitted[name] = (model, training, holdout)
    chosen = _keep(tried, higher, policy.min_gain)
    model, training, holdout = fitted[chosen]
    record = WindowChoice(
        metric=metric,
        higher_is_better=higher,
        recent_rows=len(recent),
        chosen=chosen,
        why=_why(tried, chosen, metric, policy.min_gain),
        budget_seconds=policy.budget_seconds,
        seconds=round(timer() - started, 3),
        change_point=change.why,
        candidates=[
            WindowCandidate(
                window=name,
                rows=rows,
                score=score,
                status="chosen" if name == chosen else "scored" if score is not None else "skipped",
                note=note,
            )
            for name, rows, score, note in tried
        ],
    )
    return Chosen(model=model, training=training, holdout=holdout, record=record)


def _keep(tried: list[tuple[str, int, float | None, str]], higher: bool, min_gain: float) -> str:
    """The largest scored window whose score is within ``min_gain`` of the best: ties keep more data,
    then the window tried first (the twin of an earlier window is never kept over it)."""
    scored = [
        (order, name, rows, score) for order, (name, rows, score, _) in enumerate(tried) if score is not None
    ]
    sign = 1.0 if higher else -1.0
    best = max(sign * score for _, _, _, score in scored)
    within = [(rows, -order, name) for order, name, rows, score in scored if sign * score >= best - min_gain]
    return max(within)[2]


def _why(tried: list[tuple[str, int, float | None, str]], chosen: str, metric: str, min_gain: float) -> str:
    """One line a reviewer reads: what won, on what, against what."""
    scores = {name: score for name, _, score, _ in tried if score is not None}
    others = ", ".join(f"{name} {score:.4f}" for name, score in scores.items() if name != chosen)
    line = f"{chosen} scored {metric} {scores[chosen]:.4f} on the recent holdout"
    if not others:
        return f"{line}; no other window was scored"
    return f"{line} against {others}; the largest window within {min_gain:g} of the best is kept"
