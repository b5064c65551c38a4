"""The example churn data and spec turned into the other task kinds, for tests of every task type:
a three-class target with text labels and a numeric target, both learnable from the features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec

TIERS = ("high", "low", "mid")  # a classifier's classes_: sorted


def _signal(frame: pd.DataFrame) -> np.ndarray:
    return (
        0.05 * frame["tenure_months"].to_numpy()
        - 0.6 * frame["support_tickets_90d"].to_numpy()
        + 0.8 * (frame["satisfaction_score"].to_numpy() - 3)
    )


def multiclass_batch(rows: int, seed: int, batch_index: int = 0, **options: Any) -> pd.DataFrame:
    """Example rows whose target is a customer tier, ``low``, ``mid`` or ``high``."""
    frame = generate_batch(rows, seed=seed, batch_index=batch_index, **options)
    noisy = _signal(frame) + np.random.default_rng([seed, batch_index, 1]).normal(0, 0.6, rows)
    frame[TARGET] = np.asarray(["low", "mid", "high"], dtype=object)[np.digitize(noisy, [0.3, 1.4])]
    return frame


def regression_batch(rows: int, seed: int, batch_index: int = 0, **options: Any) -> pd.DataFrame:
    """Example rows whose target is a number (say, the next month's spend)."""
    frame = generate_batch(rows, seed=seed, batch_index=batch_index, **options)
    noise = np.random.default_rng([seed, batch_index, 2]).normal(0, 5, rows)
    frame[TARGET] = 40 + 0.8 * frame["monthly_charges"].to_numpy() + 10 * _signal(frame) + noise
    return frame


def multiclass_spec(name: str, data_uri: str = "data", **overrides: Any) -> PipelineSpec:
    """The example spec over a three-class target (the gates' metrics are classification ones)."""
    raw = example_spec(name, data_uri, **overrides)
    raw["estimator"]["params"] = {"max_iter": 30, "random_state": 0}
    raw["gates"]["rules"] = [{"metric": "roc_auc", "at_least": 0.6}]
    return PipelineSpec.model_validate(raw)


def regression_spec(
    name: str, data_uri: str = "data", quality_metric: str = "rmse", **overrides: Any
) -> PipelineSpec:
    """The example spec as a regression: a regressor, and every metric a regression one."""
    raw = example_spec(name, data_uri, **overrides)
    raw["task"] = "regression"
    raw["estimator"] = {
        "class_path": "sklearn.ensemble.HistGradientBoostingRegressor",
        "params": {"max_iter": 30, "random_state": 0},
    }
    gates = raw["gates"]
    gates["rules"] = [{"metric": "rmse", "at_most": 50.0}]
    gates["bootstrap"]["metric"] = "rmse"
    gates["slice_rules"]["metric"] = "rmse"
    raw.setdefault("monitoring", {})
    kept = {k: v for k, v in raw["monitoring"].get("quality", {}).items() if k != "rules"}  # classification's
    raw["monitoring"]["quality"] = {**kept, "metric": quality_metric, "max_drop": 2.0}
    return PipelineSpec.model_validate(raw)
