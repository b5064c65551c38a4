"""The README's first command, end to end, in a fresh CTLOOP_HOME (smaller batches for speed).

It starts the real Airflow components (api-server, scheduler, dag-processor), so the retraining
in the middle is started by the scheduler on the monitor's asset event, not by the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]


def _rows(out: str, marker: str) -> list[str]:
    return [line for line in out.splitlines() if marker in line]


def test_demo_runs_the_whole_loop_and_retrains_on_drift_by_itself(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "CTLOOP"))}
    home = tmp_path / "home"
    env["CTLOOP_HOME"] = str(home)
    ctloop = Path(sys.executable).with_name("ctloop")
    result = subprocess.run(
        [str(ctloop), "demo", "--rows", "1500"], env=env, capture_output=True, text=True, timeout=1500
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]

    first = _rows(out, "(started by unpausing the DAG)") or _rows(out, "first training ")
    assert len(first) == 1, out
    assert " v1 " in first[0], out
    assert "promoted: gate passed" in first[0], out
    stable = _rows(out, "(stable)")
    assert len(stable) == 3, stable
    assert all("hold: no trigger crossed" in row for row in stable), stable
    assert all(" 0.00 " in row for row in stable)  # no feature drifted on stable data
    shifted = _rows(out, "(shifted)")
    assert "hold: 1 of the last 3 windows alerted; retrain.k_of_n needs 2 of 3" in shifted[0]
    assert "retrain: confirmed alert" in shifted[1]
    (retrain,) = _rows(out, "retrain (started by the monitor's asset event)")
    assert re.search(r"(promoted|not_promoted): gate (passed|rejected)", retrain), retrain
    assert len(shifted) == 3, "the demo shows one more shifted batch after the retrain"

    # The retraining's MLflow run records the monitor's reason and the report that asked for it.
    retrain_record = out.split("churn__train / asset_triggered__")[1]
    assert "reason      drift share" in retrain_record
    report = Path(re.search(r"reports\s+(\S+report\.html)", retrain_record).group(1))
    assert report.is_file()
    assert "evidently" in report.read_text().lower()
    assert (report.parent / "summary.json").is_file()
    assert "make airflow" in out
    assert "make mlflow-ui" in out
    assert (home / "mlflow.db").exists()
    assert (home / "airflow" / "airflow.db").exists()
