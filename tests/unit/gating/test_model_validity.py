"""Validity (and latency) of a model registered in this worker's MLflow store, loaded through
``models:/<name>/<version>`` as a user would load it."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.gating.latency import measure_latency
from ctloop.gating.model_validity import check_validity
from ctloop.registry import mlflow_store as registry
from ctloop.registry.provenance import model_requirements
from ctloop.settings import load_settings
from ctloop.spec.models import LatencyRule

FEATURES = ["tenure", "charges", "tickets"]


def _fitted():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=FEATURES)
    y = (frame["tenure"] + rng.normal(size=300) > 0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y), frame


def _register(logged: registry.LoggedModel, run_id: str) -> str:
    name = f"valid_{uuid.uuid4().hex[:8]}"
    client = registry.client(load_settings())
    version = registry.register_version(client, name, logged, run_id, f"dag/{name}", {})
    return f"models:/{name}/{version.version}"


@pytest.fixture(scope="module")
def run_id() -> str:
    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"exp_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    return registry.ensure_run(client, experiment, f"dag/{uuid.uuid4().hex[:8]}", {})


@pytest.fixture(scope="module")
def registered(run_id) -> dict:
    model, frame = _fitted()
    logged = registry.log_model(model, frame, run_id)
    return {"uri": _register(logged, run_id), "sha256": logged.sha256, "frame": frame}


def test_a_registered_model_loads_takes_the_features_and_predicts_its_example(registered):
    verdicts, model = check_validity(registered["uri"], FEATURES, load_settings(), registered["sha256"])
    assert [(v.rule, v.metric, v.passed) for v in verdicts] == [
        ("validity", "model_load", True),
        ("validity", "signature", True),
        ("validity", "input_example", True),
    ]
    assert verdicts[2].value == verdicts[2].bound == 5.0  # log_model keeps five example rows
    assert len(model.predict(registered["frame"])) == len(registered["frame"])


def test_features_that_differ_from_the_signature_fail_and_are_named(registered):
    expected = ["tenure", "charges", "region"]
    verdicts, model = check_validity(registered["uri"], expected, load_settings(), registered["sha256"])
    signature = verdicts[1]
    assert signature.passed is False
    assert signature.missing == ["region"]
    assert signature.extra == ["tickets"]
    assert "missing: region; extra: tickets" in signature.note
    assert signature.value == 2.0
    assert model is not None


def test_a_changed_artifact_or_a_missing_version_is_a_failed_verdict_not_an_error(registered):
    verdicts, model = check_validity(registered["uri"], FEATURES, load_settings(), "0" * 64)
    assert model is None
    assert verdicts[0].passed is False
    assert "checksum differs" in verdicts[0].note
    assert [v.passed for v in verdicts[1:]] == [None, None]
    missing = registered["uri"].rsplit("/", 1)[0] + "/99"
    verdicts, model = check_validity(missing, FEATURES, load_settings(), None)
    assert model is None
    assert verdicts[0].passed is False
    assert "\n" not in verdicts[0].note


def test_a_version_without_a_model_digest_fails_its_load_verdict(registered):
    verdicts, model = check_validity(registered["uri"], FEATURES, load_settings(), None)
    assert model is None
    assert verdicts[0].passed is False
    assert "no model digest was recorded" in verdicts[0].note


def test_a_model_logged_without_an_input_example_fails(run_id, tmp_path):
    import mlflow

    model, frame = _fitted()
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            model,
            name="bare",
            signature=mlflow.models.infer_signature(frame, model.predict(frame)),
            pip_requirements=model_requirements(),
            serialization_format="skops",
            skops_trusted_types=registry.trusted_types(model),
        )
    digest = registry.model_digest(
        Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path)))
    )
    uri = _register(
        registry.LoggedModel(model_uri=info.model_uri, model_id=info.model_id, sha256=digest), run_id
    )
    verdicts, _ = check_validity(uri, FEATURES, load_settings(), digest)
    assert [v.passed for v in verdicts] == [True, True, False]
    assert "no input example" in verdicts[2].note


def test_the_validated_model_is_timed_by_the_latency_rule(registered):
    _, model = check_validity(registered["uri"], FEATURES, load_settings(), registered["sha256"])
    rule = LatencyRule(batch_rows=500, repeats=5, single_p95_ms=2000, batch_p95_ms=5000)
    result = measure_latency(model, registered["frame"].head(50), rule)
    assert [v.passed for v in result.verdicts] == [True, True]
    assert result.single_ms.p50 > 0
    assert result.batch_ms.p50 > 0
    strict = measure_latency(model, registered["frame"].head(50), LatencyRule(repeats=5, batch_p50_ms=1e-6))
    assert strict.verdicts[0].passed is False
