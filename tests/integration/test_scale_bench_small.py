"""The scale benchmark runs end to end on 50,000 rows: every scoring run (one task; a claim planned
into two parts, scored by one worker and by two) commits the batch once with every row in one
partition and leaves no staged part, the monitor's window is the batch, and no task comes near
the memory target. Whether the time targets
are met is the benchmark's to report (at this size, interpreter start-up and the first GX context
weigh more than the rows)."""

from __future__ import annotations

import json
import os

import pytest

from bench import scale

ROWS = 50_000
SCORING = {"chunk_rows": 10_000, "fan_out_rows": 25_000}  # 5 chunks, planned into 2 parts


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """The benchmark points the process at its own home and writes its batch and result files: keep
    them here."""
    monkeypatch.setattr(scale, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("BENCH_SCALE_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(scale.SCORING_ENV, json.dumps(SCORING))
    for key in ("CTLOOP_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    monkeypatch.delenv("CTLOOP_MLFLOW_ARTIFACT_ROOT", raising=False)
    return tmp_path / "results"


def test_every_run_scores_the_batch_once_in_bounded_memory(results_dir, capsys):
    (result,) = scale.main((ROWS,))

    stored = json.loads((results_dir / f"scale_{ROWS}.json").read_text())
    assert stored["rows"] == ROWS
    assert set(stored["seconds"]) == {
        "score",
        "plain",
        "plain_each",
        "score_cpu",
        "plain_cpu",
        "parts1",
        "parts2",
        "monitor",
    }
    assert stored["time_ratio"] == pytest.approx(stored["seconds"]["score"] / stored["seconds"]["plain"])
    assert stored["seconds"]["plain"] == pytest.approx(sum(stored["seconds"]["plain_each"]) / 2)
    assert stored["parts_ratio"] == pytest.approx(stored["seconds"]["parts2"] / stored["seconds"]["parts1"])
    assert [stored["parts"][workers]["parts"] for workers in ("1", "2")] == [2, 2]
    assert [len(stored["parts"][workers]["cpu"]["workers"]) for workers in ("1", "2")] == [1, 2]
    one, two = (stored["parts"][workers]["cores"] for workers in ("1", "2"))  # a core per worker
    assert one["workers"] == [one["claim_publish"]]
    assert len(one["claim_publish"]) == 1
    assert len(set(map(tuple, two["workers"]))) == min(2, len(os.sched_getaffinity(0)))
    assert all(len(cores) == 1 for cores in two["workers"])
    assert all(peak < scale.MEMORY_TARGET for peak in result["peak_bytes"].values())
    assert result["monitor_sample"]["current"]["rows"] == ROWS
    out = capsys.readouterr().out
    assert "score_batch" in out
    assert "2 workers" in out
