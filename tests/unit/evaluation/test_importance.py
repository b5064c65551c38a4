"""Permutation importance: the driving feature first, noise near zero, shifts against a champion
trained on other features, every task type, determinism by seed, and the switch."""

from __future__ import annotations

import pandas as pd
import pytest

from ctloop.evaluation.importance import Importances, importances
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.unit.evaluation.generated import frame as _frame
from tests.unit.evaluation.generated import spec as _spec


def _explained(spec: PipelineSpec, holdout: pd.DataFrame, candidate, champion=None) -> Importances:
    found = importances(spec, holdout, candidate, champion)
    assert found is not None
    return found


def _trained(kind: str, numeric: tuple[str, ...] = ("signal", "other", "noise"), **explanations):
    spec = _spec(kind, numeric, **explanations)
    frame = _frame(kind)
    return spec, fit(spec, frame.iloc[:800]), frame.iloc[800:]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_the_driving_feature_ranks_first_and_noise_is_near_zero(kind):
    spec, model, holdout = _trained(kind)
    found = _explained(spec, holdout, model)
    assert list(found.candidate) == sorted(found.candidate, key=lambda n: -found.candidate[n].mean)
    assert list(found.candidate)[0] == "signal"
    assert set(found.candidate) == {"signal", "other", "noise", "group"}
    signal = found.candidate["signal"].mean
    assert signal > 0
    assert abs(found.candidate["noise"].mean) < 0.03 * signal
    assert found.candidate["other"].mean > abs(found.candidate["noise"].mean)
    assert found.metric == ("rmse" if kind == "regression" else "log_loss")
    assert (found.rows, found.repeats) == (400, 3)
    assert found.champion is None
    assert (found.shares, found.large_shifts) == ([], [])
    assert found.summary.startswith("most important: signal (")
    assert found.summary.endswith("no champion to compare with")


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_a_champion_trained_on_other_features_shows_a_large_shift(kind):
    spec, candidate, holdout = _trained(kind)
    _, champion, _ = _trained(kind, numeric=("other", "noise"))
    found = _explained(spec, holdout, candidate, champion)
    assert found.champion is not None
    assert found.champion["signal"].mean == 0.0  # the champion never reads it
    shares = {s.feature: s for s in found.shares}
    assert shares["signal"].candidate > 0.5
    assert shares["signal"].champion == 0.0
    assert shares["other"].champion > 0.5
    assert shares["signal"].change == pytest.approx(shares["signal"].candidate - shares["signal"].champion)
    assert sum(s.candidate for s in found.shares) == pytest.approx(1.0)
    assert sum(s.champion for s in found.shares) == pytest.approx(1.0)
    assert found.shares[0].feature in {"signal", "other"}  # most changed first
    assert set(found.large_shifts) == {"signal", "other"}
    assert "2 feature(s) moved by more than 0.15" in found.summary
    assert "signal 0.00 -> " in found.summary


def test_the_same_model_as_champion_shows_no_shift():
    spec, model, holdout = _trained("multiclass")
    found = _explained(spec, holdout, model, model)
    assert found.champion == found.candidate
    assert found.large_shifts == []
    assert all(s.change == 0.0 for s in found.shares)
    assert found.summary.startswith("no feature's share of the importance moved by more than 0.15")


def test_the_threshold_decides_what_is_large():
    spec, candidate, holdout = _trained("binary", shift_threshold=1.0)
    _, champion, _ = _trained("binary", numeric=("other", "noise"))
    found = _explained(spec, holdout, candidate, champion)
    assert found.large_shifts == []
    assert max(abs(s.change) for s in found.shares) > 0.15


def test_the_seed_makes_it_repeatable_and_a_new_seed_changes_it():
    spec, model, holdout = _trained("binary")
    first = _explained(spec, holdout, model)
    assert _explained(spec, holdout, model) == first
    reseeded = spec.model_copy(update={"explanations": spec.explanations.model_copy(update={"seed": 1})})
    assert _explained(reseeded, holdout, model).candidate != first.candidate


def test_a_holdout_smaller_than_the_sample_is_used_whole():
    spec, model, holdout = _trained("regression", sample_rows=5000)
    found = _explained(spec, holdout, model)
    assert found.rows == len(holdout)


def test_disabled_explanations_compute_nothing():
    spec, model, holdout = _trained("binary", enabled=False)
    assert importances(spec, holdout, model, model) is None


def test_the_result_survives_json():
    spec, candidate, holdout = _trained("binary")
    _, champion, _ = _trained("binary", numeric=("other", "noise"))
    found = _explained(spec, holdout, candidate, champion)
    assert Importances.model_validate_json(found.model_dump_json()) == found


def _derived(frame: pd.DataFrame) -> pd.DataFrame:
    """A user's feature code: the model sees ``signal`` only through a derived column."""
    return frame.assign(signal_cubed=frame["signal"] ** 3).drop(columns=["signal"])


def test_any_model_kind_is_explained_by_its_raw_columns():
    """A user feature transformer in front of LightGBM on string labels: importance is still per
    raw input column, and ``signal`` leads through the column derived from it."""
    from lightgbm import LGBMClassifier
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    spec = _spec("multiclass")
    frame = _frame("multiclass")
    columns = ColumnTransformer(
        [
            ("numeric", "passthrough", ["signal_cubed", "other", "noise"]),
            ("group", OneHotEncoder(), ["group"]),
        ]
    )
    estimator = LGBMClassifier(n_estimators=40, random_state=0, verbose=-1)
    model = Pipeline(
        [("user", FunctionTransformer(_derived)), ("columns", columns), ("estimator", estimator)]
    )
    model.fit(frame.iloc[:800][spec.columns.features], frame.iloc[:800]["target"])
    found = _explained(spec, frame.iloc[800:], model, None)
    assert list(found.candidate)[0] == "signal"
    assert set(found.candidate) == {"signal", "other", "noise", "group"}
    assert found.candidate["signal"].mean > 10 * abs(found.candidate["noise"].mean)


def test_it_agrees_with_scikit_learn_permutation_importance():
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import log_loss

    spec, model, holdout = _trained("multiclass", repeats=10)
    ours = _explained(spec, holdout, model).candidate
    x, y = holdout.head(400)[spec.columns.features], holdout.head(400)["target"]
    theirs = permutation_importance(
        model,
        x,
        y,
        scoring=lambda m, xs, ys: -log_loss(ys, m.predict_proba(xs), labels=m.classes_),
        n_repeats=10,
        random_state=0,
    )
    expected = dict(zip(x.columns, theirs.importances_mean, strict=True))
    assert list(ours) == sorted(expected, key=lambda name: -expected[name])
    for name, value in expected.items():
        assert ours[name].mean == pytest.approx(value, abs=0.1 * expected["signal"])


class _Served:
    """What a training function may return: predict, predict_proba and classes_, but no fit."""

    def __init__(self, model) -> None:
        self.classes_ = model.classes_
        self.predict = model.predict
        self.predict_proba = model.predict_proba


def test_a_model_without_fit_is_explained_like_any_other():
    spec, model, holdout = _trained("binary")
    assert _explained(spec, holdout, _Served(model)) == _explained(spec, holdout, model)
