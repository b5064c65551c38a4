from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ctloop import clock
from ctloop.errors import DataReadError
from ctloop.replay.schedule import (
    DEFAULT_INTERVAL,
    SimulatedTime,
    cron_fires,
    cron_interval,
    data_files,
    deliveries,
)

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday


def files(tmp_path, folder: str, names: list[str]):
    directory = tmp_path / folder
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_text("x\n")
    return [directory / name for name in names]


def landed(steps):
    return [(s.step, s.batch.name if s.batch else None, [p.name for p in s.labels]) for s in steps]


def test_labels_arrive_label_delay_steps_after_their_batch_and_the_rest_last(tmp_path):
    batches = files(tmp_path, "batches", ["b0.csv", "b1.csv", "b2.csv", "b3.csv"])
    labels = files(tmp_path, "labels", ["b0.csv", "b1.csv", "b2.csv", "b3.csv"])
    assert landed(deliveries(batches, labels, 2)) == [
        (1, "b0.csv", []),
        (2, "b1.csv", []),
        (3, "b2.csv", ["b0.csv"]),
        (4, "b3.csv", ["b1.csv"]),
        (5, None, ["b2.csv", "b3.csv"]),
    ]


def test_labels_without_delay_arrive_with_their_batch_and_nothing_is_left(tmp_path):
    batches = files(tmp_path, "batches", ["b0.csv", "b1.csv"])
    labels = files(tmp_path, "labels", ["b0.csv", "b1.csv"])
    assert landed(deliveries(batches, labels, 0)) == [(1, "b0.csv", ["b0.csv"]), (2, "b1.csv", ["b1.csv"])]


def test_a_delay_beyond_the_last_batch_delivers_every_label_at_the_end(tmp_path):
    batches = files(tmp_path, "batches", ["b0.csv", "b1.csv"])
    labels = files(tmp_path, "labels", ["b0.csv", "b1.csv"])
    assert landed(deliveries(batches, labels, 5))[-1] == (3, None, ["b0.csv", "b1.csv"])


def test_a_batch_without_labels_is_never_labeled(tmp_path):
    batches = files(tmp_path, "batches", ["b0.csv", "b1.csv", "b2.csv"])
    labels = files(tmp_path, "labels", ["b0.csv", "b2.csv"])
    assert landed(deliveries(batches, labels, 1)) == [
        (1, "b0.csv", []),
        (2, "b1.csv", ["b0.csv"]),
        (3, "b2.csv", []),
        (4, None, ["b2.csv"]),
    ]


def test_a_label_file_of_no_batch_fails_naming_it(tmp_path):
    batches = files(tmp_path, "batches", ["b0.csv"])
    labels = files(tmp_path, "labels", ["b0.csv", "b9.csv"])
    with pytest.raises(DataReadError, match="b9.csv"):
        deliveries(batches, labels, 1)


def test_no_batches_or_a_negative_delay_fail(tmp_path):
    with pytest.raises(DataReadError, match="no production batch"):
        deliveries([], [], 1)
    with pytest.raises(ValueError, match="label_delay"):
        deliveries(files(tmp_path, "batches", ["b0.csv"]), [], -1)


def test_data_files_are_the_folders_files_of_the_format_in_name_order(tmp_path):
    files(tmp_path, "batches", ["b10.csv", "b02.csv", "notes.txt", ".b00.csv"])
    assert [p.name for p in data_files(tmp_path / "batches", (".csv",))] == ["b02.csv", "b10.csv"]
    with pytest.raises(DataReadError, match="not a directory"):
        data_files(tmp_path / "missing", (".csv",))


def test_the_interval_is_the_score_crons_or_an_hour():
    assert cron_interval("*/30 * * * *", START) == timedelta(minutes=30)
    assert cron_interval("0 */6 * * *", START) == timedelta(hours=6)
    assert cron_interval(None, START) == DEFAULT_INTERVAL


def test_a_train_cron_is_due_in_the_step_its_fire_time_falls_in():
    weekly = "0 3 * * 1"  # Mondays 03:00
    assert cron_fires(weekly, START + timedelta(hours=2), START + timedelta(hours=3))
    assert not cron_fires(weekly, START + timedelta(hours=3), START + timedelta(hours=4))
    assert not cron_fires(None, START, START + timedelta(days=30))


def test_each_task_of_a_step_reads_its_own_simulated_second():
    time = SimulatedTime(START, timedelta(minutes=30))
    time.begin(2)
    with time.task() as first:
        assert clock.now() == first == START + timedelta(hours=1)
    with time.task():
        assert clock.now() == START + timedelta(hours=1, seconds=1)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(minutes=1)  # the wall clock again


def test_a_naive_start_or_a_tiny_interval_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedTime(datetime(2025, 1, 1), timedelta(hours=1))
    with pytest.raises(ValueError, match="at least"):
        SimulatedTime(START, timedelta(seconds=5))
