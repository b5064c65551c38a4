"""The README's first command, end to end, in a fresh CTLOOP_HOME (smaller batches for speed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]


def test_demo_trains_twice_and_explains_what_happened(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "CTLOOP"))}
    env["CTLOOP_HOME"] = str(tmp_path / "home")
    ctloop = Path(sys.executable).with_name("ctloop")
    result = subprocess.run(
        [str(ctloop), "demo", "--rows", "1500"], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    first, second = out.split("churn__train / ")[1:3]
    assert "reason      demo: first training" in first
    assert "validation  passed" in first
    assert "champion    none yet" in first
    assert "promotion   promoted" in first and "champion    now v1" in first
    assert "reason      demo: a new batch arrived" in second
    assert "champion    accuracy" in second  # the champion was scored on the new holdout
    assert "gate        gate " in second
    assert "make airflow" in out and "make mlflow-ui" in out
    assert (tmp_path / "home" / "mlflow.db").exists()
    assert (tmp_path / "home" / "airflow" / "airflow.db").exists()
