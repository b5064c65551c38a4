"""Comparing the champion, on the rows it served, with a model that scored the same rows unserved.

A gate judges a candidate on held-out rows; only production shows what a model serves. Two
models shadow-score every batch beside the champion (ctloop.scoring.batches), so once labels
arrive they are measured on the same rows, and the gate's paired bootstrap
(ctloop.gating.paired_bootstrap) turns the difference into an interval:

- the previous champion, while the champion is the version promoted most recently. When the
  interval of (champion - previous) lies wholly below ``-monitoring.watch.margin`` the new
  champion is worse than its predecessor, and the monitor rolls it back. Only a promotion is
  watched: a rollback or a person's override is already a decision about which model serves;
  watching it too would let two models roll each other back in turn.
- the challenger, a candidate waiting for approval (ctloop.registry.challenger): the interval of
  (challenger - champion) tells its reviewer whether it serves better, worse or the same. It
  decides nothing by itself.

Both read ``monitoring.watch`` (min_labels, margin, confidence, resamples, seed) and compare on
``monitoring.quality.metric``, any metric of the task (a multiclass model's roc_auc and log_loss
read every class's probability from the log: ctloop.scoring.prediction_log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.paired_bootstrap import paired_bootstrap
from ctloop.registry import ledger
from ctloop.scoring.prediction_log import CHALLENGER, PREVIOUS, SERVED, ModelColumns
from ctloop.spec.models import BootstrapRule

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

Verdict = Literal["rollback", "hold", "better", "worse", "no_difference", "undecided"]


class PairedComparison(BaseModel):
    """Two models' quality on the same labeled rows: ``versions`` maps each role to its version,
    the first role being the one judged (``champion`` against ``previous``, ``challenger``
    against ``champion``), ``values`` their metric on those rows.

    ``difference`` and ``interval`` are (judged - other) in the metric's good direction, so a
    negative value means the judged model is worse whatever the metric; ``why`` says how the
    verdict was reached.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    versions: dict[str, str]
    rows: int
    metric: str
    values: dict[str, float] | None
    difference: float | None
    interval: list[float] | None
    confidence: float
    verdict: Verdict
    why: str


@dataclass(frozen=True)
class Side:
    """One model of a comparison: its role, its version and the columns holding its outputs."""

    role: str
    version: str
    columns: ModelColumns


def watched_promotion(settings: Settings, pipeline: str, champion_version: str) -> ledger.LedgerEntry | None:
    """The promotion that made ``champion_version`` champion, if it is the alias's last move and
    replaced an earlier champion; None when there is nothing to watch."""
    moves = ledger.entries(settings, pipeline)
    last = moves[-1] if moves else None
    if last is None or last.action != "promotion" or last.to_version != champion_version:
        return None
    return last if last.from_version else None


def compare(spec: PipelineSpec, labeled: pd.DataFrame, champion: str, previous: str) -> PairedComparison:
    """The champion against the previous champion on the labeled rows it served and the previous
    one shadow-scored: ``rollback`` when significantly worse, ``hold`` otherwise."""
    judged = Side(role="champion", version=champion, columns=SERVED)
    other = Side(role="previous", version=previous, columns=PREVIOUS)
    return _paired(
        spec, labeled, judged, other, {"worse": "rollback", "better": "hold", "no_difference": "hold"}
    )


def compare_challenger(
    spec: PipelineSpec, labeled: pd.DataFrame, champion: str, challenger: str
) -> PairedComparison:
    """The challenger against the champion on the labeled rows the champion served and the
    challenger shadow-scored: ``better``, ``worse`` or ``no_difference``."""
    judged = Side(role="challenger", version=challenger, columns=CHALLENGER)
    other = Side(role="champion", version=champion, columns=SERVED)
    return _paired(spec, labeled, judged, other, {})


def paired_rows(labeled: pd.DataFrame, *sides: Side) -> pd.DataFrame:
    """The labeled rows every one of ``sides`` scored, as its version."""
    if labeled.empty or any(side.columns.version not in labeled.columns for side in sides):
        return labeled.iloc[:0]
    keep = labeled[SERVED.version].notna()
    for side in sides:
        scored = labeled[side.columns.score].notna()
        keep &= scored & (labeled[side.columns.version].astype(str) == side.version)
    return labeled[keep]


def _paired(
    spec: PipelineSpec, labeled: pd.DataFrame, judged: Side, other: Side, verdicts: dict[str, Verdict]
) -> PairedComparison:
    """Bootstrap (judged - other) on the rows both scored; ``verdicts`` renames the outcomes
    ``worse``, ``better`` and ``no_difference`` for the comparison's purpose."""
    watch, metric = spec.monitoring.watch, spec.monitoring.quality.metric
    rows = paired_rows(labeled, judged, other)
    names = f"v{judged.version} ({judged.role}) and v{other.version} ({other.role})"
    base = {
        "versions": {judged.role: judged.version, other.role: other.version},
        "rows": len(rows),
        "metric": metric,
        "confidence": watch.confidence,
    }
    undecided = {**base, "values": None, "difference": None, "interval": None, "verdict": "undecided"}
    if len(rows) < watch.min_labels:
        why = (
            f"undecided: {len(rows):,} labeled rows scored by both {names}"
            f" < monitoring.watch.min_labels {watch.min_labels:,}"
        )
        return PairedComparison.model_validate({**undecided, "why": why})
    dtype = rows[SERVED.prediction].dtype
    outputs = [
        Predictions.from_frame(rows, side.columns.prediction, side.columns.score, dtype)
        for side in (judged, other)
    ]
    rule = BootstrapRule(
        metric=metric,
        margin=-watch.margin,
        confidence=watch.confidence,
        resamples=watch.resamples,
        seed=watch.seed,
    )
    verdict = paired_bootstrap(rule, spec.task, rows[spec.columns.target].to_numpy(), *outputs)
    extra = verdict.model_extra or {}
    if "interval" not in extra:  # the metric is undefined on these rows or on too many resamples
        return PairedComparison.model_validate(
            {**undecided, "why": f"undecided: {verdict.note.removeprefix('failed: ')}"}
        )
    low, high = extra["interval"]
    outcome = "worse" if high < -watch.margin else "better" if low > watch.margin else "no_difference"
    measured = (
        f"{metric} of v{judged.version} ({judged.role}) {extra['candidate']:.4f} against"
        f" v{other.version} ({other.role}) {extra['champion']:.4f} on the same {len(rows):,} labeled rows:"
        f" difference {extra['estimate']:+.4f}, {watch.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    )
    below, above = f"{0 - watch.margin:+.4f}", f"{watch.margin:+.4f}"  # 0 - 0.0 prints +0.0000
    why = {
        "worse": f"worse: {measured}, wholly below {below} (minus monitoring.watch.margin)",
        "better": f"better: {measured}, wholly above {above} (monitoring.watch.margin)",
        "no_difference": f"no significant difference: {measured},"
        f" neither wholly below {below} nor above {above}",
    }[outcome]
    return PairedComparison.model_validate(
        {
            **base,
            "values": {judged.role: extra["candidate"], other.role: extra["champion"]},
            "difference": extra["estimate"],
            "interval": [low, high],
            "verdict": verdicts.get(outcome, outcome),
            "why": why,
        }
    )
