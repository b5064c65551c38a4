"""Human approval through Airflow's human-in-the-loop, on a running deployment; while a candidate
waits it is the ``challenger``: it shadow-scores production and the monitor compares it with the
champion on the same labeled rows.

A person answers in the UI's Required actions view, which calls the REST API this test calls
(``PATCH .../taskInstances/approve/-1/hitlDetails``); the scheduler resolves a request nobody
answered by its timeout with the default, Reject. ``dag.test()`` cannot wait for a person, so
this runs the real components (api-server, scheduler, dag-processor) as processes.

Two pipelines share the deployment: one a person answers (its requests never expire while a test
scores and monitors), and one with a short timeout nobody answers, started first so its request
expires while the other is being answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from ctloop.devtools.example_data import write_batches, write_labels
from ctloop.devtools.local_deployment import LocalDeployment
from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring.monitor_run import history_prefix
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.scoring.prediction_log import PREDICTIONS, partition_key
from ctloop.settings import load_settings
from tests.helpers import served_pipeline
from tests.webhook import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("approval")]
PERSON_SECONDS = 8
TIMEOUT_HOURS = 1.0  # longer than any test takes to answer, or to score and monitor
UNANSWERED_TIMEOUT_HOURS = 0.005  # 18 s: watched to expire while the other pipeline's tests run
PRODUCTION_ROWS = 600


@dataclass
class Approvals:
    server: LocalDeployment
    pipeline: str
    data: object
    webhook: Webhook
    production: object
    unanswered: tuple[str, str]  # (pipeline, run id) of a training whose request nobody answers

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline}__train"

    def train_until_asked(self, reason: str) -> str:
        """Start a training and wait until its approval request is open; returns the run id."""
        write_batches(self.data, range(self._batches(), self._batches() + 1), rows=600, seed=len(reason))
        run_id = self.server.trigger(self.dag_id, {"reason": reason})["dag_run_id"]
        path = f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/approve"
        self.server.until(
            lambda: self.server.client.get(path)[1].get("state") == "awaiting_input",
            f"{run_id} to ask for approval",
            timeout=300,
            dag_id=self.dag_id,
            run_id=run_id,
        )
        # A person takes seconds to answer. An answer within a second of the request can reach
        # the task before the executor has reported the parked attempt as done; Airflow 3.3 then
        # fails that attempt as "state changed externally" and asks again.
        time.sleep(PERSON_SECONDS)
        return run_id

    def answer(self, run_id: str, option: str, comment: str) -> tuple[int, dict]:
        path = f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
        return self.server.client.patch(
            path, {"chosen_options": [option], "params_input": {"comment": comment}}
        )

    def finish(self, run_id: str) -> dict:
        return self.server.wait_for_run(self.dag_id, run_id, timeout=300)

    def _batches(self) -> int:
        return len(list(self.data.glob("batch-*")))

    def run(self, kind: str) -> dict:
        """Trigger ``<pipeline>__<kind>`` and wait until it finished successfully."""
        dag_id = f"{self.pipeline}__{kind}"
        run_id = self.server.trigger(dag_id)["dag_run_id"]
        finished = self.server.wait_for_run(dag_id, run_id, timeout=300)
        assert finished["state"] == "success", self.server.diagnose(dag_id, run_id)
        return finished

    def settings(self):
        return load_settings(self.server.env)


@pytest.fixture(scope="module")
def approvals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Approvals]:
    home = tmp_path_factory.mktemp("approval-server")
    gates = {
        "rules": [{"metric": "roc_auc", "at_least": 0.6}],  # every candidate passes: a person decides
        "approval": "required",
        "approval_timeout_hours": TIMEOUT_HOURS,
    }
    production = home / "production"
    scoring = {"incoming_uri": str(production / "incoming"), "labels_uri": str(production / "labels")}
    monitoring = {"watch": {"min_labels": PRODUCTION_ROWS // 2}}
    name, data, pipelines = served_pipeline(
        home, batches=2, rows=600, gates=gates, scoring={**scoring, "format": "csv"}, monitoring=monitoring
    )
    unanswered, _, _ = served_pipeline(
        home, batches=2, rows=600, gates={**gates, "approval_timeout_hours": UNANSWERED_TIMEOUT_HOURS}
    )
    webhook = Webhook()
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": webhook.server.server_address[1]}
    with LocalDeployment(
        home,
        pipelines,
        AIRFLOW_CONN_CTLOOP_WEBHOOK=json.dumps(conn),
        # how often the scheduler looks for expired requests (15 s by default)
        AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="2",
    ) as server:
        server.wait_for_dag(f"{unanswered}__train")
        started = server.trigger(f"{unanswered}__train", {"reason": "nobody answers"})["dag_run_id"]
        server.wait_for_dag(f"{name}__train")
        server.wait_for_dag(f"{name}__score")
        server.wait_for_dag(f"{name}__monitor")
        yield Approvals(server, name, data / "training", webhook, production, (unanswered, started))
    webhook.server.shutdown()


def _champion(approvals: Approvals) -> str | None:
    champion = registry.get_champion(registry.client(approvals.settings()), approvals.pipeline)
    return str(champion.version) if champion else None


def _pipeline_page(approvals: Approvals) -> str:
    """The plugin's pipeline page, as the deployment's API server serves it to the admin."""
    status, html = approvals.server.client.get(f"/ctloop/pipelines/{approvals.pipeline}")
    assert status == 200, html
    return html


def _version_tags(approvals: Approvals, version: str) -> dict:
    return registry.client(approvals.settings()).get_model_version(approvals.pipeline, version).tags


def test_approve_promotes_and_records_the_approver(approvals: Approvals) -> None:
    run_id = approvals.train_until_asked("first model")
    assert _champion(approvals) is None  # nothing moves while the person has not answered
    assert _challenger(approvals) == "1"
    status, answer = approvals.answer(run_id, "Approve", "looks right")
    assert status == 200, answer
    finished = approvals.finish(run_id)
    assert finished["state"] == "success", approvals.server.diagnose(approvals.dag_id, run_id)
    assert _champion(approvals) == "1"
    (move,) = ledger.entries(approvals.settings(), approvals.pipeline)
    assert move.approver == "admin"
    assert move.to_version == "1"
    recorded = _version_tags(approvals, "1")
    assert (recorded["ctloop.approval"], recorded["ctloop.approved_by"]) == ("approved", "admin")
    assert recorded["ctloop.approval_comment"] == "looks right"
    assert approvals.webhook.events(approvals.pipeline) == ["approval_request", "promotion"]
    assert _challenger(approvals) is None  # it is champion now
    assert _version_tags(approvals, "1")[tags.CHALLENGER].endswith(": its training run ended: promoted")


def test_reject_leaves_the_champion_and_records_who_and_why(approvals: Approvals) -> None:
    run_id = approvals.train_until_asked("second model")
    status, _ = approvals.answer(run_id, "Reject", "slice for two_year looks off")
    assert status == 200
    approvals.finish(run_id)
    assert _champion(approvals) == "1"
    recorded = _version_tags(approvals, "2")
    assert recorded["ctloop.approval"] == "rejected"
    assert recorded["ctloop.approved_by"] == "admin"
    assert recorded["ctloop.approval_comment"] == "slice for two_year looks off"
    assert len(ledger.entries(approvals.settings(), approvals.pipeline)) == 1
    assert approvals.webhook.events(approvals.pipeline)[-1] == "rejection"
    assert _challenger(approvals) is None  # released when its run ended


def _challenger(approvals: Approvals) -> str | None:
    found = registry.get_alias(registry.client(approvals.settings()), approvals.pipeline, registry.CHALLENGER)
    return str(found.version) if found else None


def test_a_waiting_candidate_is_the_challenger_until_it_is_answered(approvals: Approvals) -> None:
    """v3 waits: it shadow-scores a production batch beside champion v1, the monitor compares
    the two on the batch's labeled rows, and when the person rejects it the alias is released."""
    run_id = approvals.train_until_asked("third model")
    assert _challenger(approvals) == "3"
    assert _champion(approvals) == "1"

    write_batches(approvals.production / "incoming", [0], rows=PRODUCTION_ROWS, with_target=False, seed=5)
    approvals.run("score")
    storage = home_storage(approvals.settings())
    scored = from_parquet_bytes(
        storage.read_bytes(partition_key(PREDICTIONS, approvals.pipeline, "batch-0000"))
    )
    assert set(scored["model_version"]) == {"1"}
    assert set(scored["challenger_version"]) == {"3"}
    assert scored["challenger_score"].notna().all()
    assert not scored["challenger_score"].equals(scored["score"])  # its own outputs, not a copy

    write_labels(approvals.production / "labels", 0, rows=PRODUCTION_ROWS, seed=5)
    approvals.run("score")  # joins the labels
    monitor_run = approvals.run("monitor")
    assert _challenger(approvals) == "3", "the request expired before the monitor compared"
    entries = [
        json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(approvals.pipeline))
    ]
    entry = next(e for e in entries if e["run_key"].endswith(monitor_run["dag_run_id"]))
    compared = entry["challenger_vs_champion"]
    assert compared["versions"] == {"challenger": "3", "champion": "1"}
    assert compared["rows"] == PRODUCTION_ROWS
    assert compared["verdict"] in ("better", "worse", "no_difference")
    assert compared["interval"][0] <= compared["difference"] <= compared["interval"][1]
    summary = json.loads(storage.read_bytes(entry["summary_uri"].split("/storage/", 1)[1]))
    assert summary["challenger_vs_champion"]["verdict"] == compared["verdict"]
    assert "of v3 (challenger)" in summary["challenger_vs_champion"]["why"]

    waiting = _pipeline_page(approvals)
    attention = waiting.split('<section id="attention">', 1)[1].split("</section>", 1)[0]
    assert (
        f"/dags/{approvals.dag_id}/runs/{quote(run_id, safe='')}/tasks/approve/required_actions" in attention
    )
    challenger = waiting.split('<tr class="challenger">', 1)[1].split("</tr>", 1)[0]
    assert ">v3</a>" in challenger
    assert f"{compared['values']['challenger']:.4f}" in challenger  # its production value, on the same rows
    assert f"on {PRODUCTION_ROWS:,} rows" in challenger

    status, _ = approvals.answer(run_id, "Reject", "the challenger is no better")
    assert status == 200
    approvals.finish(run_id)
    answered = _pipeline_page(approvals)
    assert "required_actions" not in answered
    assert '<tr class="challenger">' not in answered
    assert _champion(approvals) == "1"
    assert _version_tags(approvals, "3")["ctloop.approval"] == "rejected"
    assert _challenger(approvals) is None
    assert _version_tags(approvals, "3")[tags.CHALLENGER].endswith(": its training run ended: rejected")
    assert len(ledger.entries(approvals.settings(), approvals.pipeline)) == 1


def test_a_request_nobody_answers_in_time_is_rejected_and_releases_the_challenger(
    approvals: Approvals,
) -> None:
    """The other pipeline's first candidate waited from the module's start; the scheduler answered
    its request with the default, Reject, once the timeout passed."""
    pipeline, run_id = approvals.unanswered
    dag_id = f"{pipeline}__train"
    finished = approvals.server.wait_for_run(dag_id, run_id, timeout=300)
    assert finished["state"] == "success", approvals.server.diagnose(dag_id, run_id)
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    status, request = approvals.server.client.get(path)
    assert status == 200, request
    assert request["chosen_options"] == ["Reject"]
    assert request["responded_by_user"] is None  # the scheduler's default, not a person
    client = registry.client(approvals.settings())
    version_tags = client.get_model_version(pipeline, "1").tags
    assert version_tags["ctloop.approval"] == "timed_out"
    assert version_tags[tags.CHALLENGER].endswith(": its training run ended: rejected")
    assert registry.get_champion(client, pipeline) is None
    assert registry.get_alias(client, pipeline, registry.CHALLENGER) is None
    assert ledger.entries(approvals.settings(), pipeline) == []
    assert approvals.webhook.events(pipeline) == ["approval_request", "rejection"]
