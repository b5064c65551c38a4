"""The effectiveness benchmark's drift streams are what they claim, and a replay of the stable one
retrains nothing. Whether the loop meets the benchmark's targets is the benchmark's to report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.drift_streams import ID, TARGET, Sizes, Stream, read_labeled, write_stream
from bench.effectiveness import LABEL_DELAY, oracle_training_batches, signal_name, signals_line
from ctloop.replay.loop import ReplayOptions, run_replay
from ctloop.replay.records import ReplayResult
from ctloop.replay.schedule import DEFAULT_START
from ctloop.scoring.batches import predict
from ctloop.settings import load_settings
from ctloop.spec.loading import load_spec
from ctloop.training.estimator import fit

SIZES = Sizes(history=2000, batches=4, batch_rows=1000, change_at=2)


def accuracy(model: object, stream: Stream, index: int) -> float:
    return scores(model, stream, index)["accuracy"]


def scores(model: object, stream: Stream, index: int) -> dict[str, float]:
    """The model's accuracy, roc_auc and brier on batch ``index``, and the batch's positive share."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    spec = load_spec(stream.spec_path)
    frame = read_labeled(stream, index)
    predicted, score = predict(model, frame, spec)
    truth = frame[TARGET].to_numpy()
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "roc_auc": float(roc_auc_score(truth, score)),
        "brier": float(brier_score_loss(truth, score)),
        "positive": float(truth.mean()),
    }


def history_model(stream: Stream) -> object:
    spec = load_spec(stream.spec_path)
    return fit(spec, pd.read_csv(stream.history / "history.csv", dtype={ID: str}))


def test_streams_are_deterministic_by_seed(tmp_path):
    one, two, other = (
        write_stream(tmp_path / name, "gradual", SIZES, seed)
        for name, seed in (("one", 0), ("two", 0), ("other", 1))
    )
    assert read_labeled(one, 3).equals(read_labeled(two, 3))
    assert not read_labeled(one, 3).equals(read_labeled(other, 3))


def test_abrupt_change_leaves_the_old_model_at_chance_and_the_oracle_learns_the_new_concept(tmp_path):
    stream = write_stream(tmp_path, "abrupt", SIZES)
    model = history_model(stream)
    assert accuracy(model, stream, SIZES.change_at - 1) > 0.85
    assert 0.35 < accuracy(model, stream, SIZES.change_at) < 0.65
    # the features did not move: only the labels tell
    before, after = read_labeled(stream, 0), read_labeled(stream, SIZES.change_at)
    assert abs(before["x1"].mean() - after["x1"].mean()) < 0.15
    # the oracle of the last batch trains on the changed batches whose labels have arrived
    last = SIZES.batches - 1
    assert oracle_training_batches(stream, last) == list(range(SIZES.change_at, last - LABEL_DELAY + 1))
    spec = load_spec(stream.spec_path)
    changed = pd.concat([read_labeled(stream, i) for i in oracle_training_batches(stream, last)])
    assert accuracy(fit(spec, changed), stream, last) > 0.8


def test_covariate_shift_moves_the_features_and_keeps_the_rule(tmp_path):
    stream = write_stream(tmp_path, "covariate", SIZES)
    before, after = read_labeled(stream, 0), read_labeled(stream, SIZES.change_at)
    assert after["x1"].mean() - before["x1"].mean() > 1.0
    assert after["months"].mean() - before["months"].mean() > 10
    assert abs(after["x2"].mean() - before["x2"].mean()) < 0.15
    # the old model still knows the rule
    assert accuracy(history_model(stream), stream, SIZES.change_at) > 0.85


def test_prior_shift_changes_the_positive_share_only(tmp_path):
    stream = write_stream(tmp_path, "prior", SIZES)
    before, after = read_labeled(stream, 0), read_labeled(stream, SIZES.change_at)
    assert before[TARGET].mean() > 0.35
    assert after[TARGET].mean() == pytest.approx(0.2)
    for label in (0, 1):  # each class's features as before
        assert (
            abs(after[after[TARGET] == label]["x1"].mean() - before[before[TARGET] == label]["x1"].mean())
            < 0.2
        )
    assert accuracy(history_model(stream), stream, SIZES.change_at) > 0.85


def test_a_moved_threshold_keeps_the_features_and_the_ranking_and_breaks_the_decisions(tmp_path):
    stream = write_stream(tmp_path, "threshold", SIZES)
    model = history_model(stream)
    before, after = (scores(model, stream, i) for i in (SIZES.change_at - 1, SIZES.change_at))
    assert before["positive"] - after["positive"] > 0.08
    assert abs(after["roc_auc"] - before["roc_auc"]) < 0.02  # sampling noise of 1,000 rows
    assert before["accuracy"] - after["accuracy"] > 0.03
    assert after["brier"] > before["brier"]
    frames = [read_labeled(stream, i) for i in (0, SIZES.change_at)]
    assert abs(frames[0]["x1"].mean() - frames[1]["x1"].mean()) < 0.15
    assert stream.change_points == (SIZES.change_at,)


