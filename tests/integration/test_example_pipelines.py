"""The bring-your-own-model examples end to end through the real DAGs: ``delivery`` (regression,
LightGBM, a feature module) and ``tickets`` (multiclass with text labels, XGBoost, a training
function, a tuning search). Each: a first champion, a second run gated against it, two production
batches scored, their late labels joined, and the monitor judging quality on them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from ctloop.devtools.example_data import write_batches, write_labels
from ctloop.io.storage import home_storage
from ctloop.monitoring.monitor_run import history_prefix
from ctloop.registry import tags
from ctloop.registry.model_trust import policy
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, batch_ids, read_partitions
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import source_sha256
from tests.helpers import REPO
from tests.integration.conftest import champion_version, mlflow_run, run_dag, task_states, versions

pytestmark = [pytest.mark.integration]

ROWS = 600


def _example(name: str, root: Path) -> tuple[PipelineSpec, Path]:
    """The repository's example spec under a new name, reading and scoring under ``root``."""
    spec = yaml.safe_load((REPO / "include" / "pipelines" / f"{name}.yaml").read_text())
    spec["name"] = f"{name}_{uuid.uuid4().hex[:8]}"
    spec["data"]["uri"] = str(root / "training")
    spec["scoring"] = {"incoming_uri": str(root / "incoming"), "labels_uri": str(root / "labels")}
    spec["gates"]["latency"] = {
        "batch_rows": 200,
        "repeats": 5,
        "single_p95_ms": 60_000,
        "batch_p95_ms": 60_000,
    }
    spec["monitoring"] |= {"min_rows": 400, "report_sample_rows": 1000}
    spec["monitoring"]["quality"]["min_labels"] = 300
    path = Path(load_settings().pipelines_dir) / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return PipelineSpec.model_validate(spec), path


@pytest.mark.parametrize(
    ("dataset", "estimator_type", "code_tag"),
    [
        ("delivery", "lightgbm.sklearn.LGBMRegressor", tags.FEATURES_SHA256),
        ("tickets", "xgboost.sklearn.XGBClassifier", tags.TRAIN_FUNCTION_SHA256),
    ],
)
def test_example_pipeline_trains_gates_scores_and_monitors(
    dataset, estimator_type, code_tag, tmp_path, airflow_db
):
    spec, path = _example(dataset, tmp_path)
    try:
        write_batches(tmp_path / "training", range(3), rows=ROWS, dataset=dataset)
        first = run_dag(f"{spec.name}__train", reason="first champion")
        assert first.state == "success", task_states(first)
        assert champion_version(spec.name) == "1"

        second = run_dag(f"{spec.name}__train", reason="weekly retrain")
        assert second.state == "success", task_states(second)
        (v2,) = [v for v in versions(spec.name) if str(v.version) == "2"]
        assert v2.tags[tags.GATE] in ("passed", "rejected")
        run = mlflow_run(spec.name, second)
        decision = json.loads(
            Path(run.info.artifact_uri.removeprefix("file://"), "gate", "decision.json").read_text()
        )
        relative = [r for r in decision["rules"] if r["kind"] == "max_regression"]
        assert relative, decision["rules"]
        assert all(r["value"] is not None for r in relative), decision["rules"]
        bootstrap = [r for r in decision["rules"] if r["rule"] == "bootstrap"]
        assert bootstrap, decision["rules"]
        assert bootstrap[0]["passed"] is not None, bootstrap
        slices = decision["slices"]
        assert any(s.get("candidate") for s in slices), slices

        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        importance = json.loads((artifacts / "explanations" / "importance.json").read_text())
        assert set(importance["candidate"]) == set(spec.columns.features)
        assert set(importance["champion"]) == set(spec.columns.features)
        assert (artifacts / "evaluation" / "per_class.json").exists() == (spec.task == "classification")
        assert "Feature importance" in (artifacts / "model_card.html").read_text()

        # the user's code and the model's own types are on the record
        source = spec.features.factory if spec.features else spec.estimator.train_function
        assert v2.tags[code_tag] == source_sha256(source, "test")
        assert estimator_type in policy(spec).types
        if spec.tuning is not None:  # the tuned candidate's search is on the version it faced the gate as
            tuning = json.loads(v2.tags[tags.TUNING])
            assert set(tuning["tuned_params"]) == set(spec.tuning.space), tuning
            assert run.data.params[f"tuned.{next(iter(spec.tuning.space))}"]

        write_batches(tmp_path / "incoming", range(10, 12), rows=ROWS, dataset=dataset, with_target=False)
        for index in (10, 11):
            write_labels(tmp_path / "labels", index, rows=ROWS, dataset=dataset)
        assert run_dag(f"{spec.name}__score").state == "success"
        settings = load_settings()
        scored = batch_ids(PREDICTIONS, spec.name, settings)
        assert len(scored) == 2
        logged = read_partitions(PREDICTIONS, spec.name, scored, settings)
        assert len(logged) == 2 * ROWS
        assert logged["prediction"].notna().all()
        class_columns = sorted(c for c in logged.columns if c.startswith("score__"))
        if spec.task == "classification":  # every class's probability, for the monitor's log loss
            assert class_columns == ["score__low", "score__normal", "score__urgent"]
            assert set(logged["prediction"]) <= {"low", "normal", "urgent"}
        else:
            assert class_columns == []
        assert run_dag(f"{spec.name}__score").state == "success"  # joins the labels that landed
        labeled = read_partitions(LABELED, spec.name, batch_ids(LABELED, spec.name, settings), settings)
        assert len(labeled) == 2 * ROWS

        monitor = run_dag(f"{spec.name}__monitor")
        assert task_states(monitor)["monitor"] == "success"
        storage = home_storage(settings)
        (entry,) = [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(spec.name))][
            -1:
        ]
        summary = json.loads(storage.read_bytes(entry["summary_uri"].split("/storage/", 1)[1]))
        quality = summary["quality"]
        metric = spec.monitoring.quality.metric
        assert quality["labeled_rows"] == 2 * ROWS, quality
        assert quality["metric"] == metric, quality
        assert isinstance(quality["value"], float), quality
        assert quality["value"] == pytest.approx(quality["metrics"][metric])
        assert entry["action"] == "hold", entry  # the same world as training: nothing to retrain for
    finally:
        path.unlink(missing_ok=True)
