"""The README's first command: the example pipeline trained twice through Airflow, explained."""

from __future__ import annotations

from pathlib import Path

from ctloop.datagen import write_batches
from ctloop.localenv import REPO_DIR
from ctloop.settings import load_settings

PIPELINE = "churn"
FIRST_BATCHES = 4


def _run_dag(dag_id: str, reason: str, note: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO_DIR / "dags"))
    if dag_id not in bag.dags:
        raise SystemExit(f"{dag_id} did not load; import errors: {bag.import_errors}")
    return bag.dags[dag_id].test(run_conf={"reason": reason, "note": note})


def describe_training(dag_id: str, run_id: str) -> str:
    """What a training run did, read back from its MLflow run and the registry."""
    from ctloop import registry

    settings = load_settings()
    client = registry.client(settings)
    experiment = client.get_experiment_by_name(PIPELINE)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{registry.RUN_KEY_TAG}` = '{dag_id}/{run_id}'"
    )
    if not runs:
        return f"{dag_id} {run_id}: no MLflow run was recorded"
    run = runs[0]
    tags, metrics = run.data.tags, run.data.metrics
    champion = registry.get_champion(client, PIPELINE)

    def metric_line(prefix: str) -> str:
        return "  ".join(
            f"{k.removeprefix(prefix)} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(prefix)
        )

    lines = [
        f"{dag_id} / {run_id}",
        f"  reason      {tags.get('ctloop.reason')}",
        f"  data        sha256 {tags.get('ctloop.data_sha256')}",
        f"              snapshot {tags.get('ctloop.data_uri')}",
        f"  validation  {tags.get('ctloop.validation', 'not run')}",
        f"  candidate   {metric_line('holdout_') or 'not evaluated'}",
        f"  champion    {metric_line('champion_holdout_') or 'none yet'}",
        f"  holdout     digest {tags.get('ctloop.holdout_digest')}",
        f"  gate        {tags.get('ctloop.gate_summary', 'not reached')}",
        f"  promotion   {tags.get('ctloop.promotion', 'not reached')}",
        f"  champion    now v{champion.version}" if champion else "  champion    none",
        f"  MLflow run  {run.info.run_id} (experiment {PIPELINE})",
    ]
    return "\n".join(lines)


def run_demo(home: Path, rows_per_batch: int) -> int:
    """Train on four batches, then on a fifth that arrives later; print both outcomes."""
    settings = load_settings()
    data_dir = settings.home / "data" / PIPELINE / "training"
    existing = sorted(data_dir.glob("batch-*.csv"))
    if not existing:
        write_batches(data_dir, range(FIRST_BATCHES), rows=rows_per_batch)
    dag_id = f"{PIPELINE}__train"
    first = _run_dag(dag_id, "demo: first training", "ctloop demo")
    print("\n" + describe_training(dag_id, first.run_id))
    next_index = len(sorted(data_dir.glob("batch-*.csv")))
    write_batches(data_dir, range(next_index, next_index + 1), rows=rows_per_batch)
    second = _run_dag(dag_id, "demo: a new batch arrived", f"batch {next_index} added")
    print("\n" + describe_training(dag_id, second.run_id))
    failed = [r.run_id for r in (first, second) if str(getattr(r.state, "value", r.state)) != "success"]
    print(
        f"""
State lives in {home}. To look at it:
  Airflow UI:  make airflow      (airflow standalone on this home; http://127.0.0.1:8080)
  MLflow UI:   make mlflow-ui    (http://127.0.0.1:5000, experiment and model '{PIPELINE}')
"""
    )
    if failed:
        print(f"FAILED runs: {failed}")
        return 1
    return 0