def test_flattened_calibration_keeps_the_positive_share_and_costs_brier_most(tmp_path):
    stream = write_stream(tmp_path, "calibration", SIZES)
    model = history_model(stream)
    before, after = (scores(model, stream, i) for i in (SIZES.change_at - 1, SIZES.change_at))
    assert abs(after["positive"] - before["positive"]) < 0.05
    assert after["brier"] - before["brier"] > 0.04
    assert after["roc_auc"] > 0.9  # the ranking is still the best there is


def test_the_noisy_stream_flips_labels_throughout_and_never_changes(tmp_path):
    stream = write_stream(tmp_path, "noisy", SIZES)
    model = history_model(stream)
    figures = [accuracy(model, stream, i) for i in range(SIZES.batches)]
    assert all(0.72 < figure < 0.85 for figure in figures), figures  # 13% flipped: about 0.91 x 0.87
    assert max(figures) - min(figures) < 0.06
    assert stream.change_points == ()
    # the history is as noisy: a model of it is judged on noisy labels from the start
    stable = write_stream(tmp_path, "stable", SIZES)
    assert accuracy(history_model(stable), stable, 0) - figures[0] > 0.07


def test_each_trigger_line_is_counted_under_its_signal():
    triggers = [
        "drift share 0.40 >= 0.30",
        "key feature(s) drifted: months",
        "quality accuracy: 0.8410 on 2,000 labeled rows is 0.0700 worse",
        "label shift: label_rate: 0.35 against 0.47 on 2,000 labels (alert: shift 0.120 > 0.05)",
        "estimate roc_auc: 0.81 against 0.97",
        "roc_auc of v2 (champion) 0.8000 against v1 (previous) 0.9000 on the same 2,000 labeled rows: ...",
    ]
    names = [signal_name(t) for t in triggers]
    assert names == [
        "drift",
        "drift",
        "quality accuracy",
        "label shift label_rate",
        "estimate roc_auc",
        "champion regression",
    ]
    line = signals_line([[], ["label shift label_rate"], ["label shift label_rate", "quality accuracy"]])
    assert line == (
        "signals fired (3 monitor runs): label shift label_rate in runs 2, 3; quality accuracy in runs 3"
    )
    assert signals_line([[], []]) == "signals fired (2 monitor runs): none"


def test_recurring_and_gradual_streams_change_as_planned(tmp_path):
    recurring = write_stream(tmp_path, "recurring", Sizes(history=2000, batches=6, batch_rows=1000))
    model = history_model(recurring)
    scores = [accuracy(model, recurring, i) for i in range(6)]
    assert [score > 0.8 for score in scores] == [True, True, False, False, False, True]
    # the long episode brings its own batches: B for six, then four of A
    long = write_stream(tmp_path, "recurring_long", Sizes(history=500, batches=4, batch_rows=200))
    assert [plan.share_b for plan in long.plans] == [0.0] * 2 + [1.0] * 6 + [0.0] * 4
    assert (long.change_points, len(list(long.batches.iterdir()))) == ((2, 8), 12)
    gradual = write_stream(tmp_path, "gradual", Sizes(history=2000, batches=6, batch_rows=1000))
    model = history_model(gradual)
    scores = [accuracy(model, gradual, i) for i in range(1, 6)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.85
    assert scores[-1] < 0.65


def replay(stream: Stream, home_root: Path) -> ReplayResult:
    spec = load_spec(stream.spec_path)
    user = load_settings().model_copy(update={"expectations_dir": stream.expectations})
    options = ReplayOptions(
        batches=stream.batches,
        labels=stream.labels,
        label_delay=LABEL_DELAY,
        home=home_root / "home",
        start=DEFAULT_START,
    )
    return run_replay(spec, user, options)


def test_a_replay_quarantines_the_corrupted_batch_and_serves_the_rest(tmp_path):
    stream = write_stream(tmp_path, "corrupted", Sizes(history=2000, batches=3, batch_rows=500, change_at=1))
    assert read_labeled(stream, 1)["x1"].isna().all()
    result = replay(stream, tmp_path / "corrupted")
    assert [b.action for b in result.batches] == ["scored", "quarantined", "scored"]
    assert any("x1" in error for error in result.batches[1].errors)


def test_a_replay_of_the_stable_stream_retrains_nothing(tmp_path):
    stream = write_stream(tmp_path, "stable", SIZES)
    result = replay(stream, tmp_path / "stable")
    assert [b.action for b in result.batches] == ["scored"] * SIZES.batches
    assert [t.trigger for t in result.trainings] == ["manual"], [b.reason for b in result.batches]
    assert all(b.served is not None and b.served["accuracy"] > 0.85 for b in result.batches)
