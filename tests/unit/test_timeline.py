"""The timeline's columns: the served column appears only when a step has a served value."""

from __future__ import annotations

from ctloop.timeline import Row, format_timeline


def test_the_served_column_appears_when_a_batch_has_a_served_value():
    rows = [
        Row(step="batch-0004", drift="0.00", quality="0.800", served="0.712", champion="v1", decision="hold"),
        Row(step="retrain", champion="v2", decision="promoted"),
    ]
    header, batch, retrain = format_timeline(rows, "roc_auc", "accuracy").splitlines()
    assert header.split() == [
        "step",
        "drift",
        "share",
        "roc_auc",
        "served",
        "accuracy",
        "champion",
        "decision",
    ]
    assert batch.split() == ["batch-0004", "0.00", "0.800", "0.712", "v1", "hold"]
    assert header.index("champion") == batch.index("v1") == retrain.index("v2")


def test_without_served_values_the_columns_are_the_replays():
    rows = [Row(step="batch-0004", drift="0.00", quality="0.800", champion="v1", decision="hold")]
    header, _ = format_timeline(rows).splitlines()
    assert header.split() == ["step", "drift", "share", "roc_auc", "champion", "decision"]
