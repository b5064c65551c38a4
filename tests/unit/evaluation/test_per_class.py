"""Per-class precision, recall, f1 and support of a multiclass candidate and champion on the
holdout: against scikit-learn, from the holdout predictions the evaluate step stores, and logged
to the training's MLflow run."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.evaluation.per_class import ARTIFACT_PATH, holdout_per_class, per_class_metrics, record_per_class
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.contracts import Evaluation, HoldoutRef, HoldoutScores
from ctloop.training.estimator import fit
from ctloop.training.steps import _score_both
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import (
    multiclass_batch,
    multiclass_spec,
    regression_batch,
    regression_spec,
)


@pytest.fixture(scope="module")
def scored():
    """A multiclass candidate and a weaker champion scored on one holdout as the evaluate step does."""
    spec = multiclass_spec("per_class")
    training = multiclass_batch(1000, seed=1)
    candidate, champion = fit(spec, training), fit(spec, training.head(200))
    holdout = multiclass_batch(500, seed=2)
    return spec, holdout, _score_both(spec, candidate, champion, holdout)[2]


def test_each_class_agrees_with_sklearn_and_a_class_never_predicted_counts_zero():
    y = np.array(["low", "mid", "high", "low", "mid", "low"], dtype=object)
    predicted = np.array(["low", "low", "high", "low", "mid", "high"], dtype=object)
    classes = np.array(["high", "low", "mid", "urgent"], dtype=object)
    probabilities = np.full((6, 4), 0.25)

    found = per_class_metrics(y, Predictions(predicted, probabilities.max(axis=1), probabilities, classes))

    assert list(found) == ["high", "low", "mid", "urgent"]
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=list(classes), zero_division=0
    )
    for i, label in enumerate(classes):
        assert found[label] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]}
        )
    assert found["urgent"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    assert found["low"]["support"] == 3.0


def test_both_models_per_class_from_the_stored_holdout_predictions(scored):
    spec, holdout, rows = scored
    found = holdout_per_class(holdout[TARGET].to_numpy(), rows)

    assert set(found) == {"candidate", "champion"}
    for role in ("candidate", "champion"):
        assert list(found[role]) == ["high", "low", "mid"]
        assert sum(c["support"] for c in found[role].values()) == len(holdout)
        expected = precision_recall_fscore_support(
            holdout[TARGET], rows[f"{role}_prediction"], labels=["high", "low", "mid"], zero_division=0
        )[2]
        assert [c["f1"] for c in found[role].values()] == pytest.approx(expected)
    assert found["candidate"] != found["champion"]
    assert holdout_per_class(holdout[TARGET].to_numpy(), rows.filter(like="candidate_"))["candidate"]


def test_binary_and_regression_holdouts_have_no_per_class_metrics():
    binary = PipelineSpec.model_validate(example_spec("per_class_binary", "data"))
    frame, holdout = generate_batch(800, seed=1), generate_batch(300, seed=2)
    rows = _score_both(binary, fit(binary, frame), None, holdout)[2]
    assert holdout_per_class(holdout[TARGET].to_numpy(), rows) is None
    regression = regression_spec("per_class_regression")
    frame, holdout = regression_batch(800, seed=1), regression_batch(300, seed=2)
    rows = _score_both(regression, fit(regression, frame), None, holdout)[2]
    assert holdout_per_class(holdout[TARGET].to_numpy(), rows) is None


def test_recorded_on_the_run_as_json(scored):
    spec, holdout, rows = scored
    settings = load_settings()
    storage = home_storage(settings)
    prefix = f"runs/per_class_{uuid.uuid4().hex[:8]}"
    storage.write_bytes(f"{prefix}/holdout.parquet", to_parquet_bytes(holdout))
    storage.write_bytes(f"{prefix}/predictions.parquet", to_parquet_bytes(rows))
    scores = HoldoutScores(
        holdout=HoldoutRef(key=f"{prefix}/holdout.parquet", digest="d", rows=len(holdout)),
        candidate={},
        champion=None,
        predictions_key=f"{prefix}/predictions.parquet",
    )
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"per_class_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, "per_class/r1", {})

    found = record_per_class(spec, settings, run_id, scores)

    assert found == holdout_per_class(holdout[TARGET].to_numpy(), rows)
    import mlflow

    with mlflow.start_run(run_id=run_id):
        logged = mlflow.artifacts.load_dict(f"{mlflow.get_artifact_uri()}/{ARTIFACT_PATH}")
    assert logged == found
    assert record_per_class(regression_spec("per_class_none"), settings, run_id, scores) is None


def test_the_stored_holdout_predictions_keep_every_class_probability(scored):
    spec, holdout, rows = scored
    assert list(rows.columns[:2]) == ["candidate_prediction", "candidate_score"]
    for role in ("candidate", "champion"):
        read = Predictions.from_frame(rows, f"{role}_prediction", f"{role}_score")
        assert read.classes.tolist() == ["high", "low", "mid"]
        assert read.probabilities.sum(axis=1) == pytest.approx(np.ones(len(holdout)))
        assert read.score == pytest.approx(read.probabilities.max(axis=1))
        assert (read.classes[read.probabilities.argmax(axis=1)] == read.predicted).all()


def test_the_evaluation_carries_per_class_metrics_through_json(scored):
    spec, holdout, rows = scored
    found = holdout_per_class(holdout[TARGET].to_numpy(), rows)
    evaluation = Evaluation(
        mlflow_run_id="run",
        candidate={"roc_auc": 0.8},
        champion=None,
        champion_version=None,
        holdout_digest="d",
        holdout_key="h",
        predictions_key="p",
        recent=None,
        recent_note="none",
        trigger="manual",
        per_class=found,
    )
    assert Evaluation.model_validate_json(evaluation.model_dump_json()).per_class == found
    assert Evaluation.model_validate(evaluation.model_dump(exclude={"per_class"})).per_class is None
