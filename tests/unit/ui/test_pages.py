"""The pages escape every value (reasons, run ids, decisions come from people and data) and show
the rollback form only to who may use it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ctloop.registry.ledger import LedgerEntry
from ctloop.spec.models import PipelineSpec
from ctloop.ui import pages
from ctloop.ui.links import Urls
from ctloop.ui.render import PAGE_CSP, page
from ctloop.ui.runs import Run
from ctloop.ui.state import PolicyState
from tests.helpers import example_spec

HOSTILE = '<script>alert("x")</script>'
SPEC = PipelineSpec.model_validate(example_spec("churn", "data"))
URLS = Urls.of("/ctloop", mlflow="http://127.0.0.1:5000")


def _move(
    seq: int,
    to: str,
    frm: str | None,
    action: str = "promotion",
    reason: str = "better",
    user: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        pipeline="churn",
        action=action,
        alias="champion",
        from_version=frm,
        to_version=to,
        at=datetime(2026, 1, seq, tzinfo=UTC).isoformat(),
        run_key=f"churn__train/manual__2026-01-0{seq}T00:00:00+00:00",
        mlflow_run_id=f"run{seq}",
        user=user,
        reason=reason,
        gate_decision="gate passed",
        approver=None,
        evidence={"snapshot": "/s/x.parquet", "trigger_reports": ""},
    )


MOVES = [_move(1, "1", None), _move(2, "2", "1", reason=HOSTILE)]


def test_the_ledger_escapes_what_people_wrote_and_links_the_evidence() -> None:
    html = pages.ledger(URLS, SPEC, MOVES, can_rollback=True, triggered=None)
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    assert 'href="/dags/churn__train/runs/manual__2026-01-02T00%3A00%3A00%2B00%3A00"' in html
    assert 'href="http://127.0.0.1:5000/#/runs/run2"' in html
    assert 'href="/ctloop/pipelines/churn/versions/2"' in html  # the version's page, its card inside
    assert 'href="/ctloop/pipelines/churn/rollback?target=1"' in html  # the earlier champion
    assert "rollback?target=2" not in html  # not to the current one
    assert "trigger_reports" not in html  # empty evidence is left out


def _by_cells(html: str) -> list[str]:
    """The "by" cell of each row, newest first (the fifth column)."""
    rows = html.split("<tbody>", 1)[1].split("</tr>")[:-1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row)[4] for row in rows]


def test_the_ledger_names_the_person_or_the_automatic_actor_of_each_move() -> None:
    moves = [
        _move(1, "1", None, user="schedule"),
        _move(2, "2", "1", user="monitor", reason="drift: 3 of 5 features"),
        _move(3, "1", "2", action="rollback", user="alice"),
        _move(4, "3", "1", user="alert:PD-42"),
        _move(5, "4", "3", user=HOSTILE),
        _move(6, "5", "4"),  # a row written before the ledger named its actors
    ]
    cells = _by_cells(pages.ledger(URLS, SPEC, moves, can_rollback=False, triggered=None))
    automatic = ' <span class="muted small">(automatic)</span>'
    assert cells == [
        '<span class="muted small">not recorded</span>',
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
        "alert:PD-42" + automatic,
        "alice",
        "monitor" + automatic,
        "schedule" + automatic,
    ]


def test_the_ledger_offers_no_rollback_to_who_may_not_trigger_it() -> None:
    html = pages.ledger(URLS, SPEC, MOVES, can_rollback=False, triggered=None)
    assert "Roll back" not in html
    assert "rollback?target" not in html


def test_the_ledger_shows_the_state_of_a_requested_rollback() -> None:
    run = Run("churn__rollback", "manual__x", "running", "manual", datetime.now(UTC), None, "admin")
    html = pages.ledger(URLS, SPEC, MOVES, can_rollback=True, triggered=run)
    assert "Rollback requested" in html
    assert 'class="badge busy">running<' in html


def test_the_rollback_form_needs_a_reason_and_carries_the_token() -> None:
    html = pages.rollback_form(
        URLS, SPEC, MOVES, target="previous", csrf="tok", can_rollback=True, paused=False
    )
    assert '<form method="post" action="/ctloop/pipelines/churn/rollback">' in html
    assert '<input type="hidden" name="csrf" value="tok">' in html
    assert '<textarea id="reason" name="reason" rows="3" required' in html
    assert "previous champion (v1 per the ledger)" in html


def test_the_rollback_form_says_why_it_cannot_be_used() -> None:
    refused = pages.rollback_form(URLS, SPEC, MOVES, target="1", csrf="t", can_rollback=False, paused=True)
    assert "<form" not in refused
    assert "You may not trigger churn__rollback" in refused
    assert "is paused" in refused
    unknown = pages.rollback_form(URLS, SPEC, MOVES, target="1", csrf="t", can_rollback=True, paused=None)
    assert "not parsed yet" in unknown


def test_the_history_links_only_runs_that_wrote_a_report() -> None:
    decisions = [
        {
            "run_key": "churn__monitor/r1",
            "at": "2026-01-01T00:00:00+00:00",
            "action": "hold",
            "why": HOSTILE,
            "drift_share": 0.1,
            "quality": None,
            "champion_version": "1",
            "report_uri": "/s/report.html",
        },
        {
            "run_key": "churn__monitor/r2",
            "at": "2026-01-02T00:00:00+00:00",
            "action": "hold",
            "why": "no champion",
            "drift_share": None,
            "quality": None,
            "champion_version": "1",
        },
    ]
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
    html = pages.history(URLS, SPEC, decisions, MOVES, policy)
    assert html.count(">report</a>") == 1
    assert "/ctloop/pipelines/churn/reports/r1" in html
    assert HOSTILE not in html


def test_the_history_shows_the_rollback_and_the_comparison_it_was_decided_on() -> None:
    watched = {
        "versions": {"champion": "2", "previous": "1"},
        "rows": 2400,
        "metric": "roc_auc",
        "difference": -0.3123,
        "interval": [-0.3417, -0.2829],
        "verdict": "rollback",
    }
    decisions = [
        {
            "run_key": "churn__monitor/r1",
            "at": "2026-01-01T00:00:00+00:00",
            "action": "hold",
            "why": "no trigger crossed",
            "champion_version": "1",
            "champion_vs_previous": None,
        },
        {
            "run_key": "churn__monitor/r2",
            "at": "2026-01-02T00:00:00+00:00",
            "action": "rollback",
            "why": "regression: v2 serves roc_auc 0.4656 against v1's 0.7779; rolling back and retraining",
            "champion_version": "2",
            "champion_vs_previous": watched,
        },
    ]
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
    moves = [*MOVES, _move(3, "1", "2", action="rollback", reason="monitor: regression")]
    html = pages.history(URLS, SPEC, decisions, moves, policy)
    assert "<th>vs previous</th>" in html
    assert "vs v1: -0.3123 [-0.3417, -0.2829] on 2,400 rows" in html
    assert '<span class="badge busy">rollback</span>' in html
    assert "<td>v1</td>" in html  # the earlier champion's window is still shown
    assert "the new champion is rolled back when its roc_auc is below the previous" in html


def test_the_history_shows_how_a_waiting_challenger_compares_with_the_champion() -> None:
    challenger = {
        "versions": {"challenger": "3", "champion": "2"},
        "rows": 1200,
        "metric": "roc_auc",
        "difference": 0.0815,
        "interval": [0.0602, 0.1031],
        "verdict": "better",
    }
    decisions = [
        {
            "run_key": "churn__monitor/r1",
            "at": "2026-01-01T00:00:00+00:00",
            "action": "hold",
            "why": "no trigger crossed",
            "champion_version": "2",
            "challenger_vs_champion": challenger,
        }
    ]
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
    html = pages.history(URLS, SPEC, decisions, MOVES, policy)
    assert "<th>challenger</th>" in html
    assert "vs v2: 0.0815 [0.0602, 0.1031] on 1,200 rows" in html
    assert '<span class="badge good">better</span>' in html


def _judged(
    metric: str, verdict: str, values: tuple[float, float] | None, difference: float, tolerance: float = 0.0
) -> dict[str, object]:
    """One metric of a comparison as the history keeps it (``champion_watch.MetricComparison``):
    ``values`` the champion's and the previous one's, ``difference`` in the metric's good direction;
    a fired metric at the watch's margin 0, else the quality metric at the gate's tolerance."""
    fired = tolerance == 0.0
    return {
        "metric": metric,
        "fired": fired,
        "tolerance": tolerance,
        "tolerance_from": "monitoring.watch.margin" if fired else "gates.alert_metrics.max_regression",
        "values": None if values is None else dict(zip(("champion", "previous"), values, strict=True)),
        "difference": None if values is None else difference,
        "interval": None if values is None else [difference - 0.02, difference + 0.02],
        "verdict": verdict,
    }


def test_the_history_shows_each_metric_a_comparison_judged_on_after_an_alert() -> None:
    """A watch judged on the alert's metrics names each metric's verdict, its figures in the tooltip;
    a comparison judged like any (or recorded before) keeps the quality metric's difference."""
    metrics = [
        _judged("accuracy", "better", (0.8954, 0.8), 0.0954),
        _judged("brier", "worse", (0.2412, 0.2), -0.0412),  # lower is better
        _judged("f1", "undecided", None, 0.0),
        _judged("roc_auc", "no_difference", (0.8451, 0.85), -0.0049, tolerance=0.01),
    ]
    judged = {
        "versions": {"champion": "2", "previous": "1"},
        "rows": 2400,
        "metric": "roc_auc",
        "values": {"champion": 0.8451, "previous": 0.85},
        "difference": -0.0049,
        "interval": [-0.0081, -0.0017],
        "verdict": "rollback",
        "alert_metrics": ["accuracy", "brier", "f1"],
        "metrics": metrics,
    }
    plain = {**judged, "alert_metrics": [], "metrics": [metrics[3]], "verdict": "hold"}
    old = {k: v for k, v in plain.items() if k not in ("alert_metrics", "metrics")}
    at = "2026-01-0{}T00:00:00+00:00"
    decisions = [
        {"run_key": f"churn__monitor/r{i}", "at": at.format(i + 1), "action": "hold", "why": "-",
         "champion_version": "2", "champion_vs_previous": compared}
        for i, compared in enumerate([old, plain, judged])
    ]  # fmt: skip
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)

    html = pages.history(URLS, SPEC, decisions, MOVES, policy)

    rows = {key: row for row in html.split("<tr>") for key in ("r0", "r1", "r2") if f">{key}</a>" in row}
    cells = {key: row.split("</td>")[7].strip() for key, row in rows.items()}  # the "vs previous" column
    before = (
        '<td><span class="small">vs v1: -0.0049 [-0.0081, -0.0017] on 2,400 rows</span>'
        ' <span class="badge good">hold</span>'
    )
    assert cells["r0"] == cells["r1"] == before
    assert cells["r2"] == (
        '<td><span class="small">vs v1 on 2,400 rows:'
        ' <span title="champion 0.8954 against previous 0.8000, difference +0.0954, interval [+0.0754,'
        ' +0.1154]; fired by the alert, tolerance 0 (monitoring.watch.margin)">accuracy better</span>,'
        ' <span title="champion 0.2412 against previous 0.2000, difference -0.0412, interval [-0.0612,'
        ' -0.0212]; fired by the alert, tolerance 0 (monitoring.watch.margin)"><strong>brier worse</strong>'
        "</span>,"
        ' <span title="no figures; fired by the alert, tolerance 0 (monitoring.watch.margin)">f1 undecided'
        "</span>,"
        ' <span title="champion 0.8451 against previous 0.8500, difference -0.0049, interval [-0.0249,'
        ' +0.0151]; not fired, tolerance 0.01 (gates.alert_metrics.max_regression)">roc_auc no difference'
        " (tolerance 0.01)</span></span>"
        ' <span class="badge busy">rollback</span>'
    )


