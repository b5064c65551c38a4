"""The body of each page, from data the routes gathered; only HTML here, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ctloop.ui.chart import Marker, Point, history_chart
from ctloop.ui.render import badge, esc, link, number, table, when
from ctloop.ui.state import run_id_of

if TYPE_CHECKING:
    from ctloop.registry.ledger import LedgerEntry
    from ctloop.spec.models import PipelineSpec
    from ctloop.ui.links import Urls
    from ctloop.ui.runs import Run
    from ctloop.ui.state import PolicyState

KINDS = ("train", "score", "monitor")


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline on the overview."""

    spec: PipelineSpec
    champion: LedgerEntry | None
    runs: dict[str, Run | None]
    decision: dict | None
    policy: PolicyState


def run_cell(urls: Urls, run: Run | None) -> str:
    if run is None:
        return '<span class="muted">never ran</span>'
    return (
        f"{badge(run.state)} {link(urls.dag_run(run.dag_id, run.run_id), run.run_id)}"
        f'<div class="small muted">{esc(run.run_type)} · {when(run.run_after)}</div>'
    )


def champion_cell(urls: Urls, pipeline: str, champion: LedgerEntry | None) -> str:
    if champion is None:
        return '<span class="muted">no champion yet</span>'
    return (
        f"<strong>v{esc(champion.to_version)}</strong> {badge(champion.action)}"
        f'<div class="small">since {when(champion.at)} · {link(urls.ledger(pipeline), "ledger")}</div>'
    )


def decision_cell(urls: Urls, pipeline: str, decision: dict | None) -> str:
    if decision is None:
        return '<span class="muted">not monitored yet</span>'
    run_id = run_id_of(decision.get("run_key"))
    report = link(urls.report(pipeline, run_id), "report") if run_id and decision.get("report_uri") else ""
    alert = ' <span class="badge bad">alert</span>' if decision.get("alert") else ""
    share = number(decision.get("drift_share"), 2)
    return (
        f"drift share {share}{alert} {badge(decision.get('action'))} {report}"
        f'<div class="small muted">{esc(decision.get("why"))} · {when(decision.get("at"))}</div>'
    )


def policy_cell(policy: PolicyState) -> str:
    lines = []
    if policy.queued:
        queued = policy.queued
        lines.append(
            f"retrain request {badge(queued['state'])} <code>{esc(queued['id'])}</code>"
            f" ({len(queued['reasons'])} reason(s))"
        )
    else:
        lines.append('<span class="muted">no retrain queued</span>')
    if policy.cooldown_until:
        lines.append(f"cooldown until {when(policy.cooldown_until)}")
    breaker = f"{policy.rejections} of {policy.max_rejections} rejections in a row"
    if policy.breaker_open:
        lines.append(f'<span class="badge bad">circuit breaker open</span> {breaker}')
    else:
        lines.append(f'circuit breaker closed <span class="muted small">({breaker})</span>')
    return "<br>".join(lines)


def overview(urls: Urls, rows: list[PipelineRow], invalid: list[str]) -> str:
    body = [
        "<h1>Pipelines</h1>",
        '<p class="muted">Champion from the promotion ledger, runs from Airflow, drift from the'
        " monitor's latest decision, retrain policy from the retrain requests.</p>",
    ]
    if invalid:
        body.append(
            '<div class="notice warning">Invalid pipeline specs (their DAGs are skipped; Airflow shows'
            f" the errors under Import errors): {esc(', '.join(invalid))}</div>"
        )
    body.append(
        table(
            [
                "pipeline",
                "champion",
                "last training",
                "last scoring",
                "last monitoring",
                "drift",
                "retrain policy",
            ],
            [
                [
                    f"{link(urls.pipeline(r.spec.name), r.spec.name)}"
                    f'<div class="small muted">{esc(r.spec.description)}</div>',
                    champion_cell(urls, r.spec.name, r.champion),
                    *(run_cell(urls, r.runs[f"{r.spec.name}__{kind}"]) for kind in KINDS),
                    decision_cell(urls, r.spec.name, r.decision),
                    policy_cell(r.policy),
                ]
                for r in rows
            ],
        )
    )
    return "".join(body)


def tabs(urls: Urls, pipeline: str) -> str:
    dags = " ".join(link(urls.dag(f"{pipeline}__{kind}"), kind) for kind in (*KINDS, "rollback"))
    return (
        f'<p class="tabs">{link(urls.pipeline(pipeline), "Monitoring history")}'
        f"{link(urls.ledger(pipeline), 'Promotion ledger')}"
        f'<span class="muted">Airflow DAGs:</span> {dags}</p>'
    )


