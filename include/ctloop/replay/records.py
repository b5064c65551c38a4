"""What a replay reports: one record per production batch, one per training, and the timeline.

The records are the replay's JSON (``{"batches": [...], "trainings": [...]}``), so their field
names are an interface: a backtest script compares two replays' files by them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Monitored(_Record):
    """The monitor run that followed a step's deliveries."""

    decision: str = Field(description="the monitor's action: hold, retrain, attach, breaker_open or failed")
    reason: str = Field(description="why, as the monitor recorded it")
    drift_share: float | None = Field(description="share of the features that drifted in the window")
    quality: float | None = Field(description="the monitored quality metric on the window's labeled rows")


class StepRecord(Monitored):
    """One step of the replay: the files that landed, the monitor's decision, the trainings it led to."""

    step: int
    at: str = Field(description="the simulated time the step began")
    labels_arrived: list[str] = Field(description="label files delivered at this step")
    trainings: list[int] = Field(description="indices into the trainings run at this step")
    errors: list[str] = Field(description="tasks of the step that failed, with their error")


class BatchRecord(StepRecord):
    """A production batch: what scored it and how its predictions fared once labeled."""

    batch: str = Field(description="the batch's file name")
    batch_id: str
    action: str = Field(description="scored, duplicate, quarantined, conflict or failed")
    rows: int | None
    champion_version: str | None = Field(description="the model version that scored the batch")
    labeled_rows: int = 0
    served: dict[str, float] | None = Field(
        None, description="metrics of the predictions served for this batch, from its labels"
    )


class TrainingRecord(_Record):
    """One training run, through every step of the train DAG."""

    index: int
    step: int
    at: str
    trigger: str = Field(description="manual (the first training), schedule or asset (a monitor alert)")
    reason: str
    run_key: str
    window: str | None = Field(description="the training data window recorded on the MLflow run")
    snapshot_rows: int | None
    train_rows: int | None
    sources: list[str] = Field(description="the data files and labeled batches the snapshot holds")
    gate: str | None = Field(description="passed or rejected; None when the run stopped before it")
    gate_summary: str | None
    version: str | None = Field(description="the registered candidate's version")
    promotion: str | None = Field(description="what the promote step did (promoted, not_promoted, ...)")
    promoted: bool
    champion_before: str | None
    champion_after: str | None
    error: str | None = None


class ReplayResult(_Record):
    """A whole replay, as written to its JSON file."""

    pipeline: str
    home: str = Field(description="the replay's own CTLOOP_HOME: its MLflow store, logs and reports")
    start: str
    interval_minutes: float
    label_delay: int
    overrides: list[str] = Field(description="the --set KEY=VALUE changes to the spec")
    quality_metric: str
    batches: list[BatchRecord]
    trainings: list[TrainingRecord]
    after_last_batch: StepRecord | None = Field(description="the step delivering the outstanding labels")


class TimelineRow(_Record):
    """One line of the printed timeline, in the demo's columns."""

    step: str
    drift: str = ""
    quality: str = ""
    decision: str = ""
    champion: str = ""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _version(version: str | None) -> str:
    return f"v{version}" if version else "none"


def timeline(result: ReplayResult) -> list[TimelineRow]:
    """Every training and step in the order they happened; a batch line shows what its predictions
    scored on its labels (``served``) next to the monitor's view of its window."""
    metric = result.quality_metric
    events: list[tuple[str, TimelineRow]] = []
    for training in result.trainings:
        outcome = training.promotion or ("failed" if training.error else "stopped")
        detail = training.error or training.gate_summary or ""
        row = TimelineRow(
            step=f"train ({training.trigger})",
            decision=f"{outcome}: {detail}" if detail else outcome,
            champion=_version(training.champion_after),
        )
        events.append((training.at, row))
    steps: list[StepRecord] = [*result.batches]
    if result.after_last_batch is not None:
        steps.append(result.after_last_batch)
    for step in steps:
        if isinstance(step, BatchRecord):
            served = (step.served or {}).get(metric)
            name = f"{step.batch} ({step.action}, served {metric} {_number(served)})"
            champion = _version(step.champion_version)
        else:
            name, champion = f"labels of {', '.join(step.labels_arrived)}", ""
        row = TimelineRow(
            step=name,
            drift=_number(step.drift_share),
            quality=_number(step.quality),
            decision=f"{step.decision}: {step.reason}",
            champion=champion,
        )
        events.append((step.at, row))
    return [row for _, row in sorted(events, key=lambda event: event[0])]
