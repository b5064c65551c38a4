from __future__ import annotations

import json

from ctloop.replay.records import BatchRecord, ReplayResult, StepRecord, TrainingRecord, timeline


def training(index: int, at: str, trigger: str, promotion: str, after: str) -> TrainingRecord:
    return TrainingRecord(
        index=index,
        step=index,
        at=at,
        trigger=trigger,
        reason="why",
        run_key=f"p__train/{index}",
        window="all",
        snapshot_rows=100,
        train_rows=80,
        sources=["a.csv"],
        gate="passed",
        gate_summary="gate passed",
        version=str(index + 1),
        promotion=promotion,
        promoted=promotion == "promoted",
        champion_before=None,
        champion_after=after,
    )


def batch(name: str, at: str, served: dict[str, float] | None) -> BatchRecord:
    return BatchRecord(
        decision="retrain",
        reason="roc_auc dropped",
        drift_share=0.25,
        quality=0.61,
        step=1,
        at=at,
        labels_arrived=[],
        trainings=[1],
        errors=[],
        batch=name,
        batch_id=name.removesuffix(".csv"),
        action="scored",
        rows=500,
        champion_version="1",
        labeled_rows=500 if served else 0,
        served=served,
    )


def result() -> ReplayResult:
    return ReplayResult(
        pipeline="p",
        home="/tmp/h",
        start="2025-01-06T00:00:00+00:00",
        interval_minutes=30.0,
        label_delay=1,
        overrides=["retrain.k_of_n.k=1"],
        quality_metric="roc_auc",
        batches=[batch("b0.csv", "2025-01-06T00:30:00+00:00", {"roc_auc": 0.5123, "accuracy": 0.5})],
        trainings=[
            training(0, "2025-01-06T00:00:00+00:00", "manual", "promoted", "1"),
            training(1, "2025-01-06T00:30:03+00:00", "asset", "not_promoted", "1"),
        ],
        after_last_batch=StepRecord(
            decision="hold",
            reason="no trigger crossed",
            drift_share=None,
            quality=None,
            step=2,
            at="2025-01-06T01:00:00+00:00",
            labels_arrived=["b0.csv"],
            trainings=[],
            errors=[],
        ),
    )


def test_the_timeline_tells_trainings_and_steps_in_the_order_they_happened():
    rows = timeline(result())
    assert [r.step for r in rows] == [
        "train (manual)",
        "b0.csv (scored, served roc_auc 0.512)",
        "train (asset)",
        "labels of b0.csv",
    ]
    assert (rows[1].drift, rows[1].quality, rows[1].champion) == ("0.250", "0.610", "v1")
    assert rows[1].decision == "retrain: roc_auc dropped"
    assert rows[2].decision == "not_promoted: gate passed"
    assert (rows[3].drift, rows[3].quality) == ("-", "-")


def test_a_batch_without_labels_shows_no_served_value():
    unlabeled = result().model_copy(update={"batches": [batch("b0.csv", "2025-01-06T00:30:00+00:00", None)]})
    assert timeline(unlabeled)[1].step == "b0.csv (scored, served roc_auc -)"


def test_the_json_holds_a_record_per_batch_and_per_training():
    data = json.loads(result().model_dump_json())
    assert [b["batch"] for b in data["batches"]] == ["b0.csv"]
    assert {"batch", "champion_version", "decision", "reason", "drift_share", "served"} <= set(
        data["batches"][0]
    )
    assert [t["trigger"] for t in data["trainings"]] == ["manual", "asset"]
    assert {"trigger", "reason", "window", "gate", "promoted"} <= set(data["trainings"][0])
    assert ReplayResult.model_validate(data) == result()
