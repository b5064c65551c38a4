"""The ``data.max_rows`` sample is recorded where a reviewer looks: the run, the version and the card."""

from __future__ import annotations

import uuid
from pathlib import Path

from ctloop.devtools.example_data import write_batches
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.registry.mlflow_store import LoggedModel
from ctloop.registry.model_card import ARTIFACT_PATH
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training import steps
from ctloop.training.contracts import HoldoutRef, Trained, TrainResults
from ctloop.training.record import record_version
from tests.helpers import example_spec


def test_the_sample_is_tagged_on_the_run_and_the_version_and_shown_on_the_card(tmp_path: Path) -> None:
    name = f"ds{uuid.uuid4().hex[:10]}"
    write_batches(tmp_path / "data", range(2), rows=300)
    raw = example_spec(name, str(tmp_path / "data"))
    raw["data"] |= {"max_rows": 240, "sample_seed": 4}
    spec = PipelineSpec.model_validate(raw)
    settings = load_settings()
    ctx = steps.RunContext(dag_id=f"{name}__train", run_id="manual__sample", reason="sample")

    started = steps.start(spec, settings, ctx)
    trained = Trained(  # what ``train`` returns, without training: the version is what is looked at
        mlflow_run_id=started.mlflow_run_id,
        model=LoggedModel(model_uri=f"runs:/{started.mlflow_run_id}/model", model_id="", sha256="0" * 64),
        holdout=HoldoutRef(key="holdouts/h.parquet", digest="d" * 64, rows=48),
        recent_holdout=started.recent_holdout,
        train_rows=192,
        data_window="all",
        window_selection=None,
    )
    validated = {"suite": "s", "suite_path": "s.json", "rows": 240, "schema_failures": []}
    validated |= {"expectation_failures": [], "statistics": {}, "success": True, "suite_key": "k"}
    validated |= {"result_uri": "r.json", "html_uri": "r.html"}
    version = steps.register(spec, settings, ctx, started, trained, validated)
    results = TrainResults.model_validate(
        {"snapshot": started, "validate": validated, "train": trained, "register": version}
    )
    client = registry.client(settings)
    record_version(spec, settings, client, version, results)

    sample = started.snapshot.sample
    assert sample is not None
    assert (sample.rows_before, sample.rows_after, sample.seed) == (600, 240, 4)
    assert started.snapshot.rows == 240
    note = sample.note()
    assert note.startswith("seeded sample of 240 of 600 rows (data.max_rows 240, data.sample_seed 4)")
    assert "stratified by churned" in note
    assert client.get_run(started.mlflow_run_id).data.tags[tags.DATA_SAMPLE] == note
    assert client.get_model_version(name, version).tags[tags.DATA_SAMPLE] == note
    card = Path(client.download_artifacts(started.mlflow_run_id, ARTIFACT_PATH)).read_text()
    assert f"<dt>Sample</dt><dd>{note}</dd>" in card


def test_without_max_rows_nothing_is_said_about_a_sample(tmp_path: Path) -> None:
    name = f"ds{uuid.uuid4().hex[:10]}"
    write_batches(tmp_path / "data", range(1), rows=120)
    spec = PipelineSpec.model_validate(example_spec(name, str(tmp_path / "data")))
    settings = load_settings()

    started = steps.start(spec, settings, steps.RunContext(dag_id=f"{name}__train", run_id="m", reason="r"))

    assert started.snapshot.sample is None
    assert tags.DATA_SAMPLE not in registry.client(settings).get_run(started.mlflow_run_id).data.tags