def test_the_watch_rule_says_how_a_promotion_judged_on_an_alerts_metrics_is_watched() -> None:
    raw = example_spec("churn", "data")
    raw["gates"]["alert_metrics"] = {"max_regression": 0.02}
    raw["monitoring"]["watch"] = {"margin": 0.005}
    plain = example_spec("churn", "data")
    plain["gates"]["alert_metrics"] = {"enabled": False}

    said = pages.watch_rule(PipelineSpec.model_validate(raw))

    assert said.endswith(
        " by more than 0.005 with 95% confidence; one its gate judged on the metrics of the monitor's"
        " alert, when worse on any of those by more than 0.005, or on roc_auc (unless it fired) by more"
        " than 0.02"
    )
    assert pages.watch_rule(PipelineSpec.model_validate(plain)).endswith("by more than 0 with 95% confidence")


def test_every_page_forbids_scripts_and_framing_by_other_sites() -> None:
    response = page("t", "<p>x</p>", home="/ctloop/", airflow="/", user=HOSTILE)
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert "script-src" not in PAGE_CSP
    assert "default-src 'none'" in PAGE_CSP
    assert "frame-ancestors 'self'" in PAGE_CSP
    assert HOSTILE not in response.body.decode()


def test_the_triggers_name_the_severe_drop_that_retrains_at_once() -> None:
    assert pages.triggers(SPEC) == (
        "drift share at least 0.3, or any of tenure_months drifts; roc_auc more than 0.05, accuracy more"
        " than 0.04 or brier more than 0.03 worse than the champion's holdout with 95% confidence"
        " (3 x that retrains at once); label shift: the label rate or class mix moves more than 0.05"
        " with 99% confidence; an estimated roc_auc, accuracy or f1 more than 0.05 below the champion's"
        " holdout with 95% confidence, before labels, is reported and decides nothing"
        " (monitoring.estimate.decide is false)"
    )


