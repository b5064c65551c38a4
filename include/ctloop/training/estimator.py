"""Building and fitting the model a spec describes, at the level of code its user brings.

Three levels: YAML only (ctloop's preprocessing by column kind, then any estimator with the
scikit-learn API); plus a feature module (``features.factory``: a transformer run before the
preprocessing); plus a training function (``estimator.train_function``) for models that need more
than ``fit()``. Whatever the level, the result is one fitted object taking the raw feature columns,
saved whole, so training and scoring run the same code.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.errors import EstimatorError
from ctloop.registry import tags

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from ctloop.evaluation.model_scores import FittedModel
    from ctloop.spec.models import PipelineSpec


def import_path(path: str, field: str) -> Any:
    """The object ``module.name`` names; an error names the spec ``field`` that asked for it."""
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise EstimatorError(f"{field}: cannot import {path!r}: {exc}") from exc


def load_estimator_class(class_path: str) -> type:
    """Import the estimator class named by ``estimator.class_path``."""
    estimator_class = import_path(class_path, "estimator.class_path")
    if not (isinstance(estimator_class, type) and hasattr(estimator_class, "fit")):
        raise EstimatorError(f"estimator.class_path: {class_path!r} is not a scikit-learn estimator class")
    return estimator_class


def source_sha256(path: str, field: str) -> str:
    """The sha256 of the source file of the module defining ``path``: a change of the user's
    feature or training code changes it, and so the lineage recorded with every version."""
    module_name = path.rpartition(".")[0]
    import_path(path, field)
    source = inspect.getsourcefile(importlib.import_module(module_name))
    if source is None:
        raise EstimatorError(f"{field}: the module of {path!r} has no source file to record")
    with open(source, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def user_code_tags(spec: PipelineSpec) -> dict[str, str]:
    """The user's own code this spec trains with, and its source digest, as run and version tags."""
    found: dict[str, str] = {}
    if spec.features is not None:
        found[tags.FEATURES_CODE] = spec.features.factory
        found[tags.FEATURES_SHA256] = source_sha256(spec.features.factory, "features.factory")
    if spec.estimator.train_function is not None:
        found[tags.TRAIN_FUNCTION] = spec.estimator.train_function
        found[tags.TRAIN_FUNCTION_SHA256] = source_sha256(
            spec.estimator.train_function, "estimator.train_function"
        )
    return found


def changed_user_code(spec: PipelineSpec, version_tags: Mapping[str, str]) -> list[str]:
    """One line per user module whose source differs from the one a model version was trained
    with: the saved model holds the fitted state, but its methods run from today's code."""
    recorded = {tags.FEATURES_SHA256: tags.FEATURES_CODE, tags.TRAIN_FUNCTION_SHA256: tags.TRAIN_FUNCTION}
    current = user_code_tags(spec)
    return [
        f"{version_tags.get(path_tag) or current.get(path_tag)}: source sha256"
        f" {current.get(digest_tag, 'none')[:12]} differs from {version_tags.get(digest_tag, 'none')[:12]},"
        " the one the model was trained with"
        for digest_tag, path_tag in recorded.items()
        if version_tags.get(digest_tag) != current.get(digest_tag)
    ]


def feature_transformer(spec: PipelineSpec) -> Any:
    """A new, unfitted transformer from the spec's ``features.factory``, set to return a DataFrame
    (ctloop's preprocessing picks its numeric and other columns by dtype)."""
    assert spec.features is not None
    factory = import_path(spec.features.factory, "features.factory")
    try:
        transformer = factory(**spec.features.params)
    except TypeError as exc:
        raise EstimatorError(f"features.params: {spec.features.factory}: {exc}") from exc
    if not (hasattr(transformer, "fit") and hasattr(transformer, "transform")):
        raise EstimatorError(
            f"features.factory: {spec.features.factory} returned {type(transformer).__name__}, not a"
            " scikit-learn transformer (with fit and transform)"
        )
    if hasattr(transformer, "set_output"):
        transformer.set_output(transform="pandas")
    return transformer


