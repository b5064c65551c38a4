"""The "bring your own model" benchmarks run end to end on a few hundred rows: every model's
scoring path agrees with the library's own predict after the skops round trip (the benchmark
refuses to time outputs that differ), and the write's phase breakdown covers the calls the write
path makes. Whether the targets are met is the benchmarks' to report."""

from __future__ import annotations

import json
import os

import pytest

import bench.common
from bench import byom_score, byom_write
from bench.byom_cases import BYOM, EXAMPLE


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """The benchmarks point the process at their own home and write result files: keep both here;
    one timing of each call is enough to run them."""
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(byom_write, "ROUNDS", 1)
    monkeypatch.setattr(byom_score, "REPEATS", 1)
    for key in ("CTLOOP_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    monkeypatch.delenv("CTLOOP_MLFLOW_ARTIFACT_ROOT", raising=False)
    return tmp_path / "results"


def test_scoring_paths_agree_for_every_model_kind(results_dir):
    results = byom_score.main(rows=600, batch_rows=200)

    assert [r["name"] for r in results] == [f"byom_score_{c.key}" for c in (*BYOM, EXAMPLE)]
    for result in results:
        stored = json.loads((results_dir / f"{result['name']}.json").read_text())
        assert stored["batch_rows"] == 200
        assert stored["ctloop_rows_per_cpu_second"] > 0
        assert stored["bare_library_on_matrix_rows_per_cpu_second"] > 0


def test_write_breakdown_covers_the_write_path(results_dir):
    results = byom_write.main(rows=600)

    assert [r["name"] for r in results] == [f"byom_write_{c.key}" for c in BYOM]
    for result in results:
        phases = json.loads((results_dir / f"{result['name']}.json").read_text())["phases_of_fastest_write"]
        expected = {label for _, _, label in byom_write.PHASES}
        assert set(phases) == expected, expected - set(phases)
        assert sum(phases[label] for label in expected if not label.startswith(" ")) <= result["seconds"]
