"""The evaluate step's explanations: logged on the run, a large shift tagged and warned about."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from ctloop.evaluation.importance import ARTIFACT_PATH
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.settings import load_settings
from ctloop.training.estimator import fit
from ctloop.training.steps import _explain
from tests.unit.evaluation.generated import frame, spec


def _run():
    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"explain_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    return client, registry.ensure_run(client, experiment, "dag/explain", {})


def test_a_large_shift_is_logged_tagged_and_warned_about(caplog):
    client, run_id = _run()
    binary, rows = spec("binary"), frame("binary")
    candidate = fit(binary, rows.iloc[:800])
    champion = fit(spec("binary", numeric=("other", "noise")), rows.iloc[:800])
    with caplog.at_level(logging.WARNING, logger="ctloop.training.steps"):
        found = _explain(binary, client, run_id, rows.iloc[800:], candidate, champion)
    assert found is not None
    assert found.large_shifts
    logged = json.loads(Path(client.download_artifacts(run_id, ARTIFACT_PATH)).read_text())
    assert logged == found.model_dump(mode="json")
    assert client.get_run(run_id).data.tags[tags.IMPORTANCE_SHIFT] == found.summary
    (warning,) = caplog.records
    assert warning.getMessage().startswith("Feature importance shifted against the champion (")
    assert warning.getMessage().endswith(f"): {found.summary}")


def test_no_shift_no_tag_and_disabled_logs_nothing():
    client, run_id = _run()
    regression, rows = spec("regression"), frame("regression")
    model = fit(regression, rows.iloc[:800])
    found = _explain(regression, client, run_id, rows.iloc[800:], model, model)
    assert found is not None
    assert found.large_shifts == []
    assert tags.IMPORTANCE_SHIFT not in client.get_run(run_id).data.tags
    assert [a.path for a in client.list_artifacts(run_id, "explanations")] == [ARTIFACT_PATH]

    client, run_id = _run()
    off = spec("regression", enabled=False)
    assert _explain(off, client, run_id, rows.iloc[800:], model, model) is None
    assert client.list_artifacts(run_id) == []