def _preprocessor(spec: PipelineSpec) -> Any:
    """Median-imputed, scaled numbers and one-hot categories: by the spec's column kinds, or by
    dtype for the columns a feature transformer returns."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    if spec.features is not None:
        return ColumnTransformer(
            [
                ("numeric", numeric, make_column_selector(dtype_include="number")),
                ("categorical", categorical, make_column_selector(dtype_exclude="number")),
            ]
        )
    transformers = []
    if spec.columns.numeric:
        transformers.append(("numeric", numeric, spec.columns.numeric))
    if spec.columns.categorical:
        transformers.append(("categorical", categorical, spec.columns.categorical))
    return ColumnTransformer(transformers)


def build_model(spec: PipelineSpec, params: Mapping[str, object] | None = None, y: Any = None) -> Pipeline:
    """The unfitted model: the spec's feature transformer (if any), preprocessing, then the
    estimator with ``estimator.params`` updated by ``params``. Given the labels ``y``, a
    classifier that takes only integer codes is wrapped to take them (:mod:`label_codes`)."""
    from sklearn.pipeline import Pipeline

    estimator_class = load_estimator_class(spec.estimator.class_path)
    try:
        estimator = estimator_class(**{**spec.estimator.params, **(params or {})})
    except TypeError as exc:
        raise EstimatorError(f"estimator.params: {exc}") from exc
    if spec.task == "classification" and y is not None:
        from ctloop.training.label_codes import EncodedLabels, needs_codes

        if needs_codes(estimator_class, y):
            estimator = EncodedLabels(estimator)
    steps: list[tuple[str, Any]] = [("features", feature_transformer(spec))] if spec.features else []
    steps += [("preprocess", _preprocessor(spec)), ("estimator", estimator)]
    return Pipeline(steps)


@dataclass(frozen=True)
class TrainingContext:
    """What a training function gets besides the data: the pipeline, and ctloop's own model
    (feature transformer, preprocessing and estimator, unfitted) to fit as it needs."""

    pipeline: str
    task: str
    numeric: list[str]
    categorical: list[str]
    seed: int
    build_model: Callable[[Mapping[str, object] | None], Pipeline]


def features(frame: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """The model's input columns, in the spec's order; ids, timestamp and target are dropped."""
    return frame[spec.columns.features]


def fit(spec: PipelineSpec, train: pd.DataFrame, params: Mapping[str, object] | None = None) -> FittedModel:
    """Fit the spec's model on ``train`` (``params`` over ``estimator.params``): ctloop's model, or
    what the spec's training function returns. Bad params, feature code or a returned object
    that cannot serve raise :class:`EstimatorError` naming the spec field at fault."""
    from sklearn.utils._param_validation import InvalidParameterError

    x, y = features(train, spec), train[spec.columns.target]
    merged = {**spec.estimator.params, **(params or {})}
    if spec.estimator.train_function is not None:
        return _checked(spec, _call_train_function(spec, x, y, merged), x)
    model = build_model(spec, params, y)
    try:
        model.fit(x, y)
    except InvalidParameterError as exc:
        raise EstimatorError(f"estimator.params: {exc}") from exc
    except (ValueError, TypeError) as exc:
        _raise_if_features_at_fault(spec, x, exc)
        raise
    return _checked(spec, model, x)


def _raise_if_features_at_fault(spec: PipelineSpec, x: pd.DataFrame, exc: Exception) -> None:
    """A fit that failed because the feature transformer fails or returns no DataFrame is the
    feature code's fault: say so, naming ``features.factory``."""
    import pandas as pd

    if spec.features is None:
        return
    try:
        output = feature_transformer(spec).fit_transform(x.head(50))
    except Exception as own:
        raise EstimatorError(
            f"features.factory: {spec.features.factory} failed on the training rows: {own}"
        ) from exc
    if not isinstance(output, pd.DataFrame):
        raise EstimatorError(
            f"features.factory: {spec.features.factory} returned a {type(output).__name__}, not a pandas"
            " DataFrame; return a DataFrame (ctloop's preprocessing picks its columns by dtype)"
        ) from exc


def _call_train_function(
    spec: PipelineSpec, x: pd.DataFrame, y: pd.Series, params: dict[str, object]
) -> FittedModel:
    path = spec.estimator.train_function
    assert path is not None
    function = import_path(path, "estimator.train_function")

    def build(overrides: Mapping[str, object] | None = None) -> Pipeline:
        return build_model(spec, {**params, **(overrides or {})}, y)

    context = TrainingContext(
        pipeline=spec.name,
        task=spec.task,
        numeric=list(spec.columns.numeric),
        categorical=list(spec.columns.categorical),
        seed=spec.holdout.seed,
        build_model=build,
    )
    model: FittedModel = function(x.copy(), y.copy(), dict(params), context)
    return model


def _checked(spec: PipelineSpec, model: Any, x: pd.DataFrame) -> FittedModel:
    """Refuse a fitted object that cannot serve: no predict, or for classification no
    predict_proba and classes_; it must also predict the first rows it was trained on."""
    source = spec.estimator.train_function or spec.estimator.class_path
    field = "estimator.train_function" if spec.estimator.train_function else "estimator.class_path"
    needed = ["predict"] + (["predict_proba", "classes_"] if spec.task == "classification" else [])
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise EstimatorError(
            f"{field}: {source} gave a {type(model).__name__} without {', '.join(missing)}; a"
            f" {spec.task} model needs {', '.join(needed)}"
        )
    try:
        predicted = model.predict(x.head(5))
    except Exception as exc:
        raise EstimatorError(
            f"{field}: the model from {source} cannot predict its own training rows: {exc}"
        ) from exc
    if len(predicted) != len(x.head(5)):
        raise EstimatorError(
            f"{field}: the model from {source} returned {len(predicted)} predictions for 5 rows"
        )
    return model  # type: ignore[no-any-return]
