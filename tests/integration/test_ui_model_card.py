"""A version's model card inside the plugin, in Airflow's real API server app, on real MLflow
versions: the page has the plugin's layout and its way back, frames the card sandboxed, names
storage relative to ctloop's storage (never the server's paths), and diffs the version against
the champion the ledger records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from ctloop.evaluation.importance import ARTIFACT_PATH as IMPORTANCE
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.contracts import TrainResults
from ctloop.training.record import record_version
from ctloop.ui.render import PAGE_CSP
from ctloop.ui.reports import CARD_CSP
from tests.helpers import example_spec, started_payload

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui_model_card")]


@dataclass
class Served:
    client: TestClient
    pipeline: str
    token: str
    home: str

    def get(self, path: str):
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.client.get(
            f"/ctloop/pipelines/{self.pipeline}{path}", headers=headers, follow_redirects=False
        )


def _version(spec: PipelineSpec, n: int, auc: float, c: str, leaves: int) -> str:
    """A registered version whose run records what a training records, and its card."""
    settings = load_settings()
    client = registry.client(settings)
    root = Path(settings.storage_root)
    sha = f"{n}" * 64
    snapshot_key = f"snapshots/{spec.name}/{sha}.parquet"
    experiment = registry.ensure_experiment(client, spec.name, settings.mlflow_artifact_root)
    run_tags = {tags.REASON: f"training {n}", tags.TRIGGER: "manual", tags.DATA_SHA256: sha}
    run_tags |= {
        tags.DATA_URI: str(root / snapshot_key),
        tags.DATA_WINDOW: "all",
        tags.FEATURES_SHA256: "e" * 64,
    }
    run_tags[tags.TUNING] = (
        f'{{"tuned_params": {{"num_leaves": {leaves}}}, "metric": "roc_auc", "best_value": 0.8}}'
    )
    run_tags[tags.TRIGGER_REPORTS] = str(root / "monitor" / spec.name / f"run{n}" / "report.html")
    run_id = registry.ensure_run(client, experiment, f"{spec.name}/r{n}", run_tags)
    for key, value in {tags.ESTIMATOR: "sklearn.linear_model.LogisticRegression", "estimator.C": c}.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "holdout_roc_auc", auc)
    importance = {
        "metric": "log_loss",
        "shift_threshold": 0.15,
        "candidate": {"tenure_months": {"mean": 0.1}},
    }
    client.log_dict(run_id, importance, IMPORTANCE)
    version = str(client.create_model_version(spec.name, source="/nowhere", run_id=run_id).version)
    started = started_payload(run_id, root, snapshot_key, sha)
    record_version(spec, settings, client, version, TrainResults.model_validate({"snapshot": started}))
    return version


@pytest.fixture(scope="module")
def served(airflow_db: Path) -> Iterator[Served]:
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    settings = load_settings()
    pipeline = f"c{uuid.uuid4().hex[:10]}"
    raw = example_spec(pipeline, "data")
    spec_path = settings.pipelines_dir / f"{pipeline}.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = PipelineSpec.model_validate(raw)
    client = registry.client(settings)
    client.create_registered_model(pipeline)
    assert _version(spec, 1, 0.81, "1.0", 31) == "1"
    assert _version(spec, 2, 0.85, "0.5", 63) == "2"
    moved = ledger.move_alias(
        settings, client, pipeline, "1", expected_from=None, action="promotion", reason="t"
    )
    assert moved.moved
    app = create_app()
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(app) as test_client:
        yield Served(test_client, pipeline, token, str(settings.home))
    spec_path.unlink()
    purge_cached_app()


def test_the_card_page_has_the_plugins_layout_and_the_way_back(served: Served) -> None:
    answer = served.get("/versions/2")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-security-policy"] == PAGE_CSP
    html = answer.text
    assert '<header><a class="brand" href="/ctloop/">ctloop</a>' in html
    assert f"<h1>Model card · {served.pipeline} v2</h1>" in html
    assert f'href="/ctloop/pipelines/{served.pipeline}/ledger">Back to the promotion ledger</a>' in html
    assert f'href="/ctloop/pipelines/{served.pipeline}">Pipeline</a>' in html
    frame = '<iframe class="report" sandbox referrerpolicy="no-referrer" src="/ctloop/pipelines/'
    assert f'{frame}{served.pipeline}/versions/2/model-card"' in html
    assert "<script" not in html


def test_the_card_page_diffs_the_version_against_the_champion(served: Served) -> None:
    html = served.get("/versions/2").text
    assert f'against the champion <a href="/ctloop/pipelines/{served.pipeline}/versions/1">v1</a>' in html
    assert "<tr><td>holdout_roc_auc</td><td><code>0.8500</code></td><td><code>0.8100</code></td>" in html
    assert "<strong>+0.0400</strong>" in html
    assert "<tr><td>estimator.C</td><td><code>0.5</code></td><td><code>1.0</code></td>" in html
    assert "<tr><td>tuned num_leaves</td><td><code>63</code></td><td><code>31</code></td>" in html
    assert f"storage://snapshots/{served.pipeline}/{'2' * 64}.parquet" in html
    assert "<tr><td>tenure_months</td><td><code>0.1000 (100%)</code></td>" in html  # read from the runs


def test_the_champions_page_says_it_is_the_champion(served: Served) -> None:
    html = served.get("/versions/1").text
    assert "v1 is the champion: nothing to compare with." in html
    assert "<h3>" not in html


def test_neither_page_nor_card_shows_a_server_path(served: Served) -> None:
    card = served.get("/versions/2/model-card")
    assert card.status_code == 200
    assert card.headers["content-security-policy"] == CARD_CSP
    assert f"storage://snapshots/{served.pipeline}/{'2' * 64}.parquet" in card.text
    assert f"storage://monitor/{served.pipeline}/run2/report.html" in card.text
    for answer in (card, served.get("/versions/2"), served.get("/versions/1")):
        assert served.home not in answer.text


def test_a_version_that_does_not_exist_is_not_found(served: Served) -> None:
    assert served.get("/versions/99").status_code == 404
    assert served.get("/versions/x1").status_code == 400
