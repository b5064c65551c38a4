"""Choosing an alert run's training window on the recent holdout: a concept change is learnt from
the short window, a stable stream keeps all history, an explicit window is never second-guessed,
and the time budget is strict and recorded."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ctloop.data import holdout as holdouts
from ctloop.devtools.example_data import generate_batch
from ctloop.errors import SpecError
from ctloop.spec.models import PipelineSpec, TrainingWindow
from ctloop.training.window_selection import (
    ChangePoint,
    choose_window,
    find_change_point,
    refit,
    selects,
    window_label,
)
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


def _log(quality_by_batch: dict[str, bool], version: str = "1", rows: int = 1000) -> pd.DataFrame:
    """A labeled prediction log: per batch, rows ``version`` served right (True) or wrongly (False)."""
    rng = np.random.default_rng(3)
    frames = []
    for batch_id, right in quality_by_batch.items():
        y = rng.integers(0, 2, rows)
        predicted = y if right else 1 - y
        score = np.clip(0.5 + (predicted - 0.5) * rng.uniform(0.2, 0.9, rows), 0.0, 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "batch_id": batch_id,
                    "model_version": version,
                    "prediction": predicted,
                    "score": score,
                    "churned": y,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


BATCHES = [f"b{i:02d}" for i in range(6)]


def test_a_change_at_a_known_batch_is_found_with_the_batches_trained_on_since():
    log = _log(dict(zip(BATCHES, [True, True, True, False, False, False], strict=True)))
    found = find_change_point(_spec(), log, "1", 0.95, trained_on=BATCHES[:5])  # b05: the recent holdout
    assert (found.batch_id, found.batches) == ("b03", 2)
    assert found.why.startswith(
        "change point b03: champion v1's roc_auc per served batch (>= 1000 labels): b00 1.0"
    )
    assert "threshold 0.9000 (holdout 0.9500, max_drop 0.05)" in found.why
    # the change is in the recent holdout: found, with nothing trained on since
    recent_only = find_change_point(_spec(), log.query("batch_id != 'b05'"), "1", 0.95, BATCHES[:3])
    assert (recent_only.batch_id, recent_only.batches) == ("b03", 0)


@pytest.mark.parametrize(
    ("right", "why"),
    [
        ([True] * 6, "the latest is not below it"),  # stable
        ([True, True, False, False, True, True], "the latest is not below it"),  # recovered
        ([False] * 6, "no batch before was above it"),  # never good: nothing changed under it
    ],
)
def test_no_change_point_without_a_trailing_fall_after_good_batches(right, why):
    found = find_change_point(_spec(), _log(dict(zip(BATCHES, right, strict=True))), "1", 0.95, BATCHES[:5])
    assert (found.batch_id, found.batches) == (None, 0)
    assert found.why.startswith("no change point: ")
    assert found.why.endswith(why)


def test_only_the_champions_rows_with_enough_labels_are_judged():
    served_by_v1 = _log(dict(zip(BATCHES[:3], [True] * 3, strict=True)))
    served_by_v2 = _log({"b03": False, "b04": False}, version="2")  # another version's failures
    too_few = _log({"b05": False}, rows=999)  # below monitoring.quality.min_labels 1000
    log = pd.concat([served_by_v1, served_by_v2, too_few], ignore_index=True)
    found = find_change_point(_spec(), log, "1", 0.95, BATCHES[:5])
    assert found.batch_id is None
    assert "b00 1.0000, b01 1.0000, b02 1.0000;" in found.why
    assert (
        find_change_point(_spec(), log, "1", None, BATCHES).why
        == "none looked for: champion v1 has no holdout roc_auc"
    )


def test_the_window_since_the_change_point_is_a_candidate_scored_and_recorded():
    frame, rows, recent = _stream(changed_from=1, labeled=4)  # labeled batches 1-3 changed
    change = ChangePoint("b11", 3, "change point b11: ...")
    chosen = choose_window(_spec(last_batches=[1]), frame, rows, 4, recent, change)
    tried = _by_window(chosen)
    assert list(tried) == ["all", "batches:1", "since:b11"]
    assert tried["since:b11"].rows == len(holdouts.split(frame.iloc[-3 * LABELED :], _spec())[0])
    assert tried["since:b11"].score > tried["all"].score + 0.1
    assert chosen.record.chosen == "since:b11"  # the largest window within min_gain of the best
    assert chosen.record.change_point == "change point b11: ..."
    again = refit(_spec(last_batches=[1]), frame, rows, 4, chosen.record, change)
    pd.testing.assert_frame_equal(again.training, chosen.training)


def test_a_change_point_window_equal_to_a_last_k_window_takes_its_score_and_is_not_kept_over_it():
    frame, rows, recent = _stream(changed_from=1)
    chosen = choose_window(_spec(), frame, rows, 3, recent, ChangePoint("b11", 2, "change point b11"))
    tried = _by_window(chosen)
    assert (tried["since:b11"].rows, tried["since:b11"].score) == (
        tried["batches:2"].rows,
        tried["batches:2"].score,
    )
    assert tried["since:b11"].note == "the same rows as batches:2"
    assert chosen.record.chosen != "since:b11"


def test_a_change_point_in_the_recent_holdout_is_recorded_and_skipped():
    frame, rows, recent = _stream(changed_from=None)
    chosen = choose_window(_spec(), frame, rows, 3, recent, ChangePoint("b13", 0, "change point b13"))
    tried = _by_window(chosen)
    assert (tried["since:b13"].status, tried["since:b13"].score) == ("skipped", None)
    assert tried["since:b13"].note == "the change point is in the recent holdout: nothing since is trained on"


def test_without_a_change_point_there_is_no_such_candidate():
    frame, rows, recent = _stream(changed_from=None)
    no_change = ChangePoint(None, 0, "no change point: ...")
    chosen = choose_window(_spec(), frame, rows, 3, recent, no_change)
    assert [c.window for c in chosen.record.candidates] == ["all", "batches:1", "batches:2"]
    assert chosen.record.change_point == "no change point: ..."


def test_a_change_point_is_judged_by_the_rule_of_the_metric_the_windows_are_scored_by():
    log = _log(dict(zip(BATCHES, [True, True, True, False, False, False], strict=True)))
    accuracy = _spec().monitoring.quality.rules[1]  # the example's accuracy rule, max_drop 0.04
    found = find_change_point(_spec(), log, "1", 0.95, BATCHES[:5], accuracy)
    assert found.batch_id == "b03"
    assert "champion v1's accuracy per served batch" in found.why
    assert "threshold 0.9100 (holdout 0.9500, max_drop 0.04)" in found.why


def test_windows_are_scored_by_the_metric_given_and_recorded_with_it():
    frame, rows, recent = _stream(changed_from=1)
    by_accuracy = choose_window(_spec(), frame, rows, 3, recent, metric="accuracy")
    record = by_accuracy.record
    assert (record.metric, record.higher_is_better) == ("accuracy", True)
    assert record.why.startswith(f"{record.chosen} scored accuracy ")
    by_brier = choose_window(_spec(), frame, rows, 3, recent, metric="brier").record
    assert (by_brier.metric, by_brier.higher_is_better) == ("brier", False)
    assert all(0 <= c.score <= 1 for c in by_brier.candidates if c.score is not None)
    # lower is better: the window kept scores within min_gain of the lowest brier
    scores = {c.window: c.score for c in by_brier.candidates if c.score is not None}
    assert scores[by_brier.chosen] <= min(scores.values()) + 0.005
