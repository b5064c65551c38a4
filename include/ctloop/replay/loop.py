"""The replay's loop: deliver each step's files, then run what the DAGs would, in their order.

Per step, at its simulated time: a training the spec's ``schedule.train`` cron makes due; the
score DAG's tasks (``new_batches``, ``score_batch`` for each, ``join_labels``); the monitor the
predictions asset starts (``run_monitor``); and the training its newly opened retrain request
starts, with trigger ``asset``, the monitor's reason and the metrics its alert fired on, as the
retrain asset event does. The monitor's own cron is not replayed: between steps no batch or
label arrives, so its extra runs would see no new evidence.

A task that fails on bad input is recorded on the step and the replay goes on, as the DAGs'
other runs do. Notifications are only logged: the replay installs no sender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.errors import BatchConflict, BatchQuarantined, CtloopError, NoChampion, SpecError
from ctloop.gating.alert_metrics import fired_metrics
from ctloop.io.readers import SUFFIXES
from ctloop.io.storage import open_storage
from ctloop.monitoring.monitor_run import quality, run_monitor
from ctloop.replay.environment import replay_settings, replay_spec
from ctloop.replay.overrides import apply_overrides
from ctloop.replay.records import BatchRecord, Monitored, ReplayResult, StepRecord, TrainingRecord
from ctloop.replay.schedule import Delivery, SimulatedTime, cron_fires, cron_interval, data_files, deliveries
from ctloop.replay.training import run_training
from ctloop.scoring.batches import new_batches, score_batch
from ctloop.scoring.late_labels import join_labels
from ctloop.scoring.prediction_log import LABELED, batch_ids, read_partitions
from ctloop.training.steps import RunContext

if TYPE_CHECKING:
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

FIRST_TRAINING_REASON = "replay: first training, on the spec's training data"
SCORE_FAILURES = {BatchQuarantined: "quarantined", BatchConflict: "conflict"}


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how; ``interval`` None: the spec's score cron interval, or an hour."""

    batches: Path
    labels: Path
    label_delay: int
    home: Path
    start: datetime
    interval: timedelta | None = None
    overrides: tuple[str, ...] = ()


@dataclass
class _Scored:
    action: str
    rows: int | None = None
    version: str | None = None
    errors: list[str] = field(default_factory=list)


def run_replay(
    spec: PipelineSpec,
    user: Settings,
    options: ReplayOptions,
    progress: Callable[[str], None] = lambda line: None,
) -> ReplayResult:
    """Replay ``spec`` (with the ``--set`` overrides) over the options' batches and labels in a home
    of its own; the records of every batch and training. ``user``: the settings the spec came with."""
    spec = replay_spec(apply_overrides(spec, options.overrides), user)
    if spec.gates.approval == "required":
        raise SpecError(
            "gates.approval: 'required' waits for a person, and a replay has none to ask;"
            " replay with --set gates.approval=none to see what the automatic gates decide"
        )
    suffixes = SUFFIXES[spec.scoring.format]
    plan = deliveries(
        data_files(options.batches, suffixes), data_files(options.labels, suffixes), options.label_delay
    )
    interval = options.interval or cron_interval(spec.schedule.score, options.start)
    replay = _Replay(
        spec, replay_settings(user, options.home), SimulatedTime(options.start, interval), progress
    )
    return replay.run(plan, options)


