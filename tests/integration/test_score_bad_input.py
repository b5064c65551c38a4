"""``<pipeline>__score`` on bad input, through real Airflow: every bad batch is quarantined with
its reason and fails its own task while good batches of the same run are scored; a batch whose
value is infinite is set aside once, not scored again on every run; a batch delivered again is
never scored twice; late labels for unknown ids wait and join later; a bad label file is set
aside while the others join."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, partition_key
from ctloop.settings import load_settings
from tests.integration.conftest import returned, run_dag, task_states

pytestmark = pytest.mark.integration

ROWS = 300

# Each bad batch, the fault it carries, and the check and column its reason must name.
BAD_BATCHES = {
    "batch-0051": ("empty", "readable", None, "file is empty (0 bytes)"),
    "batch-0052": ("header_only", "has_rows", None, "no rows"),
    "batch-0053": ("missing_column", "column_present", "monthly_charges", "is missing"),
    "batch-0054": ("extra_column", "no_unexpected_columns", "unexpected_score", "not declared"),
    "batch-0055": ("all_null", "not_all_null", "credit_score", f"no value in any of its {ROWS} rows"),
    "batch-0056": ("wrong_type", "numeric_dtype", "monthly_charges", "'seventy'"),
}


def _storage():
    return home_storage(load_settings())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _partition_bytes(pipeline, area: str, batch_id: str) -> bytes:
    return _storage().read_bytes(partition_key(area, pipeline.name, batch_id))


def _batch_states(dag_run) -> dict[str, str]:
    """The state of each mapped ``score_batch`` instance, by batch id."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="score_batch")
            .all()
        )
        return {ti.rendered_map_index: str(getattr(ti.state, "value", ti.state)) for ti in rows}


def _production_frame(index: int) -> pd.DataFrame:
    """Batch ``index`` as ``Pipeline.deliver`` writes it: no label yet."""
    return generate_batch(ROWS, seed=7, batch_index=index).drop(columns=[TARGET])


def _deliver_bad(pipeline, batch_id: str, fault: str) -> bytes:
    index = int(batch_id.removeprefix("batch-"))
    if fault == "header_only":
        path = pipeline.incoming / f"{batch_id}.csv"
        _production_frame(index).head(0).to_csv(path, index=False)
    else:
        (path,) = pipeline.deliver(range(index, index + 1), rows=ROWS, fault=fault)
    return path.read_bytes()


def test_bad_batches_are_quarantined_with_their_reason_while_good_ones_are_scored(pipeline, capsys):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    pipeline.deliver(range(50, 51), rows=ROWS)
    delivered = {
        batch_id: _deliver_bad(pipeline, batch_id, fault) for batch_id, (fault, *_) in BAD_BATCHES.items()
    }
    assert delivered["batch-0051"] == b""
    assert delivered["batch-0052"].count(b"\n") == 1

    dag_run = run_dag(f"{pipeline.name}__score")

    assert dag_run.state == "failed"
    assert _batch_states(dag_run) == {"batch-0050": "success", **dict.fromkeys(BAD_BATCHES, "failed")}
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ["batch-0050"]
    assert len(from_parquet_bytes(_partition_bytes(pipeline, PREDICTIONS, "batch-0050"))) == ROWS
    out = capsys.readouterr().out
    storage = _storage()
    for batch_id, (_, check, column, detail) in BAD_BATCHES.items():
        prefix = f"quarantine/{pipeline.name}/{batch_id}"
        reason = json.loads(storage.read_bytes(f"{prefix}/reason.json"))
        named = [f for f in reason["failures"] if f["check"] == check and f["column"] == column]
        assert named, (batch_id, reason["failures"])
        assert detail in named[0]["detail"], (batch_id, reason["failures"])
        assert reason["batch"]["batch_id"] == batch_id
        assert not (pipeline.incoming / f"{batch_id}.csv").exists()
        assert storage.read_bytes(f"{prefix}/{batch_id}.csv") == delivered[batch_id]
        uri = str(pipeline.incoming / f"{batch_id}.csv")
        message = rf"BatchQuarantined: {re.escape(uri)}: moved to [^\n]*{check}\[{column or 'table'}\]"
        assert re.search(message, out), (batch_id, check, column)


