"""Permutation importance of every input feature, for the candidate and the champion, and the
features whose share of the importance moved between them.

Every model ctloop trains is a pipeline over the raw feature columns (a user's feature
transformer, ctloop's preprocessing, then any estimator), so shuffling one raw column and
measuring how much the model's loss rises explains any model kind the same way, in the columns
the data scientist knows. Both models are scored on the same seeded sample of the frozen
holdout with the same permutations, so their importances compare. A loss is used (log loss for
classification, binary or multiclass, with any labels; rmse for regression) because it moves
with every feature a model uses, where accuracy can stay flat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ctloop.training.estimator import features

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.evaluation.model_scores import FittedModel
    from ctloop.spec.models import PipelineSpec

ARTIFACT_PATH = "explanations/importance.json"  # on the training's MLflow run
STACKED_ROWS = 100_000  # rows per predict call: shuffled copies of the sample, stacked


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureImportance(_Frozen):
    """How much the loss rose, on average over the repeats, when the feature was shuffled, and the
    spread over the repeats; near zero (or below) for a feature the model does not use."""

    mean: float
    std: float


class ShareShift(_Frozen):
    """A feature's share of the total positive importance for each model, and its change."""

    feature: str
    candidate: float
    champion: float
    change: float  # candidate - champion


class Importances(_Frozen):
    """Both models' permutation importances on the same holdout sample (most important first),
    each feature's share of the total for both, most changed first, and the large shifts."""

    metric: str  # the loss whose rise is measured: log_loss or rmse
    rows: int
    repeats: int
    seed: int
    shift_threshold: float
    candidate: dict[str, FeatureImportance]
    champion: dict[str, FeatureImportance] | None
    shares: list[ShareShift]  # empty without a champion
    large_shifts: list[str]  # features whose share moved by more than shift_threshold
    summary: str


def importances(
    spec: PipelineSpec, holdout: pd.DataFrame, candidate: FittedModel, champion: FittedModel | None
) -> Importances | None:
    """Permutation importance of every feature column for both models on a seeded sample of
    ``holdout``, and the shifts between them; None when ``explanations.enabled`` is false."""
    settings = spec.explanations
    if not settings.enabled:
        return None
    rows = min(settings.sample_rows, len(holdout))
    sample = holdout.sample(n=rows, random_state=settings.seed) if rows < len(holdout) else holdout
    x, y = features(sample, spec), sample[spec.columns.target].to_numpy()
    found = _permuted(spec, candidate, x, y)
    against = _permuted(spec, champion, x, y) if champion is not None else None
    shares = _shares(found, against) if against is not None else []
    large = [s.feature for s in shares if abs(s.change) > settings.shift_threshold]
    return Importances(
        metric="rmse" if spec.task == "regression" else "log_loss",
        rows=rows,
        repeats=settings.repeats,
        seed=settings.seed,
        shift_threshold=settings.shift_threshold,
        candidate=found,
        champion=against,
        shares=shares,
        large_shifts=large,
        summary=_summary(found, shares, large, settings.shift_threshold),
    )


