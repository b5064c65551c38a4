"""Label shift on generated streams: a prior that moves fires it (both signals), a noisy stable
stream and a small window do not; binary, multiclass with text labels, and regression."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats

from ctloop.monitoring import label_shift
from ctloop.monitoring.label_shift import ALERT, OK, UNDECIDED, Moments, Sample, measure, wald
from ctloop.spec.models import LabelShift
from tests.unit.monitoring import label_streams as streams
from tests.unit.monitoring.label_streams import TARGET

WINDOW_ROWS = 3000


def _measure(task: str, window: dict[str, Any], rows: int = WINDOW_ROWS, **rule: Any) -> dict[str, Any]:
    """Label shift of a window drawn with ``window``'s options against a champion trained and
    referenced on rows with 20% label noise."""
    model, reference, holdout = streams.champion(task, noise=0.2)
    labeled = streams.side(task, model, rows, seed=11, **window)
    spec = streams.spec(task, label_shift=rule)
    return measure(spec, streams.chunks(reference), streams.chunks(holdout), labeled, "prediction")


def _verdicts(block: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["verdict"] for s in block["signals"]}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_noisy_stable_stream_does_not_fire(task: str) -> None:
    block = _measure(task, {"noise": 0.2})

    assert block["verdict"] == OK
    assert set(_verdicts(block).values()) == {OK}
    assert block["labeled_rows"] == WINDOW_ROWS


@pytest.mark.parametrize(
    ("task", "names"),
    [
        ("binary", {"label_rate", "predicted_rate"}),
        ("multiclass", {"label_rate", "predicted_rate"}),
        ("regression", {"label_mean", "prediction_bias", "label_distribution"}),
    ],
)
def test_a_prior_that_moves_with_the_features_unchanged_fires_both_signals(
    task: str, names: set[str]
) -> None:
    block = _measure(task, {"noise": 0.2, "threshold": 0.3})

    assert block["verdict"] == ALERT
    assert _verdicts(block) == dict.fromkeys(names, ALERT)
    for signal in block["signals"]:
        assert signal["why"].startswith(f"label shift: {signal['name']}: ")
        assert signal["p_value"] < 0.01
        assert signal["shift"] > signal["threshold"]


def test_a_binary_signal_speaks_of_the_positive_rate_with_its_interval() -> None:
    model, reference, holdout = streams.champion("binary", noise=0.2)
    labeled = streams.side("binary", model, WINDOW_ROWS, seed=11, noise=0.2, threshold=0.3)

    block = measure(streams.spec(), streams.chunks(reference), streams.chunks(holdout), labeled, "prediction")

    rate = next(s for s in block["signals"] if s["name"] == "label_rate")
    assert rate["value"] == pytest.approx(float(np.mean(labeled[TARGET] == 1)))
    assert rate["reference"] == pytest.approx(float(np.mean(reference[TARGET] == 1)))
    assert rate["shift"] == pytest.approx(abs(rate["value"] - rate["reference"]))
    low, high = rate["interval"]
    assert low < rate["value"] - rate["reference"] < high < 0
    gap = next(s for s in block["signals"] if s["name"] == "predicted_rate")
    predicted = labeled["prediction"].to_numpy() == 1
    assert gap["value"] == pytest.approx(float(np.mean(predicted) - np.mean(labeled[TARGET] == 1)))
    on_holdout = np.mean(holdout["prediction"] == 1) - np.mean(holdout[TARGET] == 1)
    assert gap["reference"] == pytest.approx(float(on_holdout))
    assert (rate["against"], gap["against"]) == ("the training data", "the champion's holdout")


def test_a_multiclass_signal_gives_each_text_class_its_share() -> None:
    block = _measure("multiclass", {"noise": 0.2, "threshold": 0.3})

    rate = next(s for s in block["signals"] if s["name"] == "label_rate")
    assert set(rate["value"]) == set(rate["reference"]) == set(rate["interval"]) == {"high", "low", "mid"}
    assert sum(rate["value"].values()) == pytest.approx(1.0)
    assert rate["shift"] == pytest.approx(
        sum(abs(rate["value"][c] - rate["reference"][c]) for c in rate["value"]) / 2, abs=1e-5
    )


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_small_window_stays_undecided_whatever_its_labels(task: str) -> None:
    block = _measure(task, {"threshold": 1.5}, rows=120)

    assert block["verdict"] == UNDECIDED
    assert set(_verdicts(block).values()) == {UNDECIDED}
    assert all(
        "120 labeled rows < monitoring.label_shift.min_labels 500" in s["why"] for s in block["signals"]
    )


def test_no_labels_at_all_is_undecided() -> None:
    champion = streams.champion("binary")

    block = measure(streams.spec(), streams.chunks(champion.reference), None, pd.DataFrame(), "prediction")

    assert block["verdict"] == UNDECIDED
    assert block["labeled_rows"] == 0


def test_without_a_holdout_only_the_label_rate_is_decided() -> None:
    """The predicted-rate baseline needs rows the champion never trained on."""
    model, reference, _ = streams.champion("binary", noise=0.2)
    labeled = streams.side("binary", model, WINDOW_ROWS, seed=11, noise=0.2, threshold=0.3)

    block = measure(streams.spec(), streams.chunks(reference), None, labeled, "prediction")

    assert _verdicts(block) == {"label_rate": ALERT, "predicted_rate": UNDECIDED}
    gap = block["signals"][1]
    assert (
        gap["why"]
        == "label shift: predicted_rate: the champion has no stored holdout to compare its predictions on"
    )


def test_a_shift_below_max_shift_does_not_fire_however_significant() -> None:
    block = _measure("binary", {"noise": 0.2, "threshold": 0.3}, rows=20_000, max_shift=0.2)

    rate = next(s for s in block["signals"] if s["name"] == "label_rate")
    assert rate["p_value"] < 1e-6
    assert rate["verdict"] == OK


def test_a_shift_above_max_shift_fires_only_when_significant_at_the_confidence() -> None:
    """600 labels whose rate moved 0.06 (above max_shift 0.05): p about 0.006, significant at
    0.99 and not at 0.999."""
    rates = {
        c: _label_rate(_measure("binary", {"noise": 0.2, "threshold": 0.0}, rows=600, confidence=c))
        for c in (0.99, 0.999)
    }

    assert rates[0.99]["shift"] == rates[0.999]["shift"] > 0.05
    assert 0.001 < rates[0.99]["p_value"] < 0.01
    assert (rates[0.99]["verdict"], rates[0.999]["verdict"]) == (ALERT, OK)


def _label_rate(block: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in block["signals"] if s["name"] == "label_rate")


def test_disabled_measures_nothing() -> None:
    block = _measure("binary", {"threshold": 0.3}, enabled=False)

    assert block == {
        "enabled": False,
        "verdict": OK,
        "signals": [],
        "why": "monitoring.label_shift.enabled is false",
    }


def test_the_wald_test_of_two_proportions_is_the_textbook_one() -> None:
    """Two classes: the two-proportion z-test with unpooled variances."""
    window = Moments(400, np.array([140.0, 260.0]), np.diag([140.0, 260.0]))
    reference = Moments(5000, np.array([2000.0, 3000.0]), np.diag([2000.0, 3000.0]))

    test = wald(window, reference, 0.95)

    p1, p2 = 260 / 400, 3000 / 5000
    se = np.sqrt(p1 * (1 - p1) / 400 + p2 * (1 - p2) / 5000)
    assert test.difference[1] == pytest.approx(p1 - p2)
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(p1 - p2) / se))
    assert test.half_width[1] == pytest.approx(stats.norm.ppf(0.975) * se)


def test_a_class_only_one_side_has_with_no_spread_is_a_certain_shift() -> None:
    window = Moments(600, np.array([600.0, 0.0]), np.diag([600.0, 0.0]))
    reference = Moments(600, np.array([0.0, 600.0]), np.diag([0.0, 600.0]))

    assert wald(window, reference, 0.99).p_value == 0.0
    assert wald(window, window, 0.99).p_value == 1.0


def test_the_moments_of_a_confusion_matrix_are_those_of_its_rows() -> None:
    rng = np.random.default_rng(3)
    labels, predicted = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (labels, predicted), 1.0)

    on_labels, on_gap = label_shift.class_moments(confusion)

    eye = np.eye(3)
    gap = eye[predicted] - eye[labels]
    assert on_labels.mean == pytest.approx(eye[labels].mean(axis=0))
    assert on_gap.mean == pytest.approx(gap.mean(axis=0))
    assert on_gap.covariance == pytest.approx(np.cov(gap.T, bias=True))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_shift", 0.0),
        ("max_shift", 1.5),
        ("confidence", 1.0),
        ("min_labels", 0),
        ("max_mean_shift", -1),
        ("max_label_distance", 0.0),
    ],
)
def test_the_spec_refuses_bad_values_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        streams.spec("binary", label_shift={field: value})


def test_an_old_spec_gets_the_defaults() -> None:
    rule = streams.spec("binary").monitoring.label_shift

    assert rule == LabelShift()
    assert (rule.enabled, rule.max_shift, rule.confidence, rule.min_labels) == (True, 0.05, 0.99, 500)
    assert all(f.description for f in LabelShift.model_fields.values())


def test_labels_read_back_as_floats_name_the_same_classes() -> None:
    """A labeled partition whose label column held a null comes back as floats: 1.0 is class 1."""
    model, reference, holdout = streams.champion("binary", noise=0.2)
    labeled = streams.side("binary", model, WINDOW_ROWS, seed=11, noise=0.2)
    labeled[TARGET] = labeled[TARGET].astype(float)
    labeled.loc[0, TARGET] = np.nan

    block = measure(streams.spec(), streams.chunks(reference), streams.chunks(holdout), labeled, "prediction")

    rate = _label_rate(block)
    assert (rate["verdict"], rate["rows"]) == (OK, WINDOW_ROWS - 1)
    assert rate["value"] == pytest.approx(float(np.nanmean(labeled[TARGET])))


def _distribution(block: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in block["signals"] if s["name"] == "label_distribution")


def test_a_wider_regression_label_with_the_same_mean_fires_the_distribution_test_only() -> None:
    """Every feature spread 1.6 times as wide around the same centre: the label's mean stays, its
    spread grows; only the distribution test sees it."""
    block = _measure("regression", {"spread": 1.6})

    assert _verdicts(block) == {"label_mean": OK, "prediction_bias": OK, "label_distribution": ALERT}
    assert block["verdict"] == ALERT
    signal = _distribution(block)
    assert signal["shift"] > signal["threshold"] == 0.25
    assert signal["p_value"] < 0.01
    assert signal["value"] > 1.3 * signal["reference"]  # the standard deviations
    assert signal["why"].startswith("label shift: label_distribution: the label's distribution is ")


def test_the_distance_is_the_wasserstein_one_in_training_standard_deviations_and_the_p_value_the_ks_one() -> (
    None
):
    model, reference, holdout = streams.champion("regression", noise=0.2)
    labeled = streams.side("regression", model, WINDOW_ROWS, seed=11, spread=1.3)

    signal = _distribution(
        measure(
            streams.spec("regression"),
            streams.chunks(reference),
            streams.chunks(holdout),
            labeled,
            "prediction",
        )
    )

    window, training = labeled[TARGET].to_numpy(), reference[TARGET].to_numpy()
    assert signal["shift"] == pytest.approx(stats.wasserstein_distance(window, training) / training.std())
    assert signal["p_value"] == pytest.approx(stats.ks_2samp(window, training).pvalue)
    assert signal["sample_rows"] == [WINDOW_ROWS, len(reference)]


@pytest.mark.parametrize("spread", [1.0, 1.3])
def test_the_same_or_a_slightly_wider_distribution_stays_quiet(spread: float) -> None:
    """The same process: neither large nor significant; a spread 1.3 times as wide is
    significant on 3,000 labels but below max_label_distance."""
    signal = _distribution(_measure("regression", {"noise": 0.2, "spread": spread}))

    assert signal["verdict"] == OK
    assert signal["shift"] < 0.25
    assert (signal["p_value"] > 0.01) == (spread == 1.0)


def test_a_max_label_distance_below_the_shift_makes_it_fire() -> None:
    assert _distribution(_measure("regression", {"spread": 1.3}, max_label_distance=0.15))["verdict"] == ALERT


def test_a_sample_keeps_at_most_its_size_uniformly_whatever_the_chunks() -> None:
    values = np.arange(10_000, dtype=float)
    whole, chunked, short = Sample(1000, 0), Sample(1000, 0), Sample(20_000, 0)
    whole.add(values)
    for part in np.array_split(values, 7):
        chunked.add(part)
    short.add(values)

    assert len(whole.values) == 1000
    assert sorted(whole.values) == sorted(chunked.values)
    assert sorted(short.values) == values.tolist()
    assert 4000 < whole.values.mean() < 6000  # not the first or last rows
