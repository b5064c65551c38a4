"""The Airflow UI and ctloop's plugin in a real browser, against a running deployment.

One pipeline on small data goes through the loop on a LocalDeployment (api-server, scheduler,
dag-processor): a person logs in through Airflow's login page and starts the first training
from the ``__train`` trigger form with a reason; a stable batch and a shifted one are scored (the
shifted one carrying a script-injection payload in a categorical column), the monitor asks for a
retrain and the scheduler runs it; the person then reads the overview, the history chart and
the drift reports in the plugin, and rolls the champion back from the ledger page. The state is
built once per module by fixtures that depend on each other, so each test can ask for the step
it checks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pytest
import yaml

from ctloop.devtools.example_data import COVARIATE_SHIFT, write_batches, write_labels
from ctloop.devtools.local_deployment import LocalDeployment
from ctloop.registry import ledger
from ctloop.settings import load_settings
from tests.e2e.chart_checks import MEASURE, label_problems
from tests.helpers import REPO, example_spec

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui_browser")]

REASON = "new pricing launched (e2e)"
ROLLBACK_REASON = "v2 over-predicts churn for two_year contracts (e2e)"
PAYLOAD = "</script><img src=x onerror=\"window.top.__xss=1;document.title='pwned'\">"
ROWS = 600
STABLE, SHIFTED = 10, 11


@dataclass
class World:
    """The running deployment, its one pipeline, and a logged-in browser context."""

    stack: LocalDeployment
    pipeline: str
    home: Path
    session: object  # playwright BrowserContext, logged in as admin
    paused_at_creation: dict[str, bool]  # of the DAGs a person's action starts, as Airflow created them

    @property
    def url(self) -> str:
        return self.stack.base_url

    def dag(self, kind: str) -> str:
        return f"{self.pipeline}__{kind}"

    def page(self):
        return self.session.new_page()

    def runs(self, kind: str) -> list[dict]:
        return self.stack.runs(self.dag(kind))

    def moves(self) -> list:
        return ledger.entries(load_settings(self.stack.env), self.pipeline)

    def newest_run(self, kind: str, after: int) -> dict:
        """The run of ``kind`` that starts once more than ``after`` runs exist, once it finished."""

        def started() -> dict | None:
            runs = self.runs(kind)
            return runs[-1] if len(runs) > after else None

        run = self.stack.until(started, f"a new {kind} run")
        return self.stack.wait_for_run(self.dag(kind), run["dag_run_id"])


def _suite(directory: Path) -> str:
    """The example suite without the value set of ``region``, so a hostile category reaches the
    report (the example suite would quarantine the batch)."""
    suite = json.loads((REPO / "include" / "expectations" / "churn.json").read_text())
    suite["name"] = "ui_e2e"
    suite["expectations"] = [e for e in suite["expectations"] if e["kwargs"].get("column") != "region"]
    directory.mkdir()
    (directory / "ui_e2e.json").write_text(json.dumps(suite))
    return "ui_e2e"


def _spec(name: str, home: Path, suite: str) -> dict:
    spec = example_spec(name, str(home / "data"), expectation_suite=suite)
    spec.update(
        gates={"rules": [{"metric": "roc_auc", "at_least": 0.6}]},
        schedule={"train": None, "score": None, "monitor": None},  # nothing fires by itself
        scoring={"incoming_uri": str(home / "incoming"), "labels_uri": str(home / "labels")},
        monitoring={
            "window_batches": 1,
            "min_rows": 300,
            "report_sample_rows": ROWS,
            "drift": {"share": 0.3},
            "quality": {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 300},
        },
        retrain={"k_of_n": {"k": 1, "n": 1}, "cooldown_minutes": 60, "max_consecutive_rejections": 3},
    )
    return spec


def login(context, url: str, password: str) -> None:
    """Through Airflow's own login page (simple auth manager), as a person would."""
    page = context.new_page()
    page.goto(f"{url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    page.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, browser) -> Iterator[World]:
    home = tmp_path_factory.mktemp("ui-e2e")
    name = f"p{uuid.uuid4().hex[:10]}"
    write_batches(home / "data", range(3), rows=ROWS)
    pipelines = home / "pipelines"
    pipelines.mkdir()
    suite = _suite(home / "expectations")
    (pipelines / f"{name}.yaml").write_text(yaml.safe_dump(_spec(name, home, suite)))
    with LocalDeployment(home, pipelines, CTLOOP_EXPECTATIONS_DIR=str(home / "expectations")) as stack:
        for kind in ("score", "monitor"):
            stack.wait_for_dag(f"{name}__{kind}")
        acted_on = {
            kind: stack.wait_for_dag(f"{name}__{kind}", unpause=False) for kind in ("train", "rollback")
        }
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(30_000)
        login(context, stack.base_url, stack.admin_password())
        yield World(stack, name, home, context, {k: dag["is_paused"] for k, dag in acted_on.items()})
        context.close()


@pytest.fixture(scope="module")
def first_training(world: World, artifacts: Path) -> dict:
    """A person starts the first training from the trigger form, with a reason and a note."""
    from playwright.sync_api import expect

    page = world.page()
    page.goto(f"{world.url}/dags/{world.dag('train')}")
    page.get_by_role("button", name="Trigger").click()
    form = page.get_by_role("dialog")
    form.locator("#element_reason").fill(REASON)
    form.locator("#element_note").fill("JIRA-123")
    submit = form.get_by_role("button", name="Trigger")
    page.screenshot(path=artifacts / "train-trigger-form.png")
    expect(submit, "the trigger form refuses a run with a reason and a note").to_be_enabled(timeout=5_000)
    submit.click()
    page.wait_for_url(f"{world.url}/dags/{world.dag('train')}/runs/**")
    run_id = unquote(page.url.rsplit("/runs/", 1)[1].split("/")[0])
    page.close()
    return world.stack.wait_for_run(world.dag("train"), run_id)


def _deliver(world: World, index: int, **options) -> None:
    """A production batch lands; every 7th ``region`` of the shifted one is the payload."""
    (path,) = write_batches(
        world.home / "incoming", range(index, index + 1), rows=ROWS, with_target=False, **options
    )
    if index == SHIFTED:
        frame = pd.read_csv(path)
        frame.loc[frame.index[::7], "region"] = PAYLOAD
        frame.to_csv(path, index=False)


def _score_and_monitor(world: World) -> dict:
    monitors = len(world.runs("monitor"))
    scored = world.stack.trigger(world.dag("score"))
    assert world.stack.wait_for_run(world.dag("score"), scored["dag_run_id"])["state"] == "success"
    return world.newest_run("monitor", monitors)  # started by the predictions asset event


@pytest.fixture(scope="module")
def monitored(world: World, first_training: dict) -> dict:
    """A stable batch (held), its labels, then a shifted batch: the monitor asks for a retrain,
    the scheduler runs ``__train`` on the asset event and it promotes v2."""
    assert first_training["state"] == "success", world.stack.diagnose(
        world.dag("train"), first_training["dag_run_id"]
    )
    _deliver(world, STABLE)
    stable = _score_and_monitor(world)
    write_labels(world.home / "labels", STABLE, rows=ROWS)
    _deliver(world, SHIFTED, shift=COVARIATE_SHIFT)
    trainings = len(world.runs("train"))
    shifted = _score_and_monitor(world)
    retrain = world.newest_run("train", trainings)
    return {"stable": stable, "shifted": shifted, "retrain": retrain}


@pytest.fixture(scope="module")
def rolled_back(world: World, monitored: dict, artifacts: Path) -> dict:
    """A person rolls the champion back from the ledger page, with a reason."""
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}/ledger")
    page.get_by_role("button", name="Roll back to the previous champion…").click()
    page.wait_for_url("**/rollback?target=previous")
    page.screenshot(path=artifacts / "rollback-confirm.png")
    page.get_by_role("button", name="Roll back").click()  # no reason yet: the form does not submit
    refused_without_reason = page.url.endswith("/rollback?target=previous")
    page.get_by_label("Reason").fill(ROLLBACK_REASON)
    page.get_by_role("button", name="Roll back").click()
    page.wait_for_url("**/ledger?triggered=*")
    run_id = unquote(page.url.split("triggered=", 1)[1])
    notice = page.locator(".notice").inner_text()
    run = world.stack.wait_for_run(world.dag("rollback"), run_id)
    page.reload()
    page.screenshot(path=artifacts / "ledger.png", full_page=True)
    ledger_text = page.locator("table").inner_text()
    page.close()
    return {
        "run": run,
        "refused_without_reason": refused_without_reason,
        "notice": notice,
        "ledger": ledger_text,
    }


