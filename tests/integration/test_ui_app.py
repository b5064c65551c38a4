"""The UI plugin inside Airflow's real API server app: registered once, mounted at /ctloop, every
route authenticated, ids never paths, reports sandboxed, rollback guarded.

The app is Airflow's own ``create_app()`` with the repository's plugins folder (set by the test
conftest), driven in-process with FastAPI's TestClient; tokens come from the simple auth
manager, as ``/auth/token`` would issue them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fastapi.testclient import TestClient

from ctloop.io.storage import home_storage
from ctloop.monitoring.monitor_run import history_prefix
from ctloop.settings import load_settings
from ctloop.training.steps import RunContext
from ctloop.ui.auth import csrf_token
from ctloop.ui.reports import REPORT_CSP
from tests.helpers import example_spec

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui_app")]

RUN_ID = "manual__2026-01-02T03:04:05+00:00"
PAYLOAD = "</script><img src=x onerror=\"window.top.__xss=1;document.title='pwned'\">"
REPORT = f"<html><body><script>var data = {{'region': '{PAYLOAD}'}};</script></body></html>"


@dataclass
class Served:
    client: TestClient
    pipeline: str
    admin: str
    viewer: str

    def get(self, path: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/ctloop{path}", headers=headers, follow_redirects=False, **kwargs)

    def post_rollback(self, form: dict, *, cookie: str | None = None, token: str | None = None, **headers):
        return self.post("rollback", form, cookie=cookie, token=token, **headers)

    def post(
        self, action: str, form: dict, *, cookie: str | None = None, token: str | None = None, **headers
    ):
        """Submit the ``action`` form (``rollback``, ``retrain``) with a session cookie or a token."""
        self.client.cookies.clear()
        if cookie:
            self.client.cookies.set("_token", cookie)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(
            f"/ctloop/pipelines/{self.pipeline}/{action}", data=form, headers=headers, follow_redirects=False
        )

    def csrf(self, cookie: str) -> str:
        """The token the confirmation page puts in its form, for the session ``cookie``."""
        self.client.cookies.clear()
        self.client.cookies.set("_token", cookie)
        page = self.client.get(f"/ctloop/pipelines/{self.pipeline}/rollback")
        self.client.cookies.clear()
        assert page.status_code == 200, page.text
        return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _write_monitor_run(pipeline: str) -> None:
    """What a monitor run leaves in storage: report, summary and its history entry."""
    storage = home_storage(load_settings())
    prefix = RunContext(dag_id=f"{pipeline}__monitor", run_id=RUN_ID, reason="").storage_prefix
    report_uri = storage.write_bytes(f"{prefix}/report.html", REPORT.encode())
    summary = {
        "pipeline": pipeline,
        "run_key": f"{pipeline}__monitor/{RUN_ID}",
        "at": "2026-01-02T03:05:00+00:00",
        "champion_version": "1",
        "window": {"batches": ["batch-0001"], "rows": 600},
        "drift": {"share": 0.4, "drifted_columns": [{"column": "tenure_months"}]},
        "quality": {"metric": "roc_auc", "value": 0.8, "champion_value": 0.82, "labeled_rows": 0},
        "decision": {"action": "retrain", "alert": True, "why": "confirmed alert: retraining"},
        "report_uri": report_uri,
        "evidently": {
            "sample": {
                "seed": 0,
                "sample_rows": 200,
                "reference": {"rows": 1500, "sampled": 200},
                "current": {"rows": 600, "sampled": 200},
            },
            "drift": {
                "drifted_columns": {"count": 1, "share": 0.2, "threshold": 0.3, "dataset_drift": False},
                "skipped": {},
            },
        },
    }
    summary_uri = storage.write_bytes(f"{prefix}/summary.json", json.dumps(summary).encode())
    entry = {**summary, "drift_share": 0.4, "quality": 0.8, "alert": True, "action": "retrain"}
    entry |= {"why": "confirmed alert: retraining", "summary_uri": summary_uri}
    storage.write_bytes(f"{history_prefix(pipeline)}/20260102T030500_x.json", json.dumps(entry).encode())


@pytest.fixture(scope="module")
def served(airflow_db: Path) -> Iterator[Served]:
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    pipeline = f"p{uuid.uuid4().hex[:10]}"
    spec_path = load_settings().pipelines_dir / f"{pipeline}.yaml"
    spec_path.write_text(yaml.safe_dump(example_spec(pipeline, "data")))
    _write_monitor_run(pipeline)
    app = create_app()
    auth = get_auth_manager()
    admin = auth.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    viewer = auth.generate_jwt(SimpleAuthManagerUser(username="vera", role="viewer"))
    with TestClient(app) as client:
        yield Served(client, pipeline, admin, viewer)
    spec_path.unlink()
    purge_cached_app()


def _routes(pipeline: str) -> list[tuple[str, str]]:
    base = f"/ctloop/pipelines/{pipeline}"
    return [
        ("GET", "/ctloop/"),
        ("GET", base),
        ("GET", f"{base}/reports/{RUN_ID}"),
        ("GET", f"{base}/reports/{RUN_ID}/raw"),
        ("GET", f"{base}/ledger"),
        ("GET", f"{base}/versions/1"),
        ("GET", f"{base}/versions/1/model-card"),
        ("GET", f"{base}/rollback?target=previous"),
        ("POST", f"{base}/rollback"),
        ("POST", f"{base}/retrain"),
        ("GET", "/ctloop/pipelines/no_such_pipeline"),
    ]


def test_the_plugin_is_registered_once_and_mounted_at_ctloop(served: Served) -> None:
    from airflow import plugins_manager

    names = [info["name"] for info in plugins_manager.get_plugin_info()]
    assert names.count("ctloop_ui") == 1
    apps = [a for a in plugins_manager.get_fastapi_plugins()[0] if a["name"] == "ctloop"]
    assert [a["url_prefix"] for a in apps] == ["/ctloop"]
    links = {link.name for link in plugins_manager.get_global_operator_extra_links()}
    assert {"Drift report", "ctloop pipeline"} <= links
    answer = served.client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {served.admin}"})
    plugins = answer.json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "ctloop_ui"]
    assert ours["external_views"][0]["href"] == "/ctloop/"


def test_every_route_refuses_a_request_without_a_valid_token(served: Served) -> None:
    refused = {}
    for method, path in _routes(served.pipeline):
        served.client.cookies.clear()
        anonymous = served.client.request(method, path, follow_redirects=False)
        forged = served.client.request(method, path, headers={"Authorization": "Bearer not.a.jwt"})
        refused[(method, path)] = (anonymous.status_code, forged.status_code)
    assert all(a == 401 and f == 403 for a, f in refused.values()), refused
    served.client.cookies.clear()
    page = served.client.get(f"/ctloop/pipelines/{served.pipeline}")
    assert f"/auth/login?next=http%3A%2F%2Ftestserver%2Fctloop%2Fpipelines%2F{served.pipeline}" in page.text


def test_the_report_is_served_sandboxed_and_never_inline(served: Served) -> None:
    raw = served.get(f"/pipelines/{served.pipeline}/reports/{RUN_ID}/raw", served.admin)
    assert raw.status_code == 200
    assert raw.text == REPORT
    csp = raw.headers["content-security-policy"]
    assert csp == REPORT_CSP
    assert csp.startswith("sandbox allow-scripts;")
    assert "allow-same-origin" not in csp
    assert raw.headers["x-content-type-options"] == "nosniff"

    page = served.get(f"/pipelines/{served.pipeline}/reports/{RUN_ID}", served.admin)
    assert page.status_code == 200, page.text
    assert '<iframe class="report" sandbox="allow-scripts" ' in page.text
    assert "allow-same-origin" not in page.text
    assert PAYLOAD not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # the page itself runs no script
    assert "tenure_months" in page.text
    assert "confirmed alert: retraining" in page.text


def test_the_report_page_leads_with_the_decision_and_says_why_the_sample_differs(served: Served) -> None:
    page = served.get(f"/pipelines/{served.pipeline}/reports/{RUN_ID}", served.admin)

    assert page.status_code == 200, page.text
    text = page.text
    decision, evidence = text.index('id="decision"'), text.index("Evidence: the Evidently report")
    assert text.index("<h1>") < decision < evidence < text.index('<iframe class="report"')
    headline = text[decision:evidence]
    assert '<span class="badge bad">alert · retrain</span>' in headline
    assert "confirmed alert: retraining" in headline
    assert "0.400 of the features" in headline
    note = text.split('id="report-note">', 1)[1].split("</p>", 1)[0]
    assert note == (
        "Evidently&#39;s share 0.200 comes from a seeded sample of 200 of 1,500 reference and 200 of 600"
        " current rows (monitoring.report_sample_rows 200); the decision&#39;s 0.400 from every row."
    )


@pytest.mark.parametrize(
    "run_id",
    [
        "%2E%2E",
        "..%2F..%2Fsummary.json",
        "%2E%2E%2F%2E%2E",
        ".hidden",
        "a%2F..%2F..%2Fb",
        "..%5C..%5Cx",
        "x%00y",
    ],
)
def test_a_run_id_that_is_not_a_run_id_is_refused(served: Served, run_id: str) -> None:
    for suffix in ("", "/raw"):
        answer = served.get(f"/pipelines/{served.pipeline}/reports/{run_id}{suffix}", served.admin)
        assert answer.status_code in (400, 404), (run_id, suffix, answer.status_code)
        assert PAYLOAD not in answer.text


@pytest.mark.parametrize("pipeline", ["%2E%2E", "..%2F..", "P-1", "%2E%2E%2Fstorage"])
def test_a_pipeline_that_is_not_a_pipeline_is_refused(served: Served, pipeline: str) -> None:
    answer = served.get(f"/pipelines/{pipeline}/reports/{RUN_ID}/raw", served.admin)
    assert answer.status_code in (400, 404), (pipeline, answer.status_code)


def test_a_monitor_run_without_a_report_is_not_found(served: Served) -> None:
    answer = served.get(
        f"/pipelines/{served.pipeline}/reports/scheduled__2026-01-01T00:00:00+00:00", served.admin
    )
    assert answer.status_code == 404
    assert "wrote no report" in answer.text


def test_rollback_needs_permission_to_trigger_the_rollback_dag(served: Served) -> None:
    # a valid form token for the viewer's session: only the permission may refuse
    session = SimpleNamespace(cookies={"_token": served.viewer})
    form = {
        "target": "previous",
        "reason": "bad model",
        "csrf": csrf_token(session, f"rollback:{served.pipeline}"),
    }
    refused = served.post_rollback(form, cookie=served.viewer, Origin="http://testserver")
    assert refused.status_code == 403
    assert "may not trigger" in refused.text
    ledger = served.get(f"/pipelines/{served.pipeline}/ledger", served.viewer)
    assert ledger.status_code == 200
    assert "Roll back to the previous champion" not in ledger.text
    confirm = served.get(f"/pipelines/{served.pipeline}/rollback", served.viewer)
    assert "You may not trigger" in confirm.text
    assert '<form method="post"' not in confirm.text


def test_rollback_from_a_browser_session_needs_this_origin_and_the_form_token(served: Served) -> None:
    csrf = served.csrf(served.admin)
    form = {"target": "previous", "reason": "bad model", "csrf": csrf}
    no_origin = served.post_rollback(form, cookie=served.admin)
    foreign = served.post_rollback(form, cookie=served.admin, Origin="https://evil.example")
    null_origin = served.post_rollback(form, cookie=served.admin, Origin="null")
    bad_token = served.post_rollback(
        {**form, "csrf": "0" * 64}, cookie=served.admin, Origin="http://testserver"
    )
    no_token = served.post_rollback({**form, "csrf": ""}, cookie=served.admin, Referer="http://testserver/x")
    assert [r.status_code for r in (no_origin, foreign, null_origin, bad_token, no_token)] == [403] * 5
    # the same form from this origin passes every guard and reaches Airflow, which does not know
    # the DAG here (no dag-processor): so the guards above were what refused
    passed = served.post_rollback(form, cookie=served.admin, Origin="http://testserver")
    assert passed.status_code == 404
    assert f"{served.pipeline}__rollback" in passed.text


def test_an_api_client_with_a_bearer_token_needs_no_form_token(served: Served) -> None:
    answer = served.post_rollback({"target": "previous", "reason": "bad model"}, token=served.admin)
    assert answer.status_code == 404
    assert f"{served.pipeline}__rollback" in answer.text


@pytest.mark.parametrize(
    ("target", "reason"), [("previous", ""), ("previous", "   "), ("../1", "why"), ("v1", "why")]
)
def test_rollback_needs_a_reason_and_a_real_target(served: Served, target: str, reason: str) -> None:
    answer = served.post_rollback({"target": target, "reason": reason}, token=served.admin)
    assert answer.status_code == 400, answer.text


def test_the_overview_and_history_show_the_pipeline(served: Served) -> None:
    overview = served.get("/", served.admin)
    assert overview.status_code == 200
    assert served.pipeline in overview.text
    assert "no champion yet" in overview.text
    assert "never ran" in overview.text
    assert "circuit breaker closed" in overview.text
    history = served.get(f"/pipelines/{served.pipeline}", served.admin)
    assert history.status_code == 200
    assert '<svg class="history"' in history.text
    assert 'class="marker retrain ' in history.text
    assert (
        f"/ctloop/pipelines/{served.pipeline}/reports/manual__2026-01-02T03%3A04%3A05%2B00%3A00"
        in history.text
    )


def test_retrain_needs_permission_to_trigger_the_training_dag(served: Served) -> None:
    session = SimpleNamespace(cookies={"_token": served.viewer})
    form = {"reason": "labels show a drop", "csrf": csrf_token(session, f"retrain:{served.pipeline}")}
    refused = served.post("retrain", form, cookie=served.viewer, Origin="http://testserver")
    assert refused.status_code == 403
    assert f"may not trigger runs of {served.pipeline}__train" in refused.text
    page = served.get(f"/pipelines/{served.pipeline}", served.viewer)
    actions = page.text.split('id="actions"', 1)[1].split("</section>", 1)[0]
    assert f"You may not trigger {served.pipeline}__train" in actions
    assert 'name="csrf"' not in actions


def test_retrain_from_a_browser_session_needs_this_origin_and_its_own_form_token(served: Served) -> None:
    served.client.cookies.clear()
    served.client.cookies.set("_token", served.admin)
    page = served.client.get(f"/ctloop/pipelines/{served.pipeline}")
    served.client.cookies.clear()
    token = page.text.split('id="retrain"', 1)[1].split('name="csrf" value="', 1)[1].split('"', 1)[0]
    rollback_token = csrf_token(
        SimpleNamespace(cookies={"_token": served.admin}), f"rollback:{served.pipeline}"
    )
    form = {"reason": "labels show a drop", "csrf": token}
    foreign = served.post("retrain", form, cookie=served.admin, Origin="https://evil.example")
    other_action = served.post(
        "retrain", {**form, "csrf": rollback_token}, cookie=served.admin, Origin="http://testserver"
    )
    assert [foreign.status_code, other_action.status_code] == [403, 403]
    # past every guard, Airflow's own trigger handler answers: it does not know the DAG here
    passed = served.post("retrain", form, cookie=served.admin, Origin="http://testserver")
    assert passed.status_code == 404
    assert f"{served.pipeline}__train" in passed.text


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "  \n "}, "reason"),
        ({"reason": "x", "note": "n" * 2001}, "note"),
    ],
)
def test_retrain_needs_a_reason_and_a_short_note(served: Served, form: dict, field: str) -> None:
    answer = served.post("retrain", form, token=served.admin)
    assert answer.status_code == 400, answer.text
    assert answer.text.count(f"{field}: ") == 1


def test_the_pipeline_page_offers_both_actions_to_who_may_take_them(served: Served) -> None:
    page = served.get(f"/pipelines/{served.pipeline}?started=train:no_such_run", served.admin)
    assert page.status_code == 200, page.text
    assert 'id="started"' not in page.text  # a run Airflow does not know is not announced
    assert f'action="/ctloop/pipelines/{served.pipeline}/retrain"' in page.text
    # no champion yet, so nothing to roll back; the DAGs are unknown to this Airflow (not parsed)
    assert "No champion yet: nothing to roll back." in page.text
    assert f"Airflow does not know {served.pipeline}__train" in page.text
