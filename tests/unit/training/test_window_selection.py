"""Choosing an alert run's training window on the recent holdout: a concept change is learnt from
the short window, a stable stream keeps all history, an explicit window is never second-guessed,
and the time budget is strict and recorded."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from ctloop.data import holdout as holdouts
from ctloop.devtools.example_data import generate_batch
from ctloop.errors import SpecError
from ctloop.spec.models import PipelineSpec, TrainingWindow
from ctloop.training.window_selection import choose_window, refit, selects, window_label
from tests.helpers import example_spec

SOURCE, LABELED = [1500, 1500, 1500], 600


def _spec(**selection) -> PipelineSpec:
    raw = example_spec("sel", "/unused")
    raw["retrain"]["selection"] = selection
    raw["retrain"].pop("data", None)
    return PipelineSpec.model_validate(raw)


def _stream(changed_from: int | None, labeled: int = 3) -> tuple[pd.DataFrame, list[int], pd.DataFrame]:
    """Three source files of the old concept, then ``labeled`` labeled batches, the concept changed
    from labeled batch ``changed_from`` on (None: never); and the recent holdout after them."""
    frames = [generate_batch(rows, seed=5, batch_index=i) for i, rows in enumerate(SOURCE)]
    for index in range(labeled):
        changed = changed_from is not None and index >= changed_from
        frames.append(generate_batch(LABELED, seed=6, batch_index=10 + index, concept_drift=changed))
    recent = generate_batch(1000, seed=7, batch_index=20, concept_drift=changed_from is not None)
    return pd.concat(frames, ignore_index=True), [len(f) for f in frames], recent


def _by_window(chosen) -> dict:
    return {c.window: c for c in chosen.record.candidates}


def test_after_a_concept_change_a_short_window_is_chosen_and_every_alternative_recorded():
    frame, rows, recent = _stream(changed_from=1)
    chosen = choose_window(_spec(), frame, rows, 3, recent)
    record, tried = chosen.record, _by_window(chosen)
    assert list(tried) == ["all", "batches:1", "batches:2"]  # all history first, then k ascending
    assert record.chosen in ("batches:1", "batches:2")
    assert tried[record.chosen].status == "chosen"
    assert tried["all"].status == "scored"
    assert tried[record.chosen].score > tried["all"].score + 0.1  # all history is mostly the old concept
    assert (record.metric, record.higher_is_better, record.recent_rows) == ("roc_auc", True, 1000)
    assert record.why.startswith(f"{record.chosen} scored roc_auc ")
    assert f"all {tried['all'].score:.4f}" in record.why
    # the largest window within min_gain of the best is kept
    best = max(c.score for c in record.candidates)
    kept = max((c.rows, c.window) for c in record.candidates if c.score >= best - 0.005)
    assert kept[1] == record.chosen


def test_the_chosen_window_is_trained_and_held_out_as_that_explicit_window_would_be():
    frame, rows, recent = _stream(changed_from=1)
    chosen = choose_window(_spec(last_batches=[2]), frame, rows, 3, recent)
    assert chosen.record.chosen == "batches:2"
    window = frame.iloc[-2 * LABELED :].reset_index(drop=True)
    training, holdout = holdouts.split(window, _spec())
    pd.testing.assert_frame_equal(chosen.training, training)
    pd.testing.assert_frame_equal(chosen.holdout, holdout)
    assert _by_window(chosen)["batches:2"].rows == len(training)
    assert chosen.model.score(chosen.training[_spec().columns.features], chosen.training["churned"]) > 0.5


def test_a_stable_stream_keeps_all_history():
    frame, rows, recent = _stream(changed_from=None)
    chosen = choose_window(_spec(), frame, rows, 3, recent)
    assert chosen.record.chosen == "all"
    assert len(chosen.training) + len(chosen.holdout) == len(frame)
    assert [c.status for c in chosen.record.candidates] == ["chosen", "scored", "scored"]


def test_a_tie_within_min_gain_keeps_the_larger_window():
    frame, rows, recent = _stream(changed_from=1)
    chosen = choose_window(_spec(min_gain=1.0), frame, rows, 3, recent)
    assert chosen.record.chosen == "all"
    assert "the largest window within 1 of the best is kept" in chosen.record.why


def test_windows_that_do_not_exist_or_are_too_small_are_skipped_with_why():
    frame, rows, recent = _stream(changed_from=0, labeled=2)
    chosen = choose_window(_spec(last_batches=[1, 3], min_rows=500), frame, rows, 2, recent)
    tried = _by_window(chosen)
    assert tried["batches:3"].status == "skipped"
    assert tried["batches:3"].note == "only 2 labeled batch(es) are trained on"
    assert tried["batches:1"].status == "skipped"
    assert (
        tried["batches:1"].note == f"{tried['batches:1'].rows} training rows < retrain.selection.min_rows 500"
    )
    assert tried["batches:1"].score is None
    assert chosen.record.chosen == "all"
    assert chosen.record.why.endswith("on the recent holdout; no other window was scored")


def test_a_window_of_one_class_is_skipped():
    frame, rows, recent = _stream(changed_from=1)
    frame.loc[len(frame) - LABELED :, "churned"] = 1
    tried = _by_window(choose_window(_spec(last_batches=[1]), frame, rows, 3, recent))
    assert (tried["batches:1"].status, tried["batches:1"].note) == (
        "skipped",
        "its training rows are of one class only",
    )


def test_windows_not_reached_within_the_budget_are_skipped_and_all_history_always_runs():
    frame, rows, recent = _stream(changed_from=1)
    timer = itertools.chain([0.0, 0.0], itertools.repeat(301.0)).__next__  # start, then all history
    chosen = choose_window(_spec(budget_seconds=300), frame, rows, 3, recent, timer=timer)
    tried = _by_window(chosen)
    assert chosen.record.chosen == "all"
    assert tried["all"].status == "chosen"
    for window in ("batches:1", "batches:2"):
        assert tried[window].status == "skipped"
        assert tried[window].note == "not reached: 301 s spent of retrain.selection.budget_seconds 300"
    assert (chosen.record.budget_seconds, chosen.record.seconds) == (300.0, 301.0)


@pytest.mark.parametrize(
    ("retrain", "trigger", "expected"),
    [
        ({}, "asset", True),
        ({}, "alert", True),
        ({}, "schedule", False),
        ({}, "manual", False),
        ({"data": {"window": "all"}}, "asset", False),  # set in the YAML, even to the default
        ({"data": {"window": "batches", "last": 2}}, "alert", False),
        ({"selection": {"enabled": False}}, "asset", False),
    ],
)
def test_only_an_alert_run_without_an_explicit_window_selects(retrain, trigger, expected):
    raw = example_spec("sel", "/unused")
    raw["retrain"] = {**{k: v for k, v in raw["retrain"].items() if k != "data"}, **retrain}
    assert selects(PipelineSpec.model_validate(raw), trigger) is expected


def test_a_trigger_form_window_counts_as_explicit():
    spec = _spec()
    assert selects(spec, "asset")
    retrain = spec.retrain.model_copy(update={"data": TrainingWindow(window="all")})  # as spec_for_run does
    assert not selects(spec.model_copy(update={"retrain": retrain}), "asset")


@pytest.mark.parametrize(
    ("window", "label"),
    [({}, "all"), ({"window": "batches", "last": 2}, "batches:2"), ({"window": "days", "last": 7}, "days:7")],
)
def test_window_label(window, label):
    assert window_label(TrainingWindow(**window)) == label


def test_a_retry_refits_the_window_the_run_recorded():
    frame, rows, recent = _stream(changed_from=1)
    first = choose_window(_spec(), frame, rows, 3, recent)
    again = refit(_spec(), frame, rows, 3, first.record)
    assert again.record == first.record
    pd.testing.assert_frame_equal(again.training, first.training)
    pd.testing.assert_frame_equal(again.holdout, first.holdout)
    with pytest.raises(SpecError, match=r"the window 'batches:2' this run chose cannot be cut any more"):
        refit(
            _spec(last_batches=[1]), frame, rows, 3, first.record.model_copy(update={"chosen": "batches:2"})
        )
