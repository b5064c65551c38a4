"""(b) MLflow write path (log model, register, move alias) versus training time. Target <= 0.5x.

Example pipeline's model on 100k rows, against a fresh SQLite tracking store with local
artifacts, as on the embedded default.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import report

REPO = Path(__file__).resolve().parent.parent


def main(rows: int = 100_000) -> dict:
    home = Path(tempfile.mkdtemp(prefix="ctloop-bench-"))
    os.environ.update(CTLOOP_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
    os.environ.pop("CTLOOP_MLFLOW_ARTIFACT_ROOT", None)

    import pandas as pd

    from ctloop.data import holdout
    from ctloop.devtools.example_data import generate_batch
    from ctloop.registry import mlflow_store as registry
    from ctloop.settings import load_settings
    from ctloop.spec.loading import load_spec
    from ctloop.training.estimator import features, fit

    spec = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
    settings = load_settings()
    frame = pd.concat(
        [generate_batch(rows // 10, seed=1, batch_index=i) for i in range(10)], ignore_index=True
    )
    training, _ = holdout.split(frame, spec)
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, "bench", settings.mlflow_artifact_root)  # store set up

    start = time.perf_counter()
    model = fit(spec, training)
    train_seconds = time.perf_counter() - start

    def write_path(run_key: str, fitted) -> float:
        name = f"bench_{uuid.uuid4().hex[:6]}"
        run_id = registry.ensure_run(client, experiment, run_key, {})
        start = time.perf_counter()
        logged = registry.log_model(fitted, features(training.head(200), spec), run_id)
        version = registry.register_version(client, name, logged, run_id, run_key, {"ctloop.gate": "passed"})
        client.set_registered_model_alias(name, registry.CHAMPION, version.version)
        return time.perf_counter() - start

    # The first write in a process also pays one-off costs (importing skops, MLflow scanning the
    # installed distributions once); a task process pays them once, like sklearn's import.
    cold_seconds = write_path("bench/cold", fit(spec, training.head(2000)))
    warm_seconds = write_path("bench/run", model)
    return report(
        "mlflow_write",
        warm_seconds,
        train_seconds,
        0.5,
        rows=len(training),
        model=spec.estimator.class_path,
        first_write_in_process_seconds=round(cold_seconds, 3),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
