"""Building and fitting the scikit-learn Pipeline a spec describes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ctloop.errors import EstimatorError

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from ctloop.spec.models import PipelineSpec


def load_estimator_class(class_path: str) -> type:
    """Import the estimator class named by ``estimator.class_path``."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        estimator_class = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise EstimatorError(f"estimator.class_path: cannot import {class_path!r}: {exc}") from exc
    if not (isinstance(estimator_class, type) and hasattr(estimator_class, "fit")):
        raise EstimatorError(f"estimator.class_path: {class_path!r} is not a scikit-learn estimator class")
    return estimator_class


def build_model(spec: PipelineSpec) -> Pipeline:
    """Preprocessing from the column kinds, then the spec's estimator with its params."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    estimator_class = load_estimator_class(spec.estimator.class_path)
    try:
        estimator = estimator_class(**spec.estimator.params)
    except TypeError as exc:
        raise EstimatorError(f"estimator.params: {exc}") from exc
    transformers = []
    if spec.columns.numeric:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, spec.columns.numeric))
    if spec.columns.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, spec.columns.categorical))
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("estimator", estimator)])


def features(frame: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """The model's input columns, in the spec's order; ids, timestamp and target are dropped."""
    return frame[spec.columns.features]


def fit(spec: PipelineSpec, train: pd.DataFrame) -> Pipeline:
    """Fit the spec's model on ``train``; bad params raise :class:`EstimatorError`."""
    from sklearn.utils._param_validation import InvalidParameterError

    model = build_model(spec)
    try:
        model.fit(features(train, spec), train[spec.columns.target])
    except InvalidParameterError as exc:
        raise EstimatorError(f"estimator.params: {exc}") from exc
    return model
