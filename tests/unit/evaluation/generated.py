"""Generated data for explanation tests: a feature that drives the target, a weaker one, a
categorical and pure noise, for each task type (multiclass and binary with string labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctloop.spec.models import PipelineSpec

ESTIMATORS = {
    "binary": "sklearn.linear_model.LogisticRegression",
    "multiclass": "sklearn.linear_model.LogisticRegression",
    "regression": "sklearn.linear_model.LinearRegression",
}


def frame(kind: str, rows: int = 1200, seed: int = 0) -> pd.DataFrame:
    """``signal`` drives the target, ``other`` a little, ``group`` a little, ``noise`` not at all."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "signal": rng.normal(size=rows),
            "other": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "group": rng.choice(["north", "south", "east"], size=rows),
        }
    )
    value = 3 * data["signal"] + 0.7 * data["other"] + 0.5 * (data["group"] == "north")
    value += rng.normal(scale=0.5, size=rows)
    if kind == "binary":
        data["target"] = np.where(value > 0, "churn", "stay")
    elif kind == "multiclass":
        data["target"] = pd.cut(value, [-np.inf, -1.5, 1.5, np.inf], labels=["low", "mid", "high"]).astype(
            str
        )
    else:
        data["target"] = value
    return data


def spec(kind: str, numeric: tuple[str, ...] = ("signal", "other", "noise"), **explanations) -> PipelineSpec:
    """A spec over :func:`frame`'s columns (``numeric`` of them) with a fast linear estimator."""
    return PipelineSpec.model_validate(
        {
            "name": f"imp_{kind}",
            "task": "regression" if kind == "regression" else "classification",
            "data": {"uri": "data", "format": "csv"},
            "columns": {"target": "target", "numeric": list(numeric), "categorical": ["group"]},
            "expectation_suite": "none",
            "estimator": {"class_path": ESTIMATORS[kind]},
            "explanations": {"sample_rows": 400, "repeats": 3, **explanations},
            **({"monitoring": {"quality": {"metric": "rmse"}}} if kind == "regression" else {}),
        }
    )
