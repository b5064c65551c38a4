"""The README's first command: the whole loop on the embedded default, told as a timeline.

The demo runs the real Airflow components (ctloop.devtools.local_deployment) on CTLOOP_HOME and does only what
the world outside ctloop does: training data and production batches land, labels arrive one batch
late, and the scoring DAG is triggered per batch (its cron would wait up to 30 minutes).
Everything else happens by itself: the predictions asset starts ``churn__monitor``, the monitor
decides, and a confirmed alert's retrain asset event makes the scheduler start ``churn__train``.

Story: train v1 (only if there is no champion yet), stable batches (no retrain), covariate shift
(the monitor alerts, k-of-n confirms, one retrain runs and its gate promotes or rejects), and one
more shifted batch after it, to show the guards that follow a retrain. Then concept drift: the
labelling rule changes while the features keep their distribution, so only the labels show it; once
they arrive the champion's served quality drops, the severe drop retrains at once, the retrain
chooses its window and is judged on the recent holdout, and the batches after a promotion show
whether served accuracy recovered. Each batch's row shows the version that scored it and, once its
labels arrived, the accuracy of the predictions served for it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ctloop.devtools.example_data import COVARIATE_SHIFT, write_batches, write_labels
from ctloop.registry import tags as names
from ctloop.settings import load_settings
from ctloop.timeline import Row, format_timeline

if TYPE_CHECKING:
    from pathlib import Path

    from ctloop.devtools.local_deployment import LocalDeployment
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

PIPELINE = "churn"
TRAIN, SCORE, MONITOR = (f"{PIPELINE}__{kind}" for kind in ("train", "score", "monitor"))
FIRST_TRAINING_BATCHES = 4
STABLE_BATCHES = 3
MAX_SHIFTED_BATCHES = 4
# The first changed batch's labels start a retrain at once; room for two more should it be rejected.
MAX_CONCEPT_BATCHES = 5
SERVED_METRIC = "accuracy"
BREAKER_OPEN = "breaker_open"


class Demo:
    """Drives the story against a running stack and collects the timeline."""

    def __init__(self, stack: LocalDeployment, settings: Settings, spec: PipelineSpec, rows: int) -> None:
        self.stack = stack
        self.settings = settings
        self.spec = spec
        self.rows = rows
        self.timeline: list[Row] = []
        self.batches: dict[int, dict[str, Any]] = {}  # index -> the generator's options
        self.served_rows: dict[str, Row] = {}  # batch id -> its row, whose served column is filled last
        self.trainings: list[str] = []
        self.failures: list[str] = []

    @property
    def home(self) -> Path:
        return self.settings.home

    def run(self) -> None:
        for dag_id in (SCORE, MONITOR):
            self.stack.wait_for_dag(dag_id)
        self._scheduled_first_training()
        if self._champion() is None:
            self._first_training()
        for _ in range(STABLE_BATCHES):
            self._batch("stable")
        for _ in range(MAX_SHIFTED_BATCHES):
            if self._batch("shifted", shift=COVARIATE_SHIFT) is not None:
                self._batch("shifted", shift=COVARIATE_SHIFT)  # what the guards do right after a retrain
                break
        self._concept_drift()

    def _concept_drift(self) -> None:
        """Concept batches until a retrain promotes (then two more: the first is served by the new
        champion, the second brings its labels) or the circuit breaker stops retraining."""
        for _ in range(MAX_CONCEPT_BATCHES):
            outcome = self._batch("concept drift", concept_drift=True)
            if outcome is not None and outcome.startswith("promoted"):
                self._batch("concept drift", concept_drift=True)
                self._batch("concept drift", concept_drift=True)
                return
            if outcome == BREAKER_OPEN:
                return

    def fill_served(self) -> None:
        """Each batch's served accuracy, from its labels as joined to the prediction log."""
        for batch_id, row in self.served_rows.items():
            metrics = served(self.spec, self.settings, batch_id)
            row.served = f"{metrics[SERVED_METRIC]:.3f}" if metrics else "-"

    def _scheduled_first_training(self) -> None:
        """``churn__train`` starts unpaused (ctloop's default for the DAGs people start) and with
        catchup=False, so the scheduler runs its latest cron point as soon as the DAG is parsed: on
        a new home that run is the (first) training, on the data that landed before the stack
        started, and the demo follows it instead of adding one."""
        self.stack.wait_for_dag(TRAIN)
        if self._champion() is not None:
            return
        run = self._new_run(TRAIN, 0, timeout=30)
        if run is not None and run["run_type"] == "scheduled" and len(self.stack.runs(TRAIN)) == 1:
            self._finish_training(run["dag_run_id"], "scheduled training (started when the DAG appeared)")

    def _first_training(self) -> None:
        run = self.stack.trigger(TRAIN, {"reason": "demo: first training", "note": "ctloop demo"})
        self._finish_training(run["dag_run_id"], "first training")

    def _batch(self, kind: str, **options: Any) -> str | None:
        """One production batch through score and monitor; when it led to a retraining, what the
        retraining's promote step did (``breaker_open`` when the monitor may no longer retrain)."""
        index = self._next_batch_index()
        incoming = self._area(self.spec.incoming_uri)
        write_batches(incoming, range(index, index + 1), rows=self.rows, with_target=False, **options)
        self.batches[index] = options
        if index - 1 in self.batches:  # the previous batch's labels arrive now, one batch late
            write_labels(
                self._area(self.spec.labels_uri), index - 1, rows=self.rows, **self.batches[index - 1]
            )
        monitor_runs = len(self.stack.runs(MONITOR))
        trainings = len(self.stack.runs(TRAIN))
        score = self.stack.trigger(SCORE, {})
        self._wait(SCORE, score["dag_run_id"])
        monitor = self._wait_for_new_run(MONITOR, monitor_runs)
        entry = self._latest_decision()
        batch_id = f"batch-{index:04d}"
        row = Row(
            step=f"{batch_id} ({kind})",
            drift=f"{entry['drift_share']:.2f}" if entry else "-",
            quality=f"{entry['quality']:.3f}" if entry and entry["quality"] is not None else "-",
            decision=f"{entry['action']}: {entry['why']}" if entry else f"monitor {monitor['state']}",
            champion=self._scored_by(batch_id),
        )
        self.timeline.append(row)
        self.served_rows[batch_id] = row
        if entry and entry["action"] == BREAKER_OPEN:
            return BREAKER_OPEN
        if not entry or entry["action"] != "retrain":
            return None
        train = self._wait_for_new_run(TRAIN, trainings)
        return self._finish_training(
            train["dag_run_id"], "retrain (started by the monitor's asset event)", train
        )

    def _finish_training(self, run_id: str, step: str, finished: dict | None = None) -> str:
        """Add the training's rows (its chosen window, when it chose one; its gate and promotion);
        what its promote step did."""
        finished = finished or self._wait(TRAIN, run_id)
        run = training_run(self.settings, run_id)
        tags = run.data.tags if run else {}
        outcome = tags.get(names.PROMOTION) or f"run {finished['state']}"
        selection = tags.get(names.WINDOW_SELECTION)
        if selection:
            choice = json.loads(selection)
            self.timeline.append(Row(step=step, decision=f"trains on {choice['chosen']}: {choice['why']}"))
            step = "  gate and promotion"
        judged_on = tags.get(names.GATE_RELATIVE_ON)
        if judged_on:
            step += f" (relative rules on the {judged_on.replace('_', ' ')})"
        decision = f"{outcome}: {tags.get(names.GATE_SUMMARY, '')}"
        self.timeline.append(Row(step=step, decision=decision, champion=self._champion_label()))
        self.trainings.append(run_id)
        return outcome

    def _wait(self, dag_id: str, run_id: str) -> dict:
        finished = self.stack.wait_for_run(dag_id, run_id, timeout=900)
        if finished["state"] != "success" and dag_id != MONITOR:  # a breaker-open monitor fails on purpose
            self.failures.append(f"{dag_id} {run_id} {finished['state']}")
        return finished

    def _new_run(self, dag_id: str, known: int, timeout: float) -> dict | None:
        """The first run of ``dag_id`` after the ``known`` ones, once the scheduler has created it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            created = self.stack.runs(dag_id)[known:]
            if created:
                return created[0]
            time.sleep(1)
        return None

    def _wait_for_new_run(self, dag_id: str, known: int) -> dict:
        """The first run of ``dag_id`` after the ``known`` ones, once it has finished."""
        run = self._new_run(dag_id, known, timeout=120)
        if run is None:
            raise RuntimeError(f"the scheduler started no {dag_id} run:\n{self.stack.diagnose()}")
        return self._wait(dag_id, run["dag_run_id"])

    def _next_batch_index(self) -> int:
        """After every batch written so far, training or production (a second demo continues)."""
        written = (self.home / "data" / PIPELINE).glob("*/batch-*.csv")
        return max([FIRST_TRAINING_BATCHES - 1, *(int(p.stem.removeprefix("batch-")) for p in written)]) + 1

    def _area(self, uri: str) -> Path:
        from pathlib import Path

        path = Path(uri)
        return path if path.is_absolute() else self.home / path

    def _scored_by(self, batch_id: str) -> str:
        """The version whose predictions were served for the batch, from the prediction log."""
        from ctloop.scoring.prediction_log import PREDICTIONS, batch_ids, read_partitions

        if batch_id not in batch_ids(PREDICTIONS, PIPELINE, self.settings):
            return "-"
        versions = read_partitions(PREDICTIONS, PIPELINE, [batch_id], self.settings)["model_version"]
        return ", ".join(f"v{v}" for v in sorted(versions.astype(str).unique()))

    def _latest_decision(self) -> dict | None:
        from ctloop.io.storage import home_storage
        from ctloop.monitoring.monitor_run import history_prefix

        storage = home_storage(self.settings)
        keys = storage.list_keys(history_prefix(PIPELINE))
        return json.loads(storage.read_bytes(keys[-1])) if keys else None

    def _champion(self):
        from ctloop.registry import mlflow_store as registry

        return registry.get_champion(registry.client(self.settings), PIPELINE)

    def _champion_label(self) -> str:
        champion = self._champion()
        return f"v{champion.version}" if champion else "none"


def served(spec: PipelineSpec, settings: Settings, batch_id: str) -> dict[str, float] | None:
    """The metrics of the predictions served for a batch, from its labels; None before they arrive."""
    from ctloop.monitoring.monitor_run import quality
    from ctloop.scoring.prediction_log import LABELED, batch_ids, read_partitions

    if batch_id not in batch_ids(LABELED, spec.name, settings):
        return None
    return quality(spec, read_partitions(LABELED, spec.name, [batch_id], settings))


def training_run(settings: Settings, run_id: str):
    """The MLflow run of the ``churn__train`` Airflow run ``run_id``, or None."""
    from ctloop.registry import mlflow_store as registry

    client = registry.client(settings)
    experiment = client.get_experiment_by_name(PIPELINE)
    if experiment is None:
        return None
    key = f"{TRAIN}/{run_id}"
    runs = client.search_runs([experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{key}'")
    return runs[0] if runs else None


def describe_training(settings: Settings, run_id: str) -> str:
    """What a training run did, read back from its MLflow run."""
    run = training_run(settings, run_id)
    if run is None:
        return f"{TRAIN}/{run_id}: no MLflow run was recorded"
    tags, metrics = run.data.tags, run.data.metrics

    def metric_line(prefix: str) -> str:
        return "  ".join(
            f"{k.removeprefix(prefix)} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(prefix)
        )

    return "\n".join(
        [
            f"{TRAIN} / {run_id}",
            f"  reason      {tags.get(names.REASON)}",
            f"  reports     {tags.get(names.TRIGGER_REPORTS) or '-'}",
            f"  data        sha256 {tags.get(names.DATA_SHA256)}",
            f"              snapshot {tags.get(names.DATA_URI)}",
            f"  validation  {tags.get(names.VALIDATION, 'not run')}",
            f"  candidate   {metric_line(names.HOLDOUT_METRIC_PREFIX) or 'not evaluated'}",
            f"  champion    {metric_line(names.CHAMPION_METRIC_PREFIX) or 'none yet'}",
            f"  gate        {tags.get(names.GATE_SUMMARY, 'not reached')}",
            f"  promotion   {tags.get(names.PROMOTION, 'not reached')}",
            f"  MLflow run  {run.info.run_id} (experiment {PIPELINE})",
        ]
    )


def _land_training_data(settings: Settings, rows: int) -> None:
    """The first training's data, unless an earlier demo on this home already wrote it."""
    data = settings.home / "data" / PIPELINE / "training"
    if not sorted(data.glob("batch-*.csv")):
        write_batches(data, range(FIRST_TRAINING_BATCHES), rows=rows)


