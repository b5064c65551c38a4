"""What each training step hands the next, as frozen pydantic models.

A step returns one of these; the train DAG turns it into JSON for XCom
(``model_dump(mode="json")``) and the next step validates that JSON back
(``Model.model_validate``), so a payload of the wrong shape fails at the step that reads it,
naming the field. Field names are the JSON keys the UI, the model card and earlier runs' XComs
use: renaming one is a change of interface.

The gate's decision is :class:`ctloop.gating.decision.GateDecision`; the promotion's result
:class:`ctloop.registry.promotion.PromotionResult`; the register step hands on the version
number alone, as a string (the approval request's templates read it as one).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ctloop.data.sampling import DataSample
from ctloop.evaluation.importance import Importances
from ctloop.gating.decision import GateDecision
from ctloop.registry import tags
from ctloop.registry.mlflow_store import LoggedModel
from ctloop.registry.promotion import PromotionResult


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provenance(BaseModel):
    """Why the run started, keyed by the MLflow tag names it is recorded under on the run and
    the version (the JSON keys are those tag names)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )

    reason: str = Field(alias=tags.REASON)
    trigger: str = Field(alias=tags.TRIGGER)
    started_by: str = Field(alias=tags.STARTED_BY)
    alert_id: str = Field(alias=tags.ALERT_ID)
    request_id: str = Field(alias=tags.REQUEST_ID)
    trigger_reports: str = Field(alias=tags.TRIGGER_REPORTS)

    def as_tags(self) -> dict[str, str]:
        return self.model_dump(by_alias=True)


class SnapshotRef(_Contract):
    """The frozen data of the run (its column list stays in storage, with the data): its rows come
    from ``sources`` in order, ``source_rows`` from each, the last ``labeled_sources`` of them
    labeled production batches, so a training window can be cut from it. With ``data.max_rows``
    it is the sample, and ``sample`` says what it did."""

    key: str
    uri: str
    sha256: str
    rows: int
    sources: list[str]
    source_rows: list[int]
    labeled_sources: int
    created: bool
    sample: DataSample | None


class HoldoutRef(_Contract):
    """A stored holdout (frozen or recent) the candidate and the champion are both judged on."""

    key: str
    digest: str
    rows: int


class RecentHoldoutRef(_Contract):
    """The most recent labeled production batches, set aside from training (``gates.recent_holdout``):
    ``holdout`` is None when they were not used; ``note`` says which batches, or why none."""

    holdout: HoldoutRef | None
    sources: list[str]
    note: str


class Started(_Contract):
    """The ``snapshot`` task's result: the run's MLflow run, data snapshot, recent holdout and
    provenance."""

    mlflow_run_id: str
    snapshot: SnapshotRef
    recent_holdout: RecentHoldoutRef
    provenance: Provenance


class CheckFailure(_Contract):
    """One failed check; ``column`` is None for a check of the whole table."""

    check: str
    column: str | None
    detail: str


class Validated(_Contract):
    """The ``validate`` task's result: the validation report without GX's raw result, and where
    the full result, its readable page and the suite the run used are stored."""

    suite: str
    suite_path: str
    rows: int
    schema_failures: list[CheckFailure]
    expectation_failures: list[CheckFailure]
    statistics: dict[str, int | float | None]
    success: bool
    result_uri: str
    html_uri: str
    suite_key: str


class WindowCandidate(_Contract):
    """One window tried: its training rows (its frozen holdout cut out), its score on the recent
    holdout (None when it was not fitted) and whether it was chosen, scored or skipped, and why."""

    window: str
    rows: int
    score: float | None
    status: Literal["chosen", "scored", "skipped"]
    note: str


class WindowChoice(_Contract):
    """The choice of a run's training window: the metric it was judged by on the recent holdout,
    the window kept and why, the time it took against the budget, and every candidate."""

    metric: str
    higher_is_better: bool
    recent_rows: int
    chosen: str
    why: str
    budget_seconds: float
    seconds: float
    candidates: list[WindowCandidate]
    change_point: str = ""
    """Where the champion's served quality broke (the ``since:<batch>`` window), or why no change
    point was found; empty in choices recorded before it was looked for."""


class Trained(_Contract):
    """The ``train`` task's result: the logged candidate, its frozen holdout and the recent holdout;
    the window it was trained on (``all``, ``batches:2``...) and, when the run chose it from
    evidence, the choice with every alternative (None: the spec's ``retrain.data`` was used)."""

    mlflow_run_id: str
    model: LoggedModel
    holdout: HoldoutRef
    recent_holdout: RecentHoldoutRef
    train_rows: int
    data_window: str
    window_selection: WindowChoice | None


class HoldoutScores(_Contract):
    """Both models' metrics on one holdout (``champion`` None without a champion), and where
    their per-row predictions are stored."""

    holdout: HoldoutRef
    candidate: dict[str, float]
    champion: dict[str, float] | None
    predictions_key: str


class Evaluation(_Contract):
    """The ``evaluate`` task's result: both models' metrics on the same frozen holdout, and where
    their per-row predictions are stored for the bootstrap and slice rules; the same on the recent
    holdout (None when there is none: ``recent_note`` says why); and the run's ``trigger``, by
    which the gate chooses the holdout of its relative rules (``gates.recent_holdout``)."""

    mlflow_run_id: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    holdout_digest: str
    holdout_key: str
    predictions_key: str
    recent: HoldoutScores | None
    recent_note: str
    trigger: str
    alert_metrics: list[str] = []
    """The metrics of the monitor's alert that started the run (empty for any other run, and in
    results recorded before it existed), which the gate judges it on (``gates.alert_metrics``)."""
    importance: Importances | None = None
    """Both models' permutation importance on a sample of the frozen holdout and the large shifts
    between them (None: ``explanations.enabled`` is false, or a result recorded before it existed)."""
    per_class: dict[str, dict[str, dict[str, float]]] | None = None
    """A multiclass model's metrics per class on the frozen holdout, for ``candidate`` and
    ``champion`` (when there is one): class label as text -> ``precision``, ``recall``, ``f1``,
    ``support`` (ctloop.evaluation.per_class); None for binary and regression models."""


class Finished(BaseModel):
    """The ``record_outcome`` task's result: the closed retrain request of the run.

    Its other fields (reasons, timestamps) belong to :mod:`ctloop.monitoring.retrain_requests`
    and are kept as that module wrote them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    pipeline: str
    state: str
    outcome: str | None
    version: str | None


class TrainResults(_Contract):
    """What the run's tasks returned, by task id; None for a task that failed or was skipped.

    ``approve`` is Airflow's human-in-the-loop response, as that operator records it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_alias=True, validate_by_name=True)

    snapshot: Started | None = None
    validation: Validated | None = Field(None, alias="validate")
    train: Trained | None = None
    evaluate: Evaluation | None = None
    registered: str | None = Field(None, alias="register")
    gate: GateDecision | None = None
    promote: PromotionResult | None = None
    approve: dict[str, Any] | None = None