def test_the_triggers_say_when_the_estimate_decides_and_leave_out_what_is_off() -> None:
    raw = example_spec("churn", "data")
    raw["monitoring"] |= {"label_shift": {"enabled": False}, "estimate": {"decide": True, "metrics": ["f1"]}}

    said = pages.triggers(PipelineSpec.model_validate(raw))

    assert "label shift" not in said
    assert said.endswith(
        "; an estimated f1 more than 0.05 below the champion's holdout with 95% confidence, before labels,"
        " alerts"
    )


def test_the_history_shows_each_quality_rules_verdict() -> None:
    rules = [
        {"metric": "roc_auc", "value": 0.85, "reference": 0.87, "interval": [0.83, 0.87], "verdict": "ok"},
        {
            "metric": "accuracy",
            "value": 0.79,
            "reference": 0.89,
            "interval": [0.77, 0.81],
            "verdict": "alert",
        },
        {"metric": "brier", "value": 0.2, "reference": None, "interval": None, "verdict": "undecided"},
    ]
    decisions = [
        {
            "run_key": "churn__monitor/r1",
            "at": "2026-01-01T00:00:00+00:00",
            "action": "retrain",
            "why": "confirmed alert: retraining",
            "champion_version": "1",
            "quality": 0.85,
            "quality_rules": rules,
        },
        {  # recorded before the rules were kept
            "run_key": "churn__monitor/r0",
            "at": "2025-12-31T00:00:00+00:00",
            "action": "hold",
            "why": "no trigger crossed",
            "champion_version": "1",
            "quality": 0.86,
        },
    ]
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
    html = pages.history(URLS, SPEC, decisions, MOVES, policy)
    assert "<th>quality rules</th>" in html
    row = html[html.index("churn__monitor/r1") if "churn__monitor/r1" in html else html.index("r1") :]
    cell = row[row.index('<span class="small">roc_auc</span>') :]
    assert '<span class="badge good">ok</span>' in cell
    assert (
        '<span class="small">accuracy</span> <span title="0.7900 against 0.8900, interval [0.7700, 0.8100]">'
        in cell
    )
    assert '<span class="badge bad">alert</span>' in cell
    assert '<span class="badge ">undecided</span>' in cell