def test_batch_delivered_again_is_never_scored_twice_and_late_labels_wait_for_their_batch(pipeline, capsys):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    same, changed = pipeline.deliver(range(50, 52), rows=ROWS)
    labels = pipeline.label(60, rows=ROWS)  # labels of a batch that has not arrived yet

    first = run_dag(f"{pipeline.name}__score")
    assert first.state == "success"
    joined = returned(first, "join_labels")
    assert joined["waiting_for_unknown_ids"] == ROWS
    assert joined["labeled_rows"] == 0
    assert joined["waiting_sample"][0] == pd.read_csv(labels, dtype=str)["customer_id"].iloc[0]
    assert batch_ids(LABELED, pipeline.name, load_settings()) == []
    scored = {b: _partition_bytes(pipeline, PREDICTIONS, b) for b in ("batch-0050", "batch-0051")}
    original = changed.read_bytes()

    same.write_bytes(same.read_bytes())  # (a) the same file again: rewritten, content unchanged
    corrected = _production_frame(51)
    corrected.loc[0, "age"] += 1
    changed.write_bytes(corrected.to_csv(index=False).encode())  # (b) same name, other content
    assert changed.read_bytes() != original
    assert len(changed.read_bytes()) == len(original)
    pipeline.deliver(range(60, 61), rows=ROWS)

    second = run_dag(f"{pipeline.name}__score")
    assert second.state == "failed"
    assert _batch_states(second) == {"batch-0051": "failed", "batch-0060": "success"}
    for batch_id, data in scored.items():
        assert _partition_bytes(pipeline, PREDICTIONS, batch_id) == data
    assert same.exists()
    assert not changed.exists()
    storage = _storage()
    prefix = f"conflicts/{pipeline.name}/batch-0051"
    assert storage.read_bytes(f"{prefix}/batch-0051.csv") == corrected.to_csv(index=False).encode()
    reason = json.loads(storage.read_bytes(f"{prefix}/reason.json"))
    assert reason["scored_sha256"] == _sha(original)
    assert reason["sha256"] == _sha(corrected.to_csv(index=False).encode())
    assert reason["conflicts_with"].endswith(partition_key(PREDICTIONS, pipeline.name, "batch-0051"))
    assert "already scored from other content" in reason["detail"]
    out = capsys.readouterr().out
    assert re.search(rf"BatchConflict: {re.escape(str(changed))}: moved to [^\n]*already scored", out)

    third = run_dag(f"{pipeline.name}__score")
    assert third.state == "success"
    assert _batch_states(third) == {None: "skipped"}  # nothing new: no batch is scored again
    joined = returned(third, "join_labels")
    assert joined["waiting_for_unknown_ids"] == 0
    assert joined["labeled_rows"] == ROWS
    ids = ["batch-0050", "batch-0051", "batch-0060"]
    assert batch_ids(PREDICTIONS, pipeline.name, load_settings()) == ids
    log = pd.concat([from_parquet_bytes(_partition_bytes(pipeline, PREDICTIONS, b)) for b in ids])
    assert len(log) == 3 * ROWS
    assert log["customer_id"].is_unique
    labeled = from_parquet_bytes(_partition_bytes(pipeline, LABELED, "batch-0060"))
    truth = pd.read_csv(labels, dtype={"customer_id": str})
    merged = labeled.merge(truth, on="customer_id", suffixes=("", "_truth"))
    assert len(merged) == ROWS
    assert (merged[TARGET] == merged[f"{TARGET}_truth"]).all()


def test_label_file_without_the_target_fails_join_labels_naming_file_and_column(pipeline, capsys):
    pipeline.labels.mkdir(parents=True)
    bad = pipeline.labels / "labels-0070.csv"
    pd.DataFrame({"customer_id": ["c1", "c2"], "outcome": [1, 0]}).to_csv(bad, index=False)
    data = bad.read_bytes()

    dag_run = run_dag(f"{pipeline.name}__score")

    assert dag_run.state == "failed"
    assert task_states(dag_run)["join_labels"] == "failed"
    out = capsys.readouterr().out
    assert re.search(rf"LabelError: {re.escape(str(bad))}: label file lacks column\(s\) {TARGET}", out)
    assert not bad.exists()  # set aside with its reason, so the next run does not fail on it again
    prefix = f"quarantine-labels/{pipeline.name}/labels-0070"
    assert _storage().read_bytes(f"{prefix}/labels-0070.csv") == data
    assert json.loads(_storage().read_bytes(f"{prefix}/reason.json"))["failures"][0]["column"] == TARGET
    assert batch_ids(LABELED, pipeline.name, load_settings()) == []
    assert run_dag(f"{pipeline.name}__score").state == "success"


def test_a_batch_with_an_infinite_value_is_set_aside_once_and_bad_labels_never_reach_the_log(
    pipeline, capsys
):
    pipeline.add_batches(3)
    run_dag(pipeline.dag_id, reason="v1")
    good, infinite = pipeline.deliver(range(50, 52), rows=ROWS)
    frame = pd.read_csv(infinite, dtype={"customer_id": str})
    frame.loc[5, "data_usage_gb"] = float("inf")  # no expectation bounds it: the reader refuses it
    frame.to_csv(infinite, index=False)
    labels = pipeline.label(50, rows=ROWS)
    truth = pd.read_csv(labels, dtype={"customer_id": str})
    wrong = truth.head(4).assign(**{TARGET: ["0", "1", "2", "maybe"]})
    wrong.to_csv(pipeline.labels / "labels-0099.csv", index=False)

    first = run_dag(f"{pipeline.name}__score")

    assert first.state == "failed"
    assert _batch_states(first) == {"batch-0050": "success", "batch-0051": "failed"}
    assert task_states(first)["join_labels"] == "failed"
    storage = _storage()
    reason = json.loads(storage.read_bytes(f"quarantine/{pipeline.name}/batch-0051/reason.json"))
    assert reason["failures"][0]["check"] == "readable"
    assert "'data_usage_gb'" in reason["failures"][0]["detail"]
    assert "infinite" in reason["failures"][0]["detail"]
    assert not infinite.exists()
    assert not storage.exists(partition_key(PREDICTIONS, pipeline.name, "batch-0051"))
    out = capsys.readouterr().out
    assert re.search(r"BatchQuarantined: [^\n]*batch-0051.csv: moved to [^\n]*readable\[table\]", out)
    assert re.search(r"LabelError: [^\n]*labels-0099.csv: label_value\[churned\]: 2 label\(s\)", out)

    second = run_dag(f"{pipeline.name}__score")
    assert second.state == "success"  # nothing fails again: both bad files are set aside
    assert _batch_states(second) == {None: "skipped"}
    assert good.exists()
    joined = returned(second, "join_labels")
    assert joined["files_set_aside"] == []
    assert joined["classes_from"].startswith("champion v")
    labeled = from_parquet_bytes(_partition_bytes(pipeline, LABELED, "batch-0050"))
    assert len(labeled) == ROWS  # the good labels joined; the bad file never did
    assert (
        labeled.merge(truth, on="customer_id", suffixes=("", "_truth")).pipe(
            lambda m: m[TARGET] == m[f"{TARGET}_truth"]
        )
    ).all()
