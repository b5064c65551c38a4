"""Models load only as they were logged: every file checked, skops only, never a pickle."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from ctloop.devtools.example_data import generate_batch
from ctloop.errors import ModelIntegrityError
from ctloop.registry import mlflow_store as registry
from ctloop.registry import model_trust, tags
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import features, fit
from tests.helpers import example_spec


class _RunsOnLoad:
    """A pickle payload: unpickling it creates ``marker``, as an attacker's code would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    settings = load_settings()
    client = registry.client(settings)
    spec = PipelineSpec.model_validate(example_spec("t", "data"))
    frame = generate_batch(300, seed=3)
    experiment = registry.ensure_experiment(
        client, f"exp_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, "dag/integrity", {})
    model = registry.log_model(fit(spec, frame), features(frame, spec), run_id)
    original = tmp_path_factory.mktemp("original")
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(model.model_uri, dst_path=str(original)))
    return {"model": model, "run_id": run_id, "frame": features(frame, spec), "dir": local}


def _copy(logged, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(logged["dir"], copy)
    return copy


def _point_mlmodel_at_a_pickle(model_dir: Path, marker: Path) -> None:
    """What the attack did: a pickle next to the model, and MLmodel's loaders pointed at it."""
    (model_dir / "model.pkl").write_bytes(pickle.dumps(_RunsOnLoad(marker)))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(pickled_model="model.pkl", serialization_format="pickle")
    mlmodel["flavors"]["python_function"]["model_path"] = "model.pkl"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def test_the_digest_is_that_of_the_stored_model_but_for_mlflows_download_note(logged, tmp_path):
    copy = _copy(logged, tmp_path)
    assert registry.model_digest(copy) == logged["model"].sha256
    (copy / "registered_model_meta").write_text("model_name: other\n")  # MLflow writes it on download
    assert registry.model_digest(copy) == logged["model"].sha256


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "MLmodel").write_text((d / "MLmodel").read_text() + "\n"),
        lambda d: (d / "input_example.json").unlink(),
        lambda d: (d / "code").mkdir() or (d / "code" / "extra.py").write_text("print('hi')"),
        lambda d: (d / "conda.yaml").rename(d / "conda.yml"),
    ],
    ids=["mlmodel-edited", "file-removed", "file-added", "file-renamed"],
)
def test_the_digest_covers_mlmodel_and_every_file_of_the_model(logged, tmp_path, change):
    copy = _copy(logged, tmp_path)
    change(copy)
    assert registry.model_digest(copy) != logged["model"].sha256


def test_a_logged_model_loads_as_sklearn_and_as_pyfunc_without_pickle(logged, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # ctloop never needs it
    settings = load_settings()
    model = registry.load_model(settings, logged["model"].model_uri, logged["model"].sha256)
    assert model.predict_proba(logged["frame"]).shape == (300, 2)
    pyfunc = registry.load_pyfunc(settings, logged["model"].model_uri, logged["model"].sha256)
    assert list(pyfunc.predict(logged["frame"])) == list(model.predict(logged["frame"]))
    assert len(pyfunc.input_example) == 5
    assert pyfunc.metadata.get_input_schema().input_names() == list(logged["frame"].columns)
    with pytest.raises(Exception, match="Failed to enforce schema"):  # the signature is enforced
        pyfunc.predict(logged["frame"].drop(columns=logged["frame"].columns[0]))


@pytest.mark.parametrize("loader", [registry.load_model, registry.load_pyfunc])
def test_a_copy_whose_mlmodel_points_at_a_pickle_is_refused_and_runs_no_code(
    logged, tmp_path, monkeypatch, loader
):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # even where someone allowed it
    tampered = _copy(logged, tmp_path)
    marker = tmp_path / "code-ran"
    _point_mlmodel_at_a_pickle(tampered, marker)
    with pytest.raises(ModelIntegrityError, match="checksum differs"):
        loader(load_settings(), str(tampered), logged["model"].sha256)
    assert not marker.exists()


def test_the_tampered_copy_would_run_code_through_mlflows_own_loader(logged, tmp_path, monkeypatch):
    """The attack the tests above defend against is live: MLflow follows the edited MLmodel."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    tampered = _copy(logged, tmp_path)
    marker = tmp_path / "code-ran"
    _point_mlmodel_at_a_pickle(tampered, marker)
    with contextlib.suppress(Exception):  # the payload is no estimator: what matters is that it ran
        mlflow.pyfunc.load_model(str(tampered))
    assert marker.exists()


def test_a_digest_of_model_skops_only_loads_through_skops_and_refuses_an_edited_mlmodel(
    logged, tmp_path, caplog
):
    legacy = hashlib.sha256((logged["dir"] / registry.MODEL_FILE).read_bytes()).hexdigest()
    copy = _copy(logged, tmp_path)
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        model = registry.load_model(load_settings(), str(copy), legacy)
    assert model.predict(logged["frame"]).shape == (300,)
    assert "MLmodel and the other files are unchecked" in caplog.text
    marker = tmp_path / "code-ran"
    _point_mlmodel_at_a_pickle(copy, marker)
    for loader in (registry.load_model, registry.load_pyfunc):
        with pytest.raises(ModelIntegrityError, match="does not describe a skops model"):
            loader(load_settings(), str(copy), legacy)
    assert not marker.exists()


def test_a_model_of_untrusted_types_is_refused(logged, tmp_path, monkeypatch):
    copy = _copy(logged, tmp_path)
    monkeypatch.setattr(model_trust, "SCIENTIFIC_PREFIXES", ("numpy.",))  # the tree predictor is sklearn's
    with pytest.raises(ModelIntegrityError, match="types ctloop will not trust: .*TreePredictor"):
        registry.load_model(load_settings(), str(copy), registry.model_digest(copy))


def test_a_version_without_a_digest_is_refused(logged):
    settings = load_settings()
    client = registry.client(settings)
    name = f"model_{uuid.uuid4().hex[:8]}"
    version = registry.register_version(client, name, logged["model"], logged["run_id"], "dag/integrity", {})
    assert registry.load_version(settings, version).predict(logged["frame"]).shape == (300,)
    client.delete_model_version_tag(name, version.version, tags.MODEL_SHA256)
    bare = client.get_model_version(name, version.version)
    with pytest.raises(
        ModelIntegrityError, match=rf"{name} v{version.version}: no model digest was recorded"
    ):
        registry.load_version(settings, bare)
    for loader in (registry.load_model, registry.load_pyfunc):
        with pytest.raises(ModelIntegrityError, match="no model digest was recorded"):
            loader(settings, logged["model"].model_uri, None)