def history(
    urls: Urls, spec: PipelineSpec, decisions: list[dict], moves: list[LedgerEntry], policy: PolicyState
) -> str:
    """The chart and the table of monitor runs, newest first."""
    points = [
        Point(datetime.fromisoformat(d["at"]), d.get("drift_share"), d.get("quality"), d["action"])
        for d in decisions
    ]
    markers = [
        Marker(datetime.fromisoformat(d["at"]), "retrain", "retrain")
        for d in decisions
        if d["action"] == "retrain"
    ]
    markers += [Marker(datetime.fromisoformat(m.at), m.action, f"v{m.to_version}") for m in moves]
    metric = spec.monitoring.quality.metric
    chart = history_chart(points, markers, threshold=spec.monitoring.drift.share, metric=metric)
    rows = []
    for decision in reversed(decisions):
        run_id = run_id_of(decision["run_key"]) or ""
        report = link(urls.report(spec.name, run_id), "report") if decision.get("report_uri") else ""
        alert = ' <span class="badge bad">alert</span>' if decision.get("alert") else ""
        rows.append(
            [
                when(decision["at"]),
                link(urls.dag_run(f"{spec.name}__monitor", run_id), run_id),
                f"v{esc(decision.get('champion_version'))}",
                number(decision.get("drift_share"), 3),
                number(decision.get("quality"), 4),
                badge(decision["action"]) + alert,
                f'<span class="small">{esc(decision.get("why"))}</span>',
                report,
            ]
        )
    return (
        f"<h1>{esc(spec.name)}</h1>{tabs(urls, spec.name)}"
        f"<dl><dt>champion</dt><dd>{champion_cell(urls, spec.name, moves[-1] if moves else None)}</dd>"
        f"<dt>retrain policy</dt><dd>{policy_cell(policy)}</dd>"
        f"<dt>triggers</dt><dd>{esc(triggers(spec))}</dd></dl>"
        f"<h2>Drift share and {esc(metric)} over time</h2>{chart}"
        f"<h2>Monitor runs</h2>"
        + table(
            ["at", "monitor run", "champion", "drift share", esc(metric), "decision", "why", ""],
            rows,
            numeric=(3, 4),
        )
    )


def triggers(spec: PipelineSpec) -> str:
    """What makes the monitor alert, in words."""
    drift, quality = spec.monitoring.drift, spec.monitoring.quality
    keys = f", or any of {', '.join(drift.key_features)} drifts" if drift.key_features else ""
    return (
        f"drift share at least {drift.share:g}{keys}; {quality.metric} more than {quality.max_drop:g}"
        " below the champion's holdout"
    )


def report(urls: Urls, spec: PipelineSpec, run_id: str, summary: dict | None) -> str:
    """The summary the monitor decided on, and the Evidently report in a sandboxed frame."""
    facts = ""
    if summary:
        drift, quality, decision = (
            summary.get("drift", {}),
            summary.get("quality", {}),
            summary.get("decision", {}),
        )
        drifted = ", ".join(c["column"] for c in drift.get("drifted_columns", [])) or "none"
        facts = (
            f"<dl><dt>at</dt><dd>{when(summary.get('at'))}</dd>"
            f"<dt>champion</dt><dd>v{esc(summary.get('champion_version'))}</dd>"
            f"<dt>window</dt><dd>{esc(', '.join(summary.get('window', {}).get('batches', [])))}"
            f" ({esc(summary.get('window', {}).get('rows'))} rows)</dd>"
            f"<dt>drift share</dt><dd>{number(drift.get('share'), 3)} · drifted: {esc(drifted)}</dd>"
            f"<dt>{esc(quality.get('metric'))}</dt><dd>{number(quality.get('value'), 4)} on"
            f" {esc(quality.get('labeled_rows'))} labeled rows; champion's holdout"
            f" {number(quality.get('champion_value'), 4)}</dd>"
            f"<dt>decision</dt><dd>{badge(decision.get('action'))} {esc(decision.get('why'))}</dd></dl>"
        )
    raw = urls.raw_report(spec.name, run_id)
    return (
        f"<h1>Drift report · {esc(spec.name)}</h1>{tabs(urls, spec.name)}"
        f"<p>Monitor run {link(urls.dag_run(f'{spec.name}__monitor', run_id), run_id)}</p>{facts}"
        '<p class="small muted">The report is untrusted content (Evidently writes data values into it'
        " unescaped): it runs sandboxed, in an origin of its own, without access to Airflow.</p>"
        f'<iframe class="report" sandbox="allow-scripts" referrerpolicy="no-referrer" src="{esc(raw)}"'
        f' title="Evidently report of {esc(run_id)}"></iframe>'
    )