RETRAIN_REASON = "labels of the last batch show a drop (e2e)"
CHOSEN_ROLLBACK_REASON = "v3 was trained on the wrong window (e2e)"


def _act_on_the_pipeline_page(world: World, form_id: str, fields: dict[str, str], artifacts: Path, shot: str):
    """Fill one of the pipeline page's two forms as a person and submit it; first without a reason,
    which the browser refuses. Returns the run it started, finished, and what the page said."""
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}")
    form = page.locator(f"form#{form_id}")
    form.get_by_role("button").click()  # no reason yet: the form does not submit
    refused_without_reason = page.url == f"{world.url}/ctloop/pipelines/{world.pipeline}"
    for label, value in fields.items():
        if label == "To":
            form.get_by_label(label).select_option(value)
        else:
            form.get_by_label(label).fill(value)
    page.screenshot(path=artifacts / f"{shot}-form.png", full_page=True)
    form.get_by_role("button").click()
    page.wait_for_url("**?started=*")
    kind, _, run_id = unquote(page.url.split("started=", 1)[1]).partition(":")
    notice = page.locator("#started").inner_text()
    run = world.stack.wait_for_run(world.dag(kind), run_id)
    page.reload()
    page.screenshot(path=artifacts / f"{shot}-done.png", full_page=True)
    champion = page.locator("#serving tr.champion td").nth(1).inner_text()
    newest_training = page.locator("#decisions table").first.locator("tbody tr").first.inner_text()
    decisions = page.locator("#decisions").inner_text()
    page.close()
    return {
        "run": run,
        "refused_without_reason": refused_without_reason,
        "notice": notice,
        "champion": champion,
        "newest_training": newest_training,
        "decisions": decisions,
    }