class _Replay:
    def __init__(
        self, spec: PipelineSpec, settings: Settings, time: SimulatedTime, progress: Callable[[str], None]
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.time = time
        self.progress = progress
        self.trainings: list[TrainingRecord] = []

    def run(self, plan: list[Delivery], options: ReplayOptions) -> ReplayResult:
        self.time.begin(0)
        first = self._train("manual", FIRST_TRAINING_REASON, step=0)
        if not first.promoted:
            raise NoChampion(
                f"{self.spec.name}: the first training was not promoted, so no batch can be scored:"
                f" {first.error or first.gate_summary}"
            )
        batches: list[BatchRecord] = []
        after_last_batch = None
        for delivery in plan:
            record = self._step(delivery)
            if isinstance(record, BatchRecord):
                batches.append(record)
            else:
                after_last_batch = record
        return ReplayResult(
            pipeline=self.spec.name,
            home=str(self.settings.home),
            start=options.start.isoformat(),
            interval_minutes=self.time.interval.total_seconds() / 60,
            label_delay=options.label_delay,
            overrides=list(options.overrides),
            quality_metric=self.spec.monitoring.quality.metric,
            batches=[self._with_served(record) for record in batches],
            trainings=self.trainings,
            after_last_batch=after_last_batch,
        )

    def _train(
        self, trigger: str, reason: str, step: int, alert_metrics: tuple[str, ...] = ()
    ) -> TrainingRecord:
        record = run_training(
            self.spec,
            self.settings,
            self.time,
            trigger=trigger,
            reason=reason,
            index=len(self.trainings),
            step=step,
            alert_metrics=alert_metrics,
        )
        self.trainings.append(record)
        outcome = record.promotion or record.error
        self.progress(f"{record.at}  train ({trigger}): {outcome}; champion v{record.champion_after}")
        return record

    def _step(self, delivery: Delivery) -> StepRecord:
        """Deliver the step's files and run the DAGs' tasks on them; the step's record."""
        self.time.begin(delivery.step)
        begun = self.time.step_start(delivery.step)
        trainings = len(self.trainings)
        if cron_fires(self.spec.schedule.train, self.time.step_start(delivery.step - 1), begun):
            self._train("schedule", "schedule", delivery.step)
        if delivery.batch is not None:
            open_storage(self.spec.incoming_uri, self.settings).write_bytes(
                delivery.batch.name, delivery.batch.read_bytes()
            )
        labels = open_storage(self.spec.labels_uri, self.settings)
        for label_file in delivery.labels:
            labels.write_bytes(label_file.name, label_file.read_bytes())
        scored = self._score(delivery.batch)
        monitored, requested = self._monitor()
        landed = delivery.batch.name if delivery.batch else "labels"
        self.progress(f"{begun.isoformat()}  {landed}: {monitored.decision}")
        if requested is not None:
            reason, alert_metrics = requested
            self._train("asset", reason, delivery.step, alert_metrics)
        fields: dict[str, Any] = {
            **monitored.model_dump(),
            "step": delivery.step,
            "at": begun.isoformat(),
            "labels_arrived": [p.name for p in delivery.labels],
            "trainings": list(range(trainings, len(self.trainings))),
        }
        if delivery.batch is None:
            record: StepRecord = StepRecord(**fields, errors=scored.errors)
        else:
            record = BatchRecord(
                **fields,
                errors=scored.errors,
                batch=delivery.batch.name,
                batch_id=delivery.batch.stem,
                action=scored.action,
                rows=scored.rows,
                champion_version=scored.version,
            )
        return record

    def _score(self, batch: Path | None) -> _Scored:
        """The score DAG: every pending batch (only this step's, in a replay), then the late labels."""
        scored = _Scored(action="none")
        for pending in new_batches(self.spec, self.settings):
            try:
                with self.time.task():
                    summary = score_batch(self.spec, self.settings, pending)
            except CtloopError as exc:
                scored.errors.append(f"score_batch {pending['batch_id']}: {type(exc).__name__}: {exc}")
                if batch is not None and pending["batch_id"] == batch.stem:
                    scored.action = SCORE_FAILURES.get(type(exc), "failed")
                continue
            if batch is not None and pending["batch_id"] == batch.stem:
                scored.action, scored.rows = summary["action"], summary.get("rows")
                scored.version = summary.get("model_version")
        try:
            with self.time.task():
                join_labels(self.spec, self.settings)
        except CtloopError as exc:
            scored.errors.append(f"join_labels: {type(exc).__name__}: {exc}")
        return scored

    def _monitor(self) -> tuple[Monitored, tuple[str, tuple[str, ...]] | None]:
        """The monitor DAG; with it the reason and the alert's metrics of a newly opened retrain
        request, which starts a training."""
        with self.time.task() as moment:
            ctx = RunContext(
                dag_id=f"{self.spec.name}__monitor",
                run_id=f"asset_triggered__{moment.isoformat()}",
                reason="predictions",
                trigger="asset",
            )
            try:
                summary = run_monitor(self.spec, self.settings, ctx)
            except CtloopError as exc:
                failed = Monitored(
                    decision="failed", reason=f"{type(exc).__name__}: {exc}", drift_share=None, quality=None
                )
                return failed, None
        decision = summary["decision"]
        monitored = Monitored(
            decision=decision["action"],
            reason=decision["why"],
            drift_share=summary.get("drift", {}).get("share"),
            quality=summary.get("quality", {}).get("value"),
        )
        if decision.get("request") != "opened":
            return monitored, None
        reason = "; ".join(decision["triggers"]) or "asset event"
        return monitored, (reason, tuple(fired_metrics(self.spec, summary)))

    def _with_served(self, record: BatchRecord) -> BatchRecord:
        """The record with the metrics of the predictions served for the batch, from its labels."""
        if record.batch_id not in batch_ids(LABELED, self.spec.name, self.settings):
            return record
        labeled = read_partitions(LABELED, self.spec.name, [record.batch_id], self.settings)
        return record.model_copy(update={"labeled_rows": len(labeled), "served": quality(self.spec, labeled)})
