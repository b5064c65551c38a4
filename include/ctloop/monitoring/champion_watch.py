"""Watching a new champion against the one it replaced, on the rows both of them scored.

A gate judges a candidate on held-out rows; only production shows what a new champion serves.
While the champion is the version promoted most recently, the previous champion shadow-scores
every batch (ctloop.scoring.batches), so once labels arrive both are measured on the same rows.
The gate's paired bootstrap (ctloop.gating.paired_bootstrap) turns the difference into an
interval: when it lies wholly below ``-monitoring.watch.margin`` the new champion is worse than
its predecessor, and the monitor rolls it back.

Only a promotion is watched. A rollback or a person's override is already a decision about which
model serves; watching it too would let two models roll each other back in turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.paired_bootstrap import paired_bootstrap
from ctloop.registry import ledger
from ctloop.scoring.prediction_log import SHADOW_PREDICTION, SHADOW_SCORE, SHADOW_VERSION
from ctloop.spec.models import BootstrapRule

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

Verdict = Literal["rollback", "hold", "undecided"]


class ChampionComparison(BaseModel):
    """The champion's served quality against the previous champion's on the same labeled rows.

    ``difference`` and ``interval`` are (champion - previous) in the metric's good direction, so
    a negative value is a regression whatever the metric; ``why`` says how the verdict was reached.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    versions: dict[str, str]
    rows: int
    metric: str
    champion: float | None
    previous: float | None
    difference: float | None
    interval: list[float] | None
    confidence: float
    verdict: Verdict
    why: str


def watched_promotion(settings: Settings, pipeline: str, champion_version: str) -> ledger.LedgerEntry | None:
    """The promotion that made ``champion_version`` champion, if it is the alias's last move and
    replaced an earlier champion; None when there is nothing to watch."""
    moves = ledger.entries(settings, pipeline)
    last = moves[-1] if moves else None
    if last is None or last.action != "promotion" or last.to_version != champion_version:
        return None
    return last if last.from_version else None


def paired_rows(labeled: pd.DataFrame, champion: str, previous: str) -> pd.DataFrame:
    """The labeled rows ``champion`` served and ``previous`` shadow-scored."""
    if labeled.empty or SHADOW_VERSION not in labeled.columns:
        return labeled.iloc[:0]
    served = labeled["model_version"].astype(str) == champion
    shadowed = labeled[SHADOW_VERSION].astype(str) == previous
    return labeled[served & shadowed & labeled[SHADOW_SCORE].notna()]


def compare(spec: PipelineSpec, labeled: pd.DataFrame, champion: str, previous: str) -> ChampionComparison:
    """Compare ``champion`` with ``previous`` on the labeled rows both scored (a seeded paired
    bootstrap); ``labeled`` is the labeled prediction log, shadow columns included."""
    watch, metric = spec.monitoring.watch, spec.monitoring.quality.metric
    rows = paired_rows(labeled, champion, previous)
    base = {
        "versions": {"champion": champion, "previous": previous},
        "rows": len(rows),
        "metric": metric,
        "confidence": watch.confidence,
    }
    undecided = {**base, "champion": None, "previous": None, "difference": None, "interval": None}
    if len(rows) < watch.min_labels:
        why = (
            f"undecided: {len(rows):,} labeled rows scored by both v{champion} and v{previous}"
            f" < monitoring.watch.min_labels {watch.min_labels:,}"
        )
        return ChampionComparison.model_validate({**undecided, "verdict": "undecided", "why": why})
    served = Predictions(rows["prediction"].to_numpy(), rows["score"].to_numpy(dtype=float))
    shadow = Predictions(
        rows[SHADOW_PREDICTION].astype(rows["prediction"].dtype).to_numpy(),
        rows[SHADOW_SCORE].to_numpy(dtype=float),
    )
    rule = BootstrapRule(
        metric=metric,
        margin=-watch.margin,
        confidence=watch.confidence,
        resamples=watch.resamples,
        seed=watch.seed,
    )
    verdict = paired_bootstrap(rule, spec.task, rows[spec.columns.target].to_numpy(), served, shadow)
    extra = verdict.model_extra or {}
    if "interval" not in extra:  # the metric is undefined on these rows or on too many resamples
        why = f"undecided: {verdict.note.removeprefix('failed: ')}"
        return ChampionComparison.model_validate({**undecided, "verdict": "undecided", "why": why})
    low, high = extra["interval"]
    regressed = high < -watch.margin
    measured = (
        f"v{champion} serves {metric} {extra['candidate']:.4f} against v{previous}'s {extra['champion']:.4f}"
        f" on the same {len(rows):,} labeled rows: difference {extra['estimate']:+.4f},"
        f" {watch.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    )
    bound = f"{0 - watch.margin:+.4f} (minus monitoring.watch.margin)"  # 0 - 0.0 prints +0.0000, not -0.0000
    why = (
        f"regression: {measured}, wholly below {bound}"
        if regressed
        else f"no significant regression: {measured}, not wholly below {bound}"
    )
    return ChampionComparison.model_validate(
        {
            **base,
            "champion": extra["candidate"],
            "previous": extra["champion"],
            "difference": extra["estimate"],
            "interval": [low, high],
            "verdict": "rollback" if regressed else "hold",
            "why": why,
        }
    )