@pytest.fixture(scope="module")
def retrained_from_the_page(world: World, rolled_back: dict, artifacts: Path) -> dict:
    """After the rollback to v1, a person retrains from the pipeline page: v3."""
    fields = {"Reason": RETRAIN_REASON, "Note (optional)": "INC-7"}
    return _act_on_the_pipeline_page(world, "retrain", fields, artifacts, "pipeline-retrain")


@pytest.fixture(scope="module")
def rolled_back_from_the_page(world: World, retrained_from_the_page: dict, artifacts: Path) -> dict:
    """The person then rolls back from the pipeline page to a chosen version, v2."""
    fields = {"To": "2", "Reason": CHOSEN_ROLLBACK_REASON}
    return _act_on_the_pipeline_page(world, "rollback", fields, artifacts, "pipeline-rollback")


def test_a_person_starts_a_training_from_the_trigger_form_with_a_reason(
    world: World, first_training: dict
) -> None:
    assert first_training["state"] == "success", world.stack.diagnose(
        world.dag("train"), first_training["dag_run_id"]
    )
    assert first_training["conf"]["reason"] == REASON
    assert first_training["triggering_user_name"] == "admin"
    (promotion,) = world.moves()
    assert (promotion.action, promotion.to_version, promotion.reason) == ("promotion", "1", REASON)


def test_the_monitor_retrains_on_the_shifted_batch(world: World, monitored: dict) -> None:
    assert monitored["stable"]["state"] == monitored["shifted"]["state"] == "success"
    retrain = monitored["retrain"]
    assert retrain["run_type"] == "asset_triggered"
    assert retrain["state"] == "success", world.stack.diagnose(world.dag("train"), retrain["dag_run_id"])
    assert [m.to_version for m in world.moves()] == ["1", "2"]


