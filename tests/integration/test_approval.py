"""Human approval through Airflow's human-in-the-loop, on a running deployment.

A person answers in the UI's Required actions view, which calls the REST API this test calls
(``PATCH .../taskInstances/approve/-1/hitlDetails``); the scheduler resolves a request nobody
answered by its timeout with the default, Reject. ``dag.test()`` cannot wait for a person, so
this runs the real components (api-server, scheduler, dag-processor) as processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.devtools.local_deployment import LocalDeployment
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.settings import load_settings
from tests.helpers import served_pipeline
from tests.webhook import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("airflow_server")]
PERSON_SECONDS = 8
TIMEOUT_HOURS = 0.008  # 29 s: time to answer, and short enough to watch a request expire


@dataclass
class Approvals:
    server: LocalDeployment
    pipeline: str
    data: object
    webhook: Webhook

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
    name, data, pipelines = served_pipeline(home, batches=2, rows=600, gates=gates)
    webhook = Webhook()
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": webhook.server.server_address[1]}
    with LocalDeployment(home, pipelines, AIRFLOW_CONN_CTLOOP_WEBHOOK=json.dumps(conn)) as server:
        server.wait_for_dag(f"{name}__train")
        yield Approvals(server, name, data / "training", webhook)
    webhook.server.shutdown()


def _champion(approvals: Approvals) -> str | None:
    champion = registry.get_champion(registry.client(approvals.settings()), approvals.pipeline)
    return str(champion.version) if champion else None


def _version_tags(approvals: Approvals, version: str) -> dict:
    return registry.client(approvals.settings()).get_model_version(approvals.pipeline, version).tags


def test_approve_promotes_and_records_the_approver(approvals: Approvals) -> None:
    run_id = approvals.train_until_asked("first model")
    assert _champion(approvals) is None  # nothing moves while the person has not answered
    status, answer = approvals.answer(run_id, "Approve", "looks right")
    assert status == 200, answer
    finished = approvals.finish(run_id)
    assert finished["state"] == "success", approvals.server.diagnose(approvals.dag_id, run_id)
    assert _champion(approvals) == "1"
    (move,) = ledger.entries(approvals.settings(), approvals.pipeline)
    assert move.approver == "admin"
    assert move.to_version == "1"
    tags = _version_tags(approvals, "1")
    assert (tags["ctloop.approval"], tags["ctloop.approved_by"]) == ("approved", "admin")
    assert tags["ctloop.approval_comment"] == "looks right"
    assert approvals.webhook.events(approvals.pipeline) == ["approval_request", "promotion"]


def test_reject_leaves_the_champion_and_records_who_and_why(approvals: Approvals) -> None:
    run_id = approvals.train_until_asked("second model")
    status, _ = approvals.answer(run_id, "Reject", "slice for two_year looks off")
    assert status == 200
    approvals.finish(run_id)
    assert _champion(approvals) == "1"
    tags = _version_tags(approvals, "2")
    assert tags["ctloop.approval"] == "rejected"
    assert tags["ctloop.approved_by"] == "admin"
    assert tags["ctloop.approval_comment"] == "slice for two_year looks off"
    assert len(ledger.entries(approvals.settings(), approvals.pipeline)) == 1
    assert approvals.webhook.events(approvals.pipeline)[-1] == "rejection"


def test_no_answer_times_out_as_a_rejection(approvals: Approvals) -> None:
    run_id = approvals.train_until_asked("third model")
    time.sleep(TIMEOUT_HOURS * 3600)  # past it; the scheduler answers with the default, Reject
    approvals.finish(run_id)
    assert _champion(approvals) == "1"
    assert _version_tags(approvals, "3")["ctloop.approval"] == "timed_out"
    assert len(ledger.entries(approvals.settings(), approvals.pipeline)) == 1
