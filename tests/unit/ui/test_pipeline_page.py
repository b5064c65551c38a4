"""The pipeline page is where an on-call person decides: what needs them, what serves and waits
with its numbers, the two actions (only for who may take them), and the last decisions with their
reasons, above the monitoring."""

from __future__ import annotations

from datetime import UTC, datetime

from ctloop.ui import pages
from ctloop.ui.runs import Run, WaitingApproval
from ctloop.ui.serving import Figure, Serving, Training
from ctloop.ui.state import PolicyState
from tests.unit.ui.test_pages import HOSTILE, SPEC, URLS, _move

QUIET = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
EVERY_ACTION = pages.Actions(
    retrain_csrf="r" * 64, rollback_csrf="b" * 64, paused={"churn__train": False, "churn__rollback": False}
)
MOVES = [
    _move(1, "1", None, user="schedule"),
    _move(2, "2", "1", user="monitor"),
    _move(3, "3", "2", user="alice"),
]
SERVING = [
    Serving("champion", "3", "passed", [Figure("roc_auc", 0.8123, 0.7911, 0.7702, None)]),
    Serving("challenger", "4", "passed", [Figure("roc_auc", 0.8301, 0.8012, 0.7855, 1200)]),
]
REQUEST = {
    "id": "20260105T000000Z-abcd1234",
    "state": "closed",
    "opened_at": "2026-01-05T00:00:00+00:00",
    "reasons": [{"kind": "manual", "text": HOSTILE, "user": "bob"}],
    "claimed_by": "churn__train/manual__x",
    "outcome": "rejected",
    "version": "5",
}


def _view(**changes) -> pages.PipelineView:
    fields = {
        "decisions": [],
        "moves": MOVES,
        "policy": QUIET,
        "serving": SERVING,
        "trainings": [Training(REQUEST, "roc_auc 0.70 < absolute minimum 0.75")],
        "approvals": [],
        "actions": EVERY_ACTION,
        "started": None,
    }
    return pages.PipelineView(**(fields | changes))


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}"')
    return html[start : html.index("</section>", start)]


def test_the_page_reads_from_what_needs_a_person_to_the_monitoring() -> None:
    html = pages.pipeline(URLS, SPEC, _view())

    order = [
        html.index(f'id="{name}"') for name in ("attention", "serving", "actions", "decisions", "monitoring")
    ]
    assert order == sorted(order)
    assert 'id="all-quiet"' in _section(html, "attention")


def test_the_champion_and_the_challenger_show_their_numbers_on_frozen_recent_and_production_rows() -> None:
    serving = _section(pages.pipeline(URLS, SPEC, _view()), "serving")

    champion = serving.split('<tr class="champion">', 1)[1].split("</tr>", 1)[0]
    challenger = serving.split('<tr class="challenger">', 1)[1].split("</tr>", 1)[0]
    assert 'href="/ctloop/pipelines/churn/versions/3"' in champion
    cells = [cell.split("<", 1)[0] for cell in champion.split('<td class="num">')[1:]]
    assert cells == ["0.8123", "0.7911", "0.7702"]  # frozen, recent, production
    assert "by alice" in champion
    assert "0.8301" in challenger
    assert "0.7855" in challenger
    assert "on 1,200 rows" in challenger
    assert "waits for approval" in challenger


def test_waiting_approvals_and_open_requests_link_where_people_answer() -> None:
    approval = WaitingApproval(
        "churn__train", "manual__2026-01-06", "approve", "Promote churn v4?", datetime(2026, 1, 6, tzinfo=UTC)
    )
    queued = {**REQUEST, "state": "open", "outcome": None, "claimed_by": None}
    policy = PolicyState(queued=queued, cooldown_until=None, rejections=3, max_rejections=3)
    paused = pages.Actions("r", "b", {"churn__train": True, "churn__rollback": None})

    attention = _section(
        pages.pipeline(URLS, SPEC, _view(approvals=[approval], policy=policy, actions=paused)), "attention"
    )

    assert 'href="/dags/churn__train/runs/manual__2026-01-06/tasks/approve/required_actions"' in attention
    assert "Promote churn v4?" in attention
    assert "retrain open" in attention
    assert "circuit breaker open" in attention
    assert "churn__train</a> is paused" in attention
    assert "Airflow does not know churn__rollback" in attention
    assert HOSTILE not in attention
    assert 'id="all-quiet"' not in attention


def test_both_actions_carry_their_token_and_require_a_reason() -> None:
    actions = _section(pages.pipeline(URLS, SPEC, _view()), "actions")

    retrain = actions.split('id="retrain"', 1)[1].split("</form>", 1)[0]
    rollback = actions.split('id="rollback"', 1)[1].split("</form>", 1)[0]
    assert 'action="/ctloop/pipelines/churn/retrain"' in actions
    assert f'name="csrf" value="{"r" * 64}"' in retrain
    assert '<textarea id="retrain-reason" name="reason" rows="2" required' in retrain
    assert 'name="note"' in retrain
    assert f'name="csrf" value="{"b" * 64}"' in rollback
    assert '<input type="hidden" name="back" value="pipeline">' in rollback
    assert "required" in rollback.split('id="rollback-reason"', 1)[1]
    targets = rollback.split("<select", 1)[1].split("</select>", 1)[0]
    assert '<option value="previous">the previous champion (v2)</option>' in targets
    assert '<option value="2">v2</option><option value="1">v1</option>' in targets
    assert 'value="3"' not in targets  # not to the champion itself


def test_who_may_not_trigger_gets_no_form() -> None:
    view = _view(actions=pages.Actions(None, None, {"churn__train": False, "churn__rollback": False}))
    actions = _section(pages.pipeline(URLS, SPEC, view), "actions")

    assert 'name="csrf"' not in actions
    assert "You may not trigger churn__train" in actions
    assert "You may not trigger churn__rollback" in actions


def test_who_may_not_read_the_training_dag_sees_no_models_or_retrainings() -> None:
    html = pages.pipeline(URLS, SPEC, _view(serving=None, trainings=[]))

    assert "You may not read churn__train" in _section(html, "serving")
    assert "Retrainings" not in _section(html, "decisions")


def test_the_last_retrainings_name_who_asked_and_the_gates_reason() -> None:
    decisions = _section(pages.pipeline(URLS, SPEC, _view()), "decisions")

    row = decisions.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert "<td><strong>bob</strong></td>" in row
    assert "&lt;script&gt;" in row
    assert ">rejected</span>" in row
    assert 'href="/ctloop/pipelines/churn/versions/5"' in row
    assert "roc_auc 0.70 &lt; absolute minimum 0.75" in row


def test_a_run_the_page_just_started_is_announced_with_its_state() -> None:
    run = Run(
        "churn__train",
        "manual__2026-01-07",
        "queued",
        "manual",
        datetime(2026, 1, 7, tzinfo=UTC),
        None,
        "carol",
    )

    html = pages.pipeline(URLS, SPEC, _view(started=run))

    notice = html.split('id="started">', 1)[1].split("</div>", 1)[0]
    assert notice.startswith("Retrain started")
    assert ">queued</span> by carol" in notice
    assert 'href="/dags/churn__train/runs/manual__2026-01-07"' in notice
