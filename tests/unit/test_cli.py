from __future__ import annotations

import os

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


def test_datagen_writes_the_other_examples_and_refuses_churn_only_options(tmp_path, capsys):
    args = ["datagen", "--out", str(tmp_path), "--rows", "40"]
    assert main([*args, "--dataset", "tickets"]) == 0
    frame = pd.read_csv(capsys.readouterr().out.split()[0])
    assert set(frame["priority"]) <= {"low", "normal", "urgent"}
    assert frame["ticket_id"].is_unique
    assert main([*args, "--dataset", "delivery", "--fault", "nulls"]) == 2
    assert "churn dataset only" in capsys.readouterr().err


def test_init_creates_both_databases_before_any_component_starts(tmp_path):
    """Components and tasks then find MLflow's tables made; creating them from several processes
    at once collides in MLflow's migrations (the demo failed so)."""
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "CTLOOP"))}
    env["CTLOOP_HOME"] = str(tmp_path)
    ctloop = Path(sys.executable).with_name("ctloop")
    subprocess.run([str(ctloop), "init"], env=env, check=True, capture_output=True, timeout=300)

    def tables(db: Path) -> set[str]:
        with sqlite3.connect(db) as connection:
            return {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}

    assert {"experiments", "runs", "registered_model_aliases", "alembic_version"} <= tables(
        tmp_path / "mlflow.db"
    )
    assert {"dag", "dag_run", "task_instance"} <= tables(tmp_path / "airflow" / "airflow.db")