def test_the_overview_shows_champion_runs_drift_and_the_retrain_policy(
    world: World, monitored: dict, artifacts: Path
) -> None:
    airflow = world.page()
    airflow.goto(f"{world.url}/")
    airflow.get_by_role("button", name="Browse").click()
    with world.session.expect_page() as opened:  # Browse → ctloop opens the plugin in a new tab
        airflow.get_by_role("menuitem", name="ctloop").click()
    page = opened.value
    page.wait_for_load_state()
    page.screenshot(path=artifacts / "overview.png", full_page=True)
    landed = page.url
    found = page.locator("tr", has=page.get_by_role("link", name=world.pipeline, exact=True))
    row = found.inner_text()
    run_ids = found.locator("a.run").evaluate_all("links => links.map(link => link.title)")
    page.close()
    airflow.close()
    assert landed == f"{world.url}/ctloop/"
    assert "v2" in row
    assert "promotion" in row
    assert row.count("success") == 3  # the last training, scoring and monitoring run
    assert monitored["shifted"]["dag_run_id"] in run_ids  # named in the link's title, not its text
    assert monitored["retrain"]["dag_run_id"] in run_ids
    assert monitored["shifted"]["dag_run_id"] not in row
    assert "alert" in row
    assert "retrain" in row
    assert "confirmed alert" in row
    assert "cooldown until" in row  # the retrain an alert asked for ended less than 60 minutes ago
    assert "circuit breaker closed" in row


def test_the_pipeline_page_charts_drift_and_quality_with_markers_readably(
    world: World, monitored: dict, artifacts: Path
) -> None:
    page = world.page()
    page.goto(f"{world.url}/ctloop/")
    page.get_by_role("link", name=world.pipeline, exact=True).click()
    chart = page.locator("svg.history")
    chart.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "pipeline.png", full_page=True)
    counts = {
        "drift points": chart.locator("circle.drift").count(),
        "quality points": chart.locator("circle.quality").count(),
        "retrain markers": chart.locator("g.marker.retrain").count(),
        "promotion markers": chart.locator("g.marker.promotion").count(),
    }
    report_links = (
        page.locator("h2:has-text('Monitor runs') + table").get_by_role("link", name="report").count()
    )
    svgs = page.evaluate(MEASURE)
    page.close()
    # two monitor runs; quality only on the second (labels of the stable batch had arrived)
    expected = {"drift points": 2, "quality points": 1, "retrain markers": 1, "promotion markers": 2}
    assert counts == expected
    assert report_links == 2
    assert [svg["cls"] for svg in svgs] == ["history", "feature-drift"]  # no comparison had labels yet
    assert {svg["cls"]: label_problems(svg) for svg in svgs} == {"history": [], "feature-drift": []}
    assert all(svg["width"] == pytest.approx(svg["container"], abs=1) for svg in svgs)  # full width


def test_a_drift_report_renders_in_its_sandbox(world: World, monitored: dict, artifacts: Path) -> None:
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}")
    page.locator("tr", has_text=monitored["stable"]["dag_run_id"]).get_by_role("link", name="report").click()
    frame = page.frame_locator("iframe.report")
    frame.get_by_text("Dataset Drift").first.wait_for()  # Evidently's own scripts ran, sandboxed
    page.screenshot(path=artifacts / "report.png")
    assert page.locator("iframe.report").get_attribute("sandbox") == "allow-scripts"
    page.close()


def test_a_hostile_category_value_never_runs_in_airflows_origin(
    world: World, monitored: dict, artifacts: Path
) -> None:
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}")
    page.locator("tr", has_text=monitored["shifted"]["dag_run_id"]).get_by_role("link", name="report").click()
    page.locator("iframe.report").wait_for()  # the report page has loaded: its title is the one to keep
    title = page.title()
    assert title.endswith("drift report · ctloop"), title
    frame = page.frame_locator("iframe.report")
    frame.locator('img[src="x"]').first.wait_for(state="attached")  # the payload did reach the DOM
    page.wait_for_timeout(1_000)  # its onerror has fired by now
    page.screenshot(path=artifacts / "report-hostile.png")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.title() == title
    assert "pwned" not in title
    assert "allow-same-origin" not in page.locator("iframe.report").get_attribute("sandbox")

    raw = page.locator("iframe.report").get_attribute("src")
    answer = page.goto(f"{world.url}{raw}")  # the report opened on its own, not framed
    assert answer.headers["content-security-policy"].startswith("sandbox allow-scripts;")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert page.evaluate("window.origin") == "null"  # an opaque origin, not Airflow's
    cookie = page.evaluate("() => { try { return document.cookie } catch (error) { return error.name } }")
    assert cookie == "SecurityError"  # Airflow's session token is out of its reach
    page.close()