def _permuted(
    spec: PipelineSpec, model: FittedModel, x: pd.DataFrame, y: Any
) -> dict[str, FeatureImportance]:
    """The rise of the loss when each column of ``x`` is shuffled, ``repeats`` times each (seeded:
    both models see the same shuffles), most important first.

    The same measure as scikit-learn's ``permutation_importance``, which refuses a model without
    ``fit`` (a training function may return one) and predicts once per column and repeat; here
    the shuffled copies are stacked and predicted in a few large calls: 1.7 to 2.8 times faster
    on the churn example (2,000 rows, 21 columns; logistic regression to XGBoost).
    """
    import numpy as np

    rows, repeats = len(x), spec.explanations.repeats
    generator = np.random.default_rng(spec.explanations.seed)
    shuffles = [(column, generator.permutation(rows)) for column in x.columns for _ in range(repeats)]
    baseline = _loss(spec, model, x, y)
    per_call = max(1, STACKED_ROWS // max(rows, 1))
    losses: list[float] = []
    for start in range(0, len(shuffles), per_call):
        losses += _stacked_losses(spec, model, x, y, shuffles[start : start + per_call])
    rises = np.asarray(losses).reshape(len(x.columns), repeats) - baseline
    found = {
        str(name): FeatureImportance(mean=float(rise.mean()), std=float(rise.std()))
        for name, rise in zip(x.columns, rises, strict=True)
    }
    return dict(sorted(found.items(), key=lambda item: -item[1].mean))


def _stacked_losses(
    spec: PipelineSpec, model: FittedModel, x: pd.DataFrame, y: Any, shuffles: list[tuple[Any, Any]]
) -> list[float]:
    """The loss of each shuffle (a column and a permutation of the rows), from one predict call on
    the copies of ``x`` stacked, each with its column shuffled; dtypes are kept (``take``)."""
    import numpy as np
    import pandas as pd

    rows = len(x)
    order = np.tile(np.arange(rows), len(shuffles))
    stacked = {}
    for column in x.columns:
        taken = order.copy()
        for index, (shuffled, permutation) in enumerate(shuffles):
            if shuffled == column:
                taken[index * rows : (index + 1) * rows] = permutation
        stacked[column] = x[column].take(taken).reset_index(drop=True)
    predicted = _predict(spec, model, pd.DataFrame(stacked, columns=x.columns))
    return [
        _loss_of(spec, model, y, predicted[index * rows : (index + 1) * rows])
        for index in range(len(shuffles))
    ]


def _predict(spec: PipelineSpec, model: FittedModel, x: pd.DataFrame) -> Any:
    """Every class's probability (classification) or the predicted value (regression)."""
    return model.predict(x) if spec.task == "regression" else model.predict_proba(x)


def _loss(spec: PipelineSpec, model: FittedModel, x: pd.DataFrame, y: Any) -> float:
    return _loss_of(spec, model, y, _predict(spec, model, x))


def _loss_of(spec: PipelineSpec, model: FittedModel, y: Any, predicted: Any) -> float:
    """rmse, or the log loss over the model's own classes (a sample may miss some of them)."""
    from sklearn.metrics import log_loss, root_mean_squared_error

    if spec.task == "regression":
        return float(root_mean_squared_error(y, predicted))
    return float(log_loss(y, predicted, labels=list(model.classes_)))


def _share(values: dict[str, FeatureImportance]) -> dict[str, float]:
    """Each feature's share of the total positive importance (all zero when nothing matters): a
    feature whose shuffling helped the model counts as unused."""
    positive = {name: max(value.mean, 0.0) for name, value in values.items()}
    total = sum(positive.values())
    return {name: value / total if total > 0 else 0.0 for name, value in positive.items()}


def _shares(
    candidate: dict[str, FeatureImportance], champion: dict[str, FeatureImportance]
) -> list[ShareShift]:
    """Both shares of every feature either model has, most changed first."""
    ours, theirs = _share(candidate), _share(champion)
    shifts = [
        ShareShift(
            feature=name,
            candidate=ours.get(name, 0.0),
            champion=theirs.get(name, 0.0),
            change=ours.get(name, 0.0) - theirs.get(name, 0.0),
        )
        for name in dict.fromkeys([*ours, *theirs])
    ]
    return sorted(shifts, key=lambda s: -abs(s.change))


def _summary(
    candidate: dict[str, FeatureImportance], shares: list[ShareShift], large: list[str], threshold: float
) -> str:
    """One line for a log, a tag and the model card."""
    if not shares:
        top = ", ".join(f"{name} ({share:.0%})" for name, share in list(_share(candidate).items())[:3])
        return f"most important: {top or 'none'}; no champion to compare with"
    if not large:
        biggest = shares[0]
        return (
            f"no feature's share of the importance moved by more than {threshold:.2f} against the champion"
            f" (largest: {biggest.feature} {biggest.champion:.2f} -> {biggest.candidate:.2f})"
        )
    moved = ", ".join(
        f"{s.feature} {s.champion:.2f} -> {s.candidate:.2f}" for s in shares if s.feature in large
    )
    return (
        f"{len(large)} feature(s) moved by more than {threshold:.2f} of the importance,"
        f" champion -> candidate: {moved}"
    )