def run_demo(home: Path, rows_per_batch: int) -> int:
    """Run the story on a local stack and print the timeline; 0 when every run ended as expected."""
    from ctloop.devtools.local_deployment import LocalDeployment
    from ctloop.spec.loading import load_spec

    settings = load_settings()
    spec = load_spec(settings.pipelines_dir / f"{PIPELINE}.yaml")
    _land_training_data(settings, rows_per_batch)  # before the scheduler's first training starts
    print(f"Starting Airflow (api-server, scheduler, dag-processor) on {home} ...", flush=True)
    with LocalDeployment(home, settings.pipelines_dir) as stack:
        demo = Demo(stack, settings, spec, rows_per_batch)
        try:
            demo.run()
        finally:
            demo.fill_served()
            print("\n" + format_timeline(demo.timeline, spec.monitoring.quality.metric, SERVED_METRIC) + "\n")
    for run_id in demo.trainings:
        print(describe_training(settings, run_id) + "\n")
    reports = sorted((home / "storage" / "runs" / MONITOR).glob("*/report.html"))
    print(
        f"""Drift reports (Evidently HTML and summary.json, one per monitor run), also in MLflow:
  {home / "storage" / "runs" / MONITOR}/<run id>/report.html
  latest: {reports[-1] if reports else "none"}
State lives in {home}. To look at it:
  Airflow UI:  make airflow      (airflow standalone on this home; http://127.0.0.1:8080)
  MLflow UI:   make mlflow-ui    (http://127.0.0.1:5000, experiments '{PIPELINE}' and '{PIPELINE}-monitoring')
"""
    )
    if demo.failures:
        print(f"FAILED runs: {demo.failures}")
        return 1
    return 0
