"""Names and directions of the metrics ctloop computes, without importing scikit-learn.

Gates and specs only need to know which metrics exist and whether higher is better, so this
module stays light enough for DAG-parse-time validation.
"""

from __future__ import annotations

from typing import Literal

TaskKind = Literal["classification", "regression"]

HIGHER_IS_BETTER: dict[TaskKind, dict[str, bool]] = {
    "classification": {
        "roc_auc": True,
        "accuracy": True,
        "f1": True,
        "precision": True,
        "recall": True,
        "log_loss": False,
        "brier": False,  # scikit-learn's brier_score_loss: in [0, 1] binary, [0, 2] multiclass
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}


def metric_names(task: TaskKind) -> list[str]:
    """The metrics a training of this kind produces, in a stable order."""
    return list(HIGHER_IS_BETTER[task])


def higher_is_better(task: TaskKind, metric: str) -> bool:
    """Whether a larger value of ``metric`` is an improvement."""
    return HIGHER_IS_BETTER[task][metric]