def test_the_monitor_task_links_to_its_report(world: World, monitored: dict, artifacts: Path) -> None:
    run_id = monitored["shifted"]["dag_run_id"]
    page = world.page()
    page.goto(f"{world.url}/dags/{world.dag('monitor')}/runs/{quote(run_id, safe='')}/tasks/monitor/details")
    link = page.get_by_role("link", name="Drift report")
    link.wait_for()
    page.screenshot(path=artifacts / "monitor-task-links.png")
    link.click()
    page.wait_for_url("**/ctloop/pipelines/**/reports/**")
    heading = page.get_by_role("heading", level=1).inner_text()
    landed = unquote(page.url)
    page.close()
    assert landed.endswith(f"/ctloop/pipelines/{world.pipeline}/reports/{run_id}")
    assert heading == f"Drift report · {world.pipeline}"


def test_a_person_rolls_the_champion_back_from_the_ledger(world: World, rolled_back: dict) -> None:
    assert rolled_back["refused_without_reason"]
    assert "Rollback requested" in rolled_back["notice"]
    assert rolled_back["run"]["state"] == "success", world.stack.diagnose(
        world.dag("rollback"), rolled_back["run"]["dag_run_id"]
    )
    assert rolled_back["run"]["conf"] == {"target": "previous", "reason": ROLLBACK_REASON, "force": False}
    last = world.moves()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert (last.user, last.reason) == ("admin", ROLLBACK_REASON)
    assert ROLLBACK_REASON in rolled_back["ledger"]
    assert "rollback" in rolled_back["ledger"]


def test_the_plugin_refuses_a_browser_that_is_not_logged_in(
    world: World, browser, monitored: dict, artifacts: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    base = f"/ctloop/pipelines/{world.pipeline}"
    answers = {
        path: page.goto(f"{world.url}{path}").status
        for path in (
            "/ctloop/",
            base,
            f"{base}/ledger",
            f"{base}/reports/{monitored['shifted']['dag_run_id']}/raw",
        )
    }
    posted = context.request.post(f"{world.url}{base}/rollback", form={"target": "previous", "reason": "x"})
    page.goto(f"{world.url}{base}")
    page.screenshot(path=artifacts / "not-logged-in.png")
    page.get_by_role("link", name="Log in to Airflow").click()  # and back to where they were
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(world.stack.admin_password())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{world.url}{base}")
    back = page.get_by_role("heading", level=1).inner_text()
    context.close()
    assert set(answers.values()) == {401}, answers
    assert posted.status == 401
    assert back == world.pipeline


def test_the_ledger_links_each_versions_model_card_and_its_diff(
    world: World, rolled_back: dict, artifacts: Path
) -> None:
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}/ledger")
    with page.expect_response("**/versions/2/model-card") as card:  # the version's page frames its card
        page.get_by_role("link", name="model card v2").first.click()
    answer = card.value
    heading = page.get_by_role("heading", level=1).inner_text()
    framed = page.frame_locator("iframe.report").get_by_role("heading", level=1).inner_text()
    sandbox = page.locator("iframe.report").get_attribute("sandbox")
    back = page.get_by_role("link", name="Back to the promotion ledger").get_attribute("href")
    summary = page.get_by_text("v2 against the champion v1:").inner_text()
    data_changes = page.locator("h3:has-text('Data') + table").inner_text()
    page.screenshot(path=artifacts / "model-card.png", full_page=True)
    page.close()
    assert answer.status == 200
    assert answer.headers["content-security-policy"].startswith("sandbox;")  # no script at all
    assert heading == f"Model card · {world.pipeline} v2"  # inside the plugin's layout
    assert framed == f"Model card: {world.pipeline} version 2"
    assert sandbox == ""  # neither scripts nor this origin
    assert back.endswith(f"/ctloop/pipelines/{world.pipeline}/ledger")
    assert "difference" in summary  # v2 was trained on more data than the champion v1 (rolled back to)
    assert "snapshot sha256" in data_changes, data_changes


