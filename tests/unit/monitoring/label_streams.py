"""Generated streams for the label-shift and performance-estimate tests: a reference (the training
data with the champion's predictions, as the monitor's reference holds it) and windows where only
the class prior moves, only the features move, or nothing moves but 20% of the labels are noise."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LinearRegression, LogisticRegression

from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import multiclass_spec, regression_spec

TARGET = "churned"  # the example spec's target column
FEATURES = ["f0", "f1", "f2"]
TIERS = np.asarray(["high", "low", "mid"], dtype=object)


def spec(task: str = "binary", **monitoring: Any) -> PipelineSpec:
    """The example spec of ``task`` (binary, multiclass or regression) with these monitoring fields."""
    overrides = {"monitoring": monitoring}
    if task == "multiclass":
        return multiclass_spec("shift", **overrides)
    if task == "regression":
        return regression_spec("shift", **overrides)
    return PipelineSpec.model_validate(example_spec("shift", "data", **overrides))


def features(rows: int, seed: int, shift: float = 0.0, spread: float = 1.0) -> pd.DataFrame:
    """Normal features; ``shift`` moves f0's mean, ``spread`` scales every feature around it."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, spread, (rows, len(FEATURES)))
    values[:, 0] += shift
    return pd.DataFrame(values, columns=FEATURES)


def _logit(frame: pd.DataFrame) -> np.ndarray:
    return 2.0 * frame["f0"].to_numpy() + 1.0 * frame["f1"].to_numpy() - 0.5 * frame["f2"].to_numpy()


def labels(
    task: str, frame: pd.DataFrame, seed: int, threshold: float = -0.6, noise: float = 0.0
) -> np.ndarray:
    """The label: positive above ``threshold`` (binary: a threshold below 0 makes most rows
    positive), a tier by two cut points moved by ``threshold + 0.6`` (multiclass), a number offset
    by ``threshold + 0.6`` (regression); ``noise`` of the rows get a random label."""
    rng = np.random.default_rng([seed, 7])
    signal = _logit(frame) + rng.logistic(0.0, 0.6, len(frame))
    offset = threshold + 0.6
    if task == "regression":
        return 10.0 + 3.0 * signal + 5.0 * offset + rng.normal(0, 1.0, len(frame))
    if task == "multiclass":
        found = TIERS[np.digitize(signal - offset, [-1.0, 1.0])]
        flip = rng.random(len(frame)) < noise
        found[flip] = rng.choice(TIERS, int(flip.sum()))
        return found
    found = (signal > threshold).astype(int)
    flip = rng.random(len(frame)) < noise
    found[flip] = rng.integers(0, 2, int(flip.sum()))
    return found


def fit(task: str, frame: pd.DataFrame, y: np.ndarray) -> Any:
    model = LinearRegression() if task == "regression" else LogisticRegression(max_iter=200)
    return model.fit(frame[FEATURES], y)


def scored(task: str, model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The champion's logged outputs on ``frame`` (prediction, score, class probabilities), as the
    prediction log and the monitor's reference hold them."""
    x = frame[FEATURES]
    if task == "regression":
        value = model.predict(x)
        predictions = Predictions(value, value)
    else:
        probabilities = model.predict_proba(x)
        predicted = model.classes_[probabilities.argmax(axis=1)]
        if task == "binary":
            predictions = Predictions(predicted, probabilities[:, 1])
        else:
            predictions = Predictions(predicted, probabilities.max(axis=1), probabilities, model.classes_)
    return pd.DataFrame(predictions.columns("prediction", "score"))


def side(task: str, model: Any, rows: int, seed: int, **options: Any) -> pd.DataFrame:
    """Rows with their label and the champion's outputs (``options``: of :func:`features` and
    :func:`labels`)."""
    frame = features(rows, seed, options.pop("shift", 0.0), options.pop("spread", 1.0))
    y = labels(task, frame, seed, **options)
    return pd.concat([frame, scored(task, model, frame)], axis=1).assign(**{TARGET: y})


@cache
def champion(task: str, rows: int = 4000, seed: int = 1, noise: float = 0.0) -> Champion:
    """A champion fitted on ``rows`` training rows, with its outputs on them (the monitor's
    reference) and on a holdout of ``rows // 2`` rows it never saw, drawn alike."""
    frame = features(rows, seed)
    model = fit(task, frame, labels(task, frame, seed, noise=noise))
    reference = side(task, model, rows, seed, noise=noise)
    return Champion(model, reference, side(task, model, rows // 2, seed + 1000, noise=noise))


class Champion(NamedTuple):
    model: Any
    reference: pd.DataFrame
    holdout: pd.DataFrame


def chunks(frame: pd.DataFrame, size: int = 1000) -> list[pd.DataFrame]:
    """The frame as row groups of ``size`` rows."""
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def write(frame: pd.DataFrame, path: Path, group_rows: int = 1000) -> Path:
    """``frame`` as a Parquet file of ``group_rows``-row groups (the prediction log's layout)."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=group_rows)
    return path
