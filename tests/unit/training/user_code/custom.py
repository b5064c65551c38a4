"""Feature factories and training functions written the way a user would, good and bad."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression

SEEN: list[dict[str, Any]] = []


class Ratio(TransformerMixin, BaseEstimator):
    """Adds ``ratio`` = a / b: the target depends on it, not on a or b alone."""

    def fit(self, x: pd.DataFrame, y: Any = None) -> Ratio:
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        return x.assign(ratio=x["a"] / x["b"])


class ToArray(Ratio):
    def transform(self, x: pd.DataFrame) -> Any:
        return super().transform(x).to_numpy()


def ratio() -> Ratio:
    return Ratio()


def to_array() -> ToArray:
    return ToArray()


def not_a_transformer() -> str:
    return "features"


def weighted_fit(features: pd.DataFrame, target: pd.Series, params: dict[str, Any], context: Any) -> Any:
    """Records what it was given, then fits ctloop's own model with row weights."""
    SEEN.append(
        {"columns": list(features.columns), "rows": len(features), "params": dict(params), "context": context}
    )
    model = context.build_model(None)
    return model.fit(features, target, estimator__sample_weight=np.ones(len(target)))


def returns_nothing(features: pd.DataFrame, target: pd.Series, params: dict[str, Any], context: Any) -> Any:
    return None


def regression_only(features: pd.DataFrame, target: pd.Series, params: dict[str, Any], context: Any) -> Any:
    """A model without predict_proba, wrong for a classification spec."""
    return LinearRegression().fit(features[["a"]].to_numpy(), np.arange(len(target)))