def ledger(
    urls: Urls, spec: PipelineSpec, moves: list[LedgerEntry], *, can_rollback: bool, triggered: Run | None
) -> str:
    """Every move of ``champion``, newest first, with the evidence and the way back."""
    body = [f"<h1>Promotion ledger · {esc(spec.name)}</h1>", tabs(urls, spec.name)]
    if triggered:
        run = link(urls.dag_run(triggered.dag_id, triggered.run_id), triggered.run_id)
        body.append(
            f'<div class="notice">Rollback requested: run {run} {badge(triggered.state)}. The ledger shows'
            " the move once the run succeeds; a refusal fails the run with the reason.</div>"
        )
    current = moves[-1].to_version if moves else None
    body.append(f"<p>Champion: {champion_cell(urls, spec.name, moves[-1] if moves else None)}</p>")
    if can_rollback and current:
        body.append(
            f'<form class="inline" method="get" action="{esc(urls.rollback(spec.name))}">'
            '<input type="hidden" name="target" value="previous">'
            "<button>Roll back to the previous champion…</button></form>"
        )
    rows = []
    for move in reversed(moves):
        dag_id, _, run_id = (move.run_key or "").partition("/")
        action = ""
        if can_rollback and current and move.to_version != current:
            target = f"{urls.rollback(spec.name)}?target={esc(move.to_version)}"
            action = link(target, f"roll back to v{move.to_version}…")
        mlflow = urls.mlflow_run(move.mlflow_run_id) if move.mlflow_run_id else None
        rows.append(
            [
                esc(move.seq),
                when(move.at),
                badge(move.action),
                f"{_version(move.from_version)} → <strong>{_version(move.to_version)}</strong>",
                esc(move.user or ""),
                esc(move.reason),
                f'<span class="small">{esc(move.gate_decision)}</span>',
                esc(move.approver or ""),
                link(urls.dag_run(dag_id, run_id), move.run_key) if run_id else "",
                (link(mlflow, "run") if mlflow else "")
                + " "
                + link(urls.model_card(spec.name, move.to_version), f"model card v{move.to_version}"),
                _evidence(move.evidence),
                action,
            ]
        )
    body.append(
        table(
            [
                "#",
                "at",
                "action",
                "move",
                "by",
                "reason",
                "gate",
                "approver",
                "Airflow run",
                "MLflow",
                "evidence",
                "",
            ],
            rows,
            numeric=(0,),
        )
    )
    return "".join(body)


def _version(version: str | None) -> str:
    return f"v{esc(version)}" if version else "none"


def _evidence(evidence: dict[str, str]) -> str:
    shown = {k: v for k, v in sorted(evidence.items()) if v}
    items = "".join(f"<dt>{esc(k)}</dt><dd><code>{esc(v)}</code></dd>" for k, v in shown.items())
    return (
        f'<details><summary>{len(shown)} URIs</summary><dl class="small">{items}</dl></details>'
        if shown
        else ""
    )


def rollback_form(
    urls: Urls,
    spec: PipelineSpec,
    moves: list[LedgerEntry],
    *,
    target: str,
    csrf: str,
    can_rollback: bool,
    paused: bool | None,
) -> str:
    """The confirmation: what moves where, a required reason, and the button."""
    dag_id = f"{spec.name}__rollback"
    current = moves[-1] if moves else None
    if target == "previous":
        previous = current.from_version if current else None
        what = (
            f"the previous champion (v{esc(previous)} per the ledger)"
            if previous
            else "the previous champion"
        )
    else:
        what = f"v{esc(target)}"
    body = [
        f"<h1>Roll back {esc(spec.name)}</h1>",
        f"<p>Champion now: <strong>{'v' + esc(current.to_version) if current else 'none'}</strong>."
        f" Move it to {what}.</p>",
        f'<p class="muted small">This triggers {link(urls.dag(dag_id), dag_id)}, which refuses a target that'
        " never passed its gates unless forced, and records the move in the ledger.</p>",
    ]
    if paused is None:
        body.append(f'<div class="notice error">Airflow does not know {esc(dag_id)} (not parsed yet).</div>')
    elif paused:
        body.append(
            f'<div class="notice warning">{esc(dag_id)} is paused: the run waits until it is unpaused.</div>'
        )
    if not can_rollback:
        body.append(f'<div class="notice error">You may not trigger {esc(dag_id)}.</div>')
        return "".join(body)
    body.append(
        f'<form method="post" action="{esc(urls.rollback(spec.name))}">'
        f'<input type="hidden" name="target" value="{esc(target)}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<p><label for="reason"><strong>Reason</strong> (recorded in the ledger)</label><br>'
        '<textarea id="reason" name="reason" rows="3" required minlength="1" maxlength="2000"></textarea></p>'
        '<p><label><input type="checkbox" name="force" value="true"> Force: allow a target that never passed'
        " its gates (recorded as an override)</label></p>"
        f'<p><button class="danger" type="submit">Roll back</button> {link(urls.ledger(spec.name), "Cancel")}'
        "</p>"
        "</form>"
    )
    return "".join(body)
