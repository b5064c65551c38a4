"""The models of "bring your own model" the byom benchmarks measure, on the example data.

Both libraries on both kinds of example: the delivery pipeline (LightGBM regression with its
feature module), the tickets pipeline (XGBoost multiclass with its training function; its tuning
section is left out, a search is not a fit), the churn pipeline with its estimator swapped to
XGBoost and to LightGBM (params matching the example's HistGradientBoosting: 200 trees, learning
rate 0.08, 31 leaves, one thread like the other examples), and the churn example itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PIPELINES = REPO / "include" / "pipelines"
BATCHES = 5  # the data are this many consecutive daily batches of the example generator

SWAPPED = {
    "xgboost.XGBClassifier": {
        "n_estimators": 200,
        "learning_rate": 0.08,
        "max_leaves": 31,
        "tree_method": "hist",
        "n_jobs": 1,
        "random_state": 0,
    },
    "lightgbm.LGBMClassifier": {
        "n_estimators": 200,
        "learning_rate": 0.08,
        "num_leaves": 31,
        "n_jobs": 1,
        "random_state": 0,
        "verbose": -1,
    },
}


@dataclass(frozen=True)
class Case:
    """One model: a key naming its result file, the pipeline file, and an estimator swap if any."""

    key: str
    pipeline: str
    class_path: str | None = None

    def spec(self) -> Any:
        from ctloop.spec.loading import load_spec

        spec = load_spec(PIPELINES / f"{self.pipeline}.yaml").model_copy(update={"tuning": None})
        if self.class_path is None:
            return spec
        estimator = spec.estimator.model_copy(
            update={"class_path": self.class_path, "params": SWAPPED[self.class_path]}
        )
        return spec.model_copy(update={"estimator": estimator})

    def frame(self, rows: int, seed: int = 1) -> Any:
        """``rows`` rows of the pipeline's example data, in :data:`BATCHES` daily batches."""
        import pandas as pd

        batch = _generator(self.pipeline)
        per_batch = max(rows // BATCHES, 1)
        return pd.concat([batch(per_batch, seed, i) for i in range(BATCHES)], ignore_index=True)


def _generator(pipeline: str) -> Callable[[int, int, int], Any]:
    if pipeline == "churn":
        from ctloop.devtools.example_data import generate_batch

        return lambda rows, seed, index: generate_batch(rows, seed=seed, batch_index=index)
    from ctloop.devtools.example_datasets import DATASETS

    dataset = DATASETS[pipeline]
    return lambda rows, seed, index: dataset.batch(rows, seed=seed, batch_index=index)


# XGBoost and LightGBM on a regression, a multiclass and a binary example.
BYOM = (
    Case("delivery_lightgbm", "delivery"),
    Case("tickets_xgboost", "tickets"),
    Case("churn_xgboost", "churn", "xgboost.XGBClassifier"),
    Case("churn_lightgbm", "churn", "lightgbm.LGBMClassifier"),
)
EXAMPLE = Case("churn_sklearn", "churn")  # the example model, scikit-learn's own


def fresh_store() -> tuple[Any, Any, str]:
    """A new CTLOOP_HOME with its own SQLite MLflow store: its settings, client and the experiment
    the benchmark writes to (set before ctloop reads its settings)."""
    home = Path(tempfile.mkdtemp(prefix="ctloop-bench-"))
    os.environ.update(CTLOOP_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
    os.environ.pop("CTLOOP_MLFLOW_ARTIFACT_ROOT", None)
    from ctloop.registry import mlflow_store as registry
    from ctloop.settings import load_settings

    settings = load_settings()
    client = registry.client(settings)
    return settings, client, registry.ensure_experiment(client, "bench", settings.mlflow_artifact_root)
