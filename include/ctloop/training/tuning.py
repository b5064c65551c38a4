"""Tuning in the loop: an Optuna search over ``tuning.space`` before the candidate is trained.

The search sees only the training rows: it cuts its own validation split from them (seeded,
stratified for classification), so the frozen and recent holdouts stay unseen and the tuned
candidate is judged by the same gates, on the same holdouts, as any other. Its record (best
params, every trial) goes on the run, so a reviewer sees what was tried and a retried task
trains with the params the first attempt found.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.errors import EstimatorError
from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.evaluation.model_scores import evaluate
from ctloop.registry import tags
from ctloop.training.estimator import fit

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from mlflow import MlflowClient

    from ctloop.spec.models import PipelineSpec, Tuning, TuningParam

log = logging.getLogger(__name__)

STUDY_ARTIFACT = "tuning/study.json"
PARAM_PREFIX = "tuned."  # the run's params: the best trial's value of each tuned name
METRIC_PREFIX = "tuning_best_"  # the run's metric: the best validation value of the tuned metric
ERROR_CHARS = 500  # a failed trial's error, as recorded

ParamValue = bool | int | float | str | None


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrialSummary(_Frozen):
    """One trial: what it sampled and how it ended (``value`` is None unless complete)."""

    number: int
    params: dict[str, ParamValue]
    value: float | None
    state: Literal["complete", "failed"]
    error: str | None = None
    seconds: float


class TuningResult(_Frozen):
    """What a search found and how: ``best_params`` are the params to train the candidate with
    (``estimator.params`` updated by the best trial's ``tuned_params``)."""

    best_params: dict[str, Any]
    tuned_params: dict[str, ParamValue]
    best_value: float
    best_trial: int
    metric: str
    direction: Literal["maximize", "minimize"]
    trials_completed: int
    trials_failed: int
    seconds: float
    fit_rows: int
    validation_rows: int
    left_out_rows: int
    seed: int
    trials: list[TrialSummary]

    def mlflow_params(self) -> dict[str, str]:
        """The run's params: each tuned name's best value."""
        return {f"{PARAM_PREFIX}{name}": str(value) for name, value in self.tuned_params.items()}

    def tag_value(self) -> str:
        """The summary a tag holds (on the run and the version): best params and counts; every
        trial is in the run's artifact ``tuning/study.json``."""
        summary = self.model_dump(mode="json", exclude={"trials", "best_params"})
        return json.dumps({**summary, "study": STUDY_ARTIFACT}, separators=(",", ":"))[: tags.TAG_VALUE_CHARS]


def tune(spec: PipelineSpec, training: pd.DataFrame) -> TuningResult:
    """Search ``spec.tuning.space`` on a validation split of ``training`` (the rows the candidate
    trains on, never a holdout); each trial fits ``fit(spec, part, params)`` and scores
    ``tuning.metric`` (default: the gates' primary metric) on the validation rows.

    A trial the estimator refuses, or whose metric is undefined, is recorded as failed and the
    search goes on, since a space may hold values or combinations the estimator rejects; when no
    trial succeeds, :class:`EstimatorError` names ``tuning.space`` and the first error.
    """
    import optuna

    tuning = _tuning(spec)
    metric = tuning.metric or spec.primary_metric
    direction: Literal["maximize", "minimize"] = (
        "maximize" if higher_is_better(spec.task, metric) else "minimize"
    )
    fit_part, validation = validation_split(spec, training)
    errors: dict[int, Exception] = {}

    def failed(trial: optuna.Trial, error: Exception) -> float:
        errors[trial.number] = error
        log.warning("Tuning trial %d failed with %s: %s", trial.number, trial.params, error)
        return math.nan  # Optuna records the trial as failed

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _suggest(trial, name, dimension) for name, dimension in tuning.space.items()}
        try:
            value = evaluate(fit(spec, fit_part, params=sampled), validation, spec)[metric]
        except Exception as exc:  # recorded, and raised below when every trial fails
            return failed(trial, exc)
        if not math.isfinite(value):
            return failed(
                trial, ValueError(f"{metric} is undefined on the {len(validation)} validation rows")
            )
        return value

    deadline = time.monotonic() + tuning.timeout_seconds

    def stop_when_late(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() >= deadline:  # checked after each trial: the first always runs
            study.stop()

    # Optuna's own lines would repeat each trial (a failed one as "nan is not acceptable");
    # this module logs the search and each failure with its error instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=tuning.seed))
    started = time.monotonic()
    study.optimize(objective, n_trials=tuning.trials, n_jobs=1, callbacks=[stop_when_late])
    seconds = time.monotonic() - started
    trials = [_summary(trial, errors.get(trial.number)) for trial in study.trials]
    states = [t.state for t in trials]
    if "complete" not in states:
        first = errors[trials[0].number]
        raise EstimatorError(
            f"tuning.space: all {len(trials)} trials failed; the first, with {trials[0].params}:"
            f" {type(first).__name__}: {first}"
        ) from first
    best = study.best_trial
    result = TuningResult(
        best_params={**spec.estimator.params, **best.params},
        tuned_params=best.params,
        best_value=float(study.best_value),
        best_trial=best.number,
        metric=metric,
        direction=direction,
        trials_completed=states.count("complete"),
        trials_failed=states.count("failed"),
        seconds=round(seconds, 3),
        fit_rows=len(fit_part),
        validation_rows=len(validation),
        left_out_rows=len(training) - len(fit_part) - len(validation),
        seed=tuning.seed,
        trials=trials,
    )
    log.info(
        "Tuning: best %s %.6g with %s (trial %d of %d, %d failed) in %.1f s on %d validation rows",
        metric,
        result.best_value,
        result.tuned_params,
        result.best_trial,
        len(trials),
        result.trials_failed,
        seconds,
        result.validation_rows,
    )
    return result


def validation_split(spec: PipelineSpec, training: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows trials fit on and the rows they are scored on, cut from ``training`` by
    ``tuning.seed`` and ``tuning.validation_fraction``. For classification the cut is stratified,
    so each class is on both sides: a class with a single row cannot be, and its rows are left
    out of the search (the candidate still trains on them)."""
    from sklearn.model_selection import train_test_split

    tuning = _tuning(spec)
    if spec.task == "regression":
        parts = train_test_split(training, test_size=tuning.validation_fraction, random_state=tuning.seed)
        return parts[0], parts[1]
    target = training[spec.columns.target]
    counts = target.value_counts()
    kept = training[target.isin(counts.index[counts >= 2])]
    if len(kept) < len(training):
        single = ", ".join(str(c) for c in counts.index[counts < 2])
        log.warning("Tuning leaves out the classes with a single training row: %s", single)
    try:
        parts = train_test_split(
            kept,
            test_size=tuning.validation_fraction,
            random_state=tuning.seed,
            stratify=kept[spec.columns.target],
        )
    except ValueError as exc:  # fewer validation (or fitting) rows than classes
        raise EstimatorError(
            f"tuning.validation_fraction: {math.ceil(len(kept) * tuning.validation_fraction)} validation"
            f" rows cannot hold each of the {int((counts >= 2).sum())} classes of {len(kept)} training"
            f" rows ({exc}); raise the fraction or train on more rows"
        ) from exc
    return parts[0], parts[1]


def record_tuning(mlflow_client: MlflowClient, run_id: str, result: TuningResult) -> None:
    """Log the search on the run: the tuned params, the best validation value, every trial as the
    artifact ``tuning/study.json``, and last the summary tag :data:`tags.TUNING` (its presence
    says the record is complete)."""
    from mlflow.entities import Param

    mlflow_client.log_batch(run_id, params=[Param(k, v) for k, v in result.mlflow_params().items()])
    mlflow_client.log_metric(run_id, f"{METRIC_PREFIX}{result.metric}", result.best_value)
    mlflow_client.log_dict(run_id, result.model_dump(mode="json"), STUDY_ARTIFACT)
    mlflow_client.set_tag(run_id, tags.TUNING, result.tag_value())


def recorded_tuning(mlflow_client: MlflowClient, run_id: str) -> TuningResult | None:
    """The search an earlier try of this run recorded, or None: a retried task trains with the
    params found then instead of searching again (a search bounded by time may find others)."""
    import tempfile
    from pathlib import Path

    if tags.TUNING not in mlflow_client.get_run(run_id).data.tags:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(mlflow_client.download_artifacts(run_id, STUDY_ARTIFACT, tmp)).read_text()
    return TuningResult.model_validate_json(body)


def _tuning(spec: PipelineSpec) -> Tuning:
    if spec.tuning is None:
        raise ValueError(f"{spec.name}: the spec has no tuning section")
    return spec.tuning


def _suggest(trial: optuna.Trial, name: str, dimension: TuningParam) -> ParamValue:
    if dimension.choices is not None:
        return trial.suggest_categorical(name, dimension.choices)
    low, high = dimension.bounds
    if dimension.type == "int":
        return trial.suggest_int(name, int(low), int(high), log=dimension.log)
    return trial.suggest_float(name, low, high, log=dimension.log)


def _summary(trial: optuna.trial.FrozenTrial, error: Exception | None) -> TrialSummary:
    from optuna.trial import TrialState

    state: Literal["complete", "failed"] = "complete" if trial.state == TrialState.COMPLETE else "failed"
    ended, began = trial.datetime_complete, trial.datetime_start
    return TrialSummary(
        number=trial.number,
        params=trial.params,
        value=trial.value if state == "complete" else None,
        state=state,
        error=f"{type(error).__name__}: {error}"[:ERROR_CHARS] if error is not None else None,
        seconds=round((ended - began).total_seconds(), 3) if ended and began else 0.0,
    )