def test_a_person_retrains_from_the_pipeline_page_and_finds_it_in_mlflow_and_the_ledger(
    world: World, retrained_from_the_page: dict
) -> None:
    from ctloop.registry import mlflow_store as registry
    from ctloop.registry import tags

    done = retrained_from_the_page
    run = done["run"]
    assert done["refused_without_reason"]
    assert done["notice"].startswith("Retrain started")
    assert run["state"] == "success", world.stack.diagnose(world.dag("train"), run["dag_run_id"])
    assert run["conf"] == {"reason": RETRAIN_REASON, "note": "INC-7"}
    assert run["triggering_user_name"] == "admin"
    last = world.moves()[-1]
    assert (last.action, last.from_version, last.to_version) == ("promotion", "1", "3")
    assert (last.user, last.reason) == ("admin", RETRAIN_REASON)
    recorded = registry.client(load_settings(world.stack.env)).get_run(last.mlflow_run_id).data.tags
    assert recorded[tags.REASON] == RETRAIN_REASON
    assert recorded[tags.NOTE] == "INC-7"
    assert recorded[tags.STARTED_BY] == "admin"
    assert recorded[tags.MLFLOW_USER] == "admin"  # MLflow's own User column
    newest = done["newest_training"]
    assert newest.split("\t")[1] == "admin"  # asked by
    assert RETRAIN_REASON in newest
    assert "promoted" in newest
    assert done["champion"] == "v3"


def test_a_person_rolls_back_to_a_chosen_version_without_unpausing_anything(
    world: World, rolled_back_from_the_page: dict
) -> None:
    done = rolled_back_from_the_page
    run = done["run"]
    assert world.paused_at_creation == {"train": False, "rollback": False}  # and nobody unpaused them
    assert done["refused_without_reason"]
    assert done["notice"].startswith("Rollback started")
    assert run["state"] == "success", world.stack.diagnose(world.dag("rollback"), run["dag_run_id"])
    assert run["conf"] == {"target": "2", "reason": CHOSEN_ROLLBACK_REASON, "force": False}
    last = world.moves()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "3", "2")
    assert (last.user, last.reason) == ("admin", CHOSEN_ROLLBACK_REASON)
    assert done["champion"] == "v2"
    assert CHOSEN_ROLLBACK_REASON in done["decisions"]


@pytest.fixture(scope="module")
def drifted_again(world: World, rolled_back_from_the_page: dict) -> dict:
    """A shifted batch without the hostile value: a report Evidently can render. The monitor
    alerts; the cooldown of the earlier alert-driven retrain holds the retrain back."""
    _deliver(world, SHIFTED + 1, shift=COVARIATE_SHIFT)
    return _score_and_monitor(world)


def _report_page(world: World, run_id: str, artifacts: Path, shot: str) -> tuple[str, str]:
    """The report page's headline (ctloop's decision) and Evidently's own dataset-drift headline."""
    page = world.page()
    page.goto(f"{world.url}/ctloop/pipelines/{world.pipeline}/reports/{quote(run_id, safe='')}")
    headline = page.locator("#decision").inner_text()
    frame = page.frame_locator("iframe.report")
    frame.get_by_text("Dataset Drift").first.wait_for()
    evidently = frame.get_by_text("Dataset Drift is", exact=False).first.inner_text()
    page.screenshot(path=artifacts / f"report-{shot}.png", full_page=True)
    page.close()
    return headline, evidently


def test_a_report_without_drift_says_so_in_the_headline_and_the_evidence(
    world: World, monitored: dict, artifacts: Path
) -> None:
    headline, evidently = _report_page(world, monitored["stable"]["dag_run_id"], artifacts, "stable")
    assert headline.startswith("Decision: hold"), headline
    assert "Dataset Drift is NOT detected." in evidently


def test_a_report_with_drift_leads_with_the_alert_and_the_evidence_agrees(
    world: World, drifted_again: dict, artifacts: Path
) -> None:
    assert drifted_again["state"] == "success"
    headline, evidently = _report_page(world, drifted_again["dag_run_id"], artifacts, "drifted")
    assert headline.startswith("Decision: alert · "), headline
    assert "Dataset Drift is detected." in evidently
    assert "threshold is 0.3" in evidently  # the pipeline's monitoring.drift.share, not Evidently's 0.5
