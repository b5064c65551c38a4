"""What the gate hands on: one verdict per rule, the decision over all of them, and the evidence
the rules beyond point thresholds gathered (slices, latency).

The decision travels to the promote task through XCom and is logged as ``gate/decision.json``;
the model card and the approval request read it back, so field names are an interface.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool

DECISION_ARTIFACT = "gate/decision.json"
"""Where the gate step logs its decision on the training run (the champion watch reads it back)."""


class GateVerdict(BaseModel):
    """One rule's verdict; ``passed`` is None when the rule was skipped (the note says why).

    Every rule adds its own evidence as extra fields (the champion's value, the bootstrap
    interval, a slice's rows...); they are kept as given, so the decision shows them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    rule: str
    metric: str
    kind: str
    value: float | None
    bound: float | None
    passed: StrictBool | None
    note: str


class SliceResult(BaseModel):
    """One slice of the holdout: both models' metrics on its rows, and whether the rules judged it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slice: str
    definition: str
    column: str
    rows: int
    candidate: dict[str, float | None]
    champion: dict[str, float | None] | None
    judged: bool
    why_not_judged: str | None


class SliceReport(BaseModel):
    """Every slice's metrics and the verdicts of the slice rules on them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slices: list[SliceResult]
    verdicts: list[GateVerdict]


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    p50: float
    p95: float


class LatencyMeasurement(BaseModel):
    """Milliseconds of one-row and of batch predictions, as the decision records them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    single_ms: Percentiles
    batch_ms: Percentiles
    batch_rows: int
    repeats: int


class LatencyReport(LatencyMeasurement):
    """A measurement with the verdicts of the limits the spec sets."""

    verdicts: list[GateVerdict]

    def measurement(self) -> LatencyMeasurement:
        return LatencyMeasurement.model_validate(self.model_dump(exclude={"verdicts"}))


class PrimaryComparison(BaseModel):
    """The candidate's and the champion's value of the spec's primary metric and its direction:
    what a re-evaluation against a new champion adds to its decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    higher_is_better: bool
    candidate: float
    champion: float | None


HoldoutName = Literal["frozen_holdout", "recent_holdout"]


class RelativeComparison(BaseModel):
    """Where the relative rules and the bootstrap compare candidate and champion, why there, and
    both models' metrics on it (``champion`` None without a champion)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on: HoldoutName
    why: str
    candidate: dict[str, float]
    champion: dict[str, float] | None


class GateDecision(BaseModel):
    """The gate's decision on a candidate: every verdict, whether all passed, whether to promote,
    and the evidence of the slice and latency rules. ``relative_on`` is the holdout the relative
    rules and the bootstrap were judged on and ``relative_on_why`` why (absolute rules and slices
    are always judged on the frozen holdout). ``alert_metrics`` are the metrics of the monitor's
    alert that started the run, which the candidate had to be better on (``gates.alert_metrics``;
    empty: judged like any run), and ``alert_metrics_why`` why. ``evidence_md`` is what a reviewer
    reads when a person must approve; ``primary`` is set on a re-evaluation under the promotion lock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["enabled", "dry_run"]
    passed: bool
    promote: bool
    champion_version: str | None
    rules: list[GateVerdict]
    failed: list[str]
    relative_on: HoldoutName = "frozen_holdout"
    relative_on_why: str = ""
    alert_metrics: list[str] = []
    alert_metrics_why: str = ""
    summary: str = ""
    slices: list[SliceResult] | None = None
    slice_metric: str | None = None
    latency: LatencyMeasurement | None = None
    evidence_md: str | None = None
    primary: PrimaryComparison | None = None


class RuleChecks(BaseModel):
    """The verdicts of the bootstrap, slice, validity and latency rules, with their evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdicts: list[GateVerdict]
    slices: list[SliceResult] | None = None
    slice_metric: str | None = None
    latency: LatencyMeasurement | None = None
