from __future__ import annotations

import pandas as pd

from ctloop.cli import main


def test_env_prints_exports_for_the_embedded_default(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CTLOOP_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__CORE__LOAD_EXAMPLES", raising=False)
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export AIRFLOW__CORE__LOAD_EXAMPLES=False" in lines
    assert any(line.startswith("export MLFLOW_TRACKING_URI=sqlite:///") for line in lines)


def test_datagen_writes_shifted_and_broken_batches(tmp_path, capsys):
    args = ["datagen", "--out", str(tmp_path), "--batches", "2", "--first-batch", "3", "--rows", "50"]
    assert main([*args, "--shift", "monthly_charges=3", "--fault", "nulls"]) == 0
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in written] == ["batch-0003.csv", "batch-0004.csv"]
    frame = pd.read_csv(written[0])
    assert frame["tenure_months"].isna().any()
    assert frame["monthly_charges"].mean() > 120