def test_the_history_shows_what_label_shift_and_the_estimate_said() -> None:
    shift = {
        "enabled": True,
        "verdict": "alert",
        "decides": True,
        "signals": [
            {"name": "label_rate", "value": 0.54, "reference": 0.65, "threshold": 0.05, "shift": 0.11,
             "p_value": 2e-12, "verdict": "alert"},
            {"name": "predicted_rate", "value": 0.02, "reference": 0.01, "threshold": 0.05, "shift": 0.01,
             "p_value": 0.4, "verdict": "ok"},
        ],
    }  # fmt: skip
    estimate = {
        "enabled": True,
        "verdict": "ok",
        "decides": False,
        "signals": [
            {"name": "accuracy", "value": 0.88, "reference": 0.89, "interval": [0.868, 0.892], "judged": True,
             "verdict": "ok"},
            {"name": "precision", "value": 0.7, "reference": 0.89, "interval": [0.68, 0.72], "judged": False,
             "verdict": "alert"},
        ],
    }  # fmt: skip
    at = "2026-01-0{}T00:00:00+00:00"
    decisions = [
        {"run_key": "churn__monitor/r0", "at": at.format(1), "action": "hold", "why": "before label shift"},
        {"run_key": "churn__monitor/r1", "at": at.format(2), "action": "hold", "why": "turned off",
         "label_shift": {"enabled": False, "verdict": "ok", "decides": True, "signals": []}},
        {"run_key": "churn__monitor/r2", "at": at.format(3), "action": "retrain", "why": "label shift",
         "label_shift": shift, "estimate": estimate},
    ]  # fmt: skip
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)

    html = pages.history(URLS, SPEC, decisions, MOVES, policy)

    assert "<th>label shift, estimate</th>" in html
    rows = {key: row for row in html.split("<tr>") for key in ("r0", "r1", "r2") if f">{key}</a>" in row}
    cells = {key: row.split("</td>")[6].strip() for key, row in rows.items()}  # after quality rules
    assert cells["r0"] == "<td>"  # a run from before: nothing
    assert cells["r1"] == '<td><span class="small">label shift</span> <span class="small muted">off</span>'
    fired = cells["r2"]
    assert (
        '<span class="small">label shift</span> <span title="label_rate: alert (0.5400 against 0.6500, shift'
        " 0.110 (max 0.050), p=2e-12); predicted_rate: ok (0.0200 against 0.0100, shift 0.010 (max 0.050),"
        ' p=0.4)"><span class="badge bad">alert</span></span> <span class="small">label_rate</span><br>'
    ) in fired
    assert (
        '<span class="small">estimate</span> <span title="accuracy: ok (0.8800 against 0.8900, interval'
        ' [0.8680, 0.8920]); precision: alert (0.7000 against 0.8900, interval [0.6800, 0.7200])">'
        '<span class="badge good">ok</span></span> <span class="small muted">informs only</span>'
    ) in fired
