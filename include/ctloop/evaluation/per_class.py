"""Per-class metrics of a multiclass model on the holdout: precision, recall, f1 and support of
each class, for the candidate and the champion.

A macro average hides a class: a candidate that gains on the frequent classes and loses a rare
one can have the better average. The evaluation keeps both models' numbers per class
(``Evaluation.per_class``), the training's MLflow run holds them as ``evaluation/per_class.json``,
and the model card shows them side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.evaluation.weighted_metrics import Predictions, class_column

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.contracts import HoldoutScores

ARTIFACT_PATH = "evaluation/per_class.json"  # on the training's MLflow run
ROLES = ("candidate", "champion")  # the prefixes of the holdout predictions' columns
PerClass = dict[str, dict[str, dict[str, float]]]  # role -> class label as text -> metric -> value


def per_class_metrics(y: ArrayLike, predictions: Predictions) -> dict[str, dict[str, float]]:
    """Precision, recall, f1 and support (rows labeled so) of every class among the model's
    classes and the labels, keyed by the class as text, in the classes' order; 0 where a ratio
    divides by zero (a class never predicted has precision 0), as scikit-learn counts it."""
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.asarray(y)
    classes = list(predictions.classes) if predictions.classes is not None else []
    classes += sorted(set(np.unique(labels).tolist()) - set(classes), key=str)  # labels the model lacks
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, np.asarray(predictions.predicted), labels=classes, zero_division=0
    )
    return {
        str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": float(s)}
        for label, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def holdout_per_class(y: ArrayLike, rows: pd.DataFrame) -> PerClass | None:
    """Both models' per-class metrics from the holdout predictions the evaluate step stores
    (``candidate_*``, ``champion_*`` columns); None unless they are a multiclass model's."""
    found: PerClass = {}
    for role in ROLES:
        if f"{role}_prediction" not in rows:
            continue
        predictions = Predictions.from_frame(rows, f"{role}_prediction", f"{role}_score")
        if predictions.classes is None:
            return None
        found[role] = per_class_metrics(y, predictions)
    return found or None


def record_per_class(
    spec: PipelineSpec, settings: Settings, run_id: str, scores: HoldoutScores
) -> PerClass | None:
    """:func:`holdout_per_class` on a holdout the evaluate step scored, logged to the training's
    MLflow run as ``evaluation/per_class.json``; None (nothing logged) unless the model is multiclass."""
    from ctloop.io.readers import from_parquet_bytes
    from ctloop.io.storage import home_storage
    from ctloop.registry import mlflow_store as registry

    if spec.task != "classification":
        return None
    storage = home_storage(settings)
    rows = from_parquet_bytes(storage.read_bytes(scores.predictions_key))
    if not any(str(c).startswith(class_column(f"{ROLES[0]}_score", "")) for c in rows.columns):
        return None
    holdout = from_parquet_bytes(storage.read_bytes(scores.holdout.key))
    found = holdout_per_class(holdout[spec.columns.target].to_numpy(), rows)
    if found is not None:
        registry.client(settings).log_dict(run_id, found, ARTIFACT_PATH)
    return found
