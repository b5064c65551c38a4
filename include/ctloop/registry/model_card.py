"""The model card: one readable HTML page per registered model version, logged beside the model.

It answers a reviewer's questions without MLflow's UI: what data, which checks, how it compared
with the champion overall and per slice, why the gate decided as it did, what started the run
and who approved it. Values come from data and from people (reasons, slice labels, comments), so
every one is escaped; the page has no script and loads nothing, and its CSP forbids both.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_PATH = "model_card.html"
NOT_RECORDED = "not recorded"
DASH = "—"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:64rem;
color:#1f2328;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
code{font-size:.88em;word-break:break-all}.muted,.none{color:#656d76}.none{font-style:italic}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;font-weight:600;font-size:.85rem}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}
.skip{background:#eaeef2;color:#424a53}.warn{background:#fff8c5;color:#7d4e00}
tr.fail td{background:#fff5f5}
"""
# No scripts, no fetches, no frames: only the inline style above may apply.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _text(value: Any) -> str:
    """Any value as escaped text; a missing one as a dash."""
    if value is None or value == "":
        return f"<span class='muted'>{DASH}</span>"
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    """Counts with thousands separators, metrics to four decimals, anything else as text."""
    if isinstance(value, bool) or value is None:
        return _text(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else html.escape(str(value))
    return _text(value)


def _difference(candidate: Any, champion: Any) -> str:
    """Candidate minus champion, signed; a dash when either is not a number."""
    numbers = [v for v in (candidate, champion) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != 2:
        return _text(None)
    return f"{candidate - champion:+.4f}"


def _uri(value: Any) -> str:
    """An http(s) URI as a link; anything else (s3://, file paths, ``javascript:``) as text."""
    if value is None or value == "":
        return _text(None)
    parts = urlsplit(str(value).strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        href = html.escape(parts.geturl(), quote=True)
        return f"<a href='{href}' rel='noopener noreferrer'>{html.escape(str(value))}</a>"
    return f"<code>{html.escape(str(value))}</code>"


def _badge(label: str, kind: str) -> str:
    return f"<span class='badge {kind}'>{html.escape(label)}</span>"


def _verdict(passed: Any) -> str:
    """pass / FAIL / skipped, as the gate reports a rule (``None`` means it did not apply)."""
    if passed is True:
        return _badge("pass", "pass")
    if passed is False:
        return _badge("FAIL", "fail")
    return _badge("skipped", "skip")


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _definitions(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are already rendered HTML."""
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _section(title: str, body: str | None) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body or _none()}</section>"


def _none() -> str:
    return f"<p class='none'>{NOT_RECORDED}</p>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _status(card: dict) -> str:
    """The outcome a reader looks for first: the promotion action, else the gate's verdict."""
    action = _mapping(card.get("promotion")).get("action")
    gate = _mapping(card.get("gate"))
    if action:
        lowered = str(action).lower()
        kind = "pass" if lowered.startswith("promot") else "warn"
        if any(word in lowered for word in ("reject", "fail", "timed_out")):
            kind = "fail"
        return _badge(str(action), kind)
    if gate.get("passed") is False:
        return _badge("gate failed", "fail")
    if gate.get("passed") is True:
        return _badge("gate passed", "pass")
    return _badge(NOT_RECORDED, "skip")


def _header(card: dict) -> str:
    title = f"{card.get('pipeline')} version {card.get('version')}"
    details = _definitions(
        [
            ("Status", _status(card)),
            ("Created", _text(card.get("created_at"))),
            ("Model", _uri(card.get("model_uri"))),
            ("Model sha256", f"<code>{_text(card.get('model_sha256'))}</code>"),
        ]
    )
    return f"<header><h1>Model card: {html.escape(title)}</h1>{details}</header>"


def _data(card: dict) -> str | None:
    data = _mapping(card.get("data"))
    if not data:
        return None
    return _definitions(
        [
            ("Snapshot", _uri(data.get("uri"))),
            ("sha256", f"<code>{_text(data.get('sha256'))}</code>"),
            ("Rows", _number(data.get("rows"))),
        ]
    )


def _validation(card: dict) -> str | None:
    validation = _mapping(card.get("validation"))
    if not validation:
        return None
    success = validation.get("success")
    verdict = {True: _badge("passed", "pass"), False: _badge("FAILED", "fail")}.get(
        success, _badge(NOT_RECORDED, "skip")
    )
    return _definitions(
        [
            ("Result", verdict),
            ("Expectations evaluated", _number(validation.get("evaluated"))),
            ("Failed", _number(validation.get("failed"))),
            ("Full result", _uri(validation.get("result_uri"))),
        ]
    )


def _metrics(card: dict) -> str | None:
    metrics = _mapping(card.get("metrics"))
    candidate = _mapping(metrics.get("candidate"))
    champion = _mapping(metrics.get("champion"))
    names = [*candidate, *(m for m in champion if m not in candidate)]
    if not names:
        return None
    against = card.get("champion_version")
    champion_header = f"champion (version {against})" if against else "champion"
    rows = [
        f"<tr><td>{_text(name)}</td><td class='num'>{_number(candidate.get(name))}</td>"
        f"<td class='num'>{_number(champion.get(name))}</td>"
        f"<td class='num'>{_difference(candidate.get(name), champion.get(name))}</td></tr>"
        for name in names
    ]
    note = "" if champion else "<p class='muted'>No champion to compare with.</p>"
    return _table(["metric", "candidate", champion_header, "difference (candidate − champion)"], rows) + note


def _slice_cell(candidate: Any, champion: Any) -> str:
    """The candidate's value, and under it the champion's and the difference when there is one."""
    if champion is None:
        return f"{_number(candidate)}<br><span class='muted'>no champion</span>"
    return (
        f"{_number(candidate)}<br><span class='muted'>"
        f"{_number(champion)} · {_difference(candidate, champion)}</span>"
    )


def _slices(card: dict) -> str | None:
    slices = [s for s in card.get("slices") or [] if isinstance(s, dict)]
    if not slices:
        return None
    names: list[str] = []
    for item in slices:
        for metrics in (_mapping(item.get("candidate")), _mapping(item.get("champion"))):
            names += [m for m in metrics if m not in names]
    rows = []
    for item in slices:
        candidate, champion = _mapping(item.get("candidate")), _mapping(item.get("champion"))
        cells = "".join(
            f"<td class='num'>{_slice_cell(candidate.get(m), champion.get(m))}</td>" for m in names
        )
        judged = item.get("judged")
        if judged is True:
            judgement = _badge("judged", "pass")
        else:
            why = item.get("why_not_judged")
            judgement = _badge("not judged", "skip") + (f"<br>{_text(why)}" if why else "")
        rows.append(
            f"<tr><td>{_text(item.get('slice'))}</td><td>{_text(item.get('column'))}</td>"
            f"<td class='num'>{_number(item.get('rows'))}</td>{cells}<td>{judgement}</td></tr>"
        )
    return "<p class='muted'>Each metric cell: candidate, then champion · difference.</p>" + _table(
        ["slice", "column", "rows", *names, "judged"], rows
    )


def _rule_row(rule: dict) -> str:
    """One gate rule; a failed rule's whole row is marked, so it stands out in a long table."""
    opening = "<tr class='fail'>" if rule.get("passed") is False else "<tr>"
    return (
        f"{opening}<td>{_text(rule.get('rule'))}</td><td>{_text(rule.get('metric'))}</td>"
        f"<td>{_text(rule.get('kind'))}</td><td class='num'>{_number(rule.get('value'))}</td>"
        f"<td class='num'>{_number(rule.get('bound'))}</td><td>{_verdict(rule.get('passed'))}</td>"
        f"<td>{_text(rule.get('note'))}</td></tr>"
    )


def _gate(card: dict) -> str | None:
    gate = _mapping(card.get("gate"))
    if not gate:
        return None
    mode = gate.get("mode")
    passed = gate.get("passed")
    verdict = {True: _badge("passed", "pass"), False: _badge("FAILED", "fail")}.get(
        passed, _badge(NOT_RECORDED, "skip")
    )
    mode_text = _text(mode) + (" (decision recorded, never promotes)" if mode == "dry_run" else "")
    body = _definitions([("Mode", mode_text), ("Verdict", verdict), ("Summary", _text(gate.get("summary")))])
    rules = [r for r in gate.get("rules") or [] if isinstance(r, dict)]
    if rules:
        body += _table(
            ["rule", "metric", "kind", "value", "bound", "verdict", "note"], [_rule_row(r) for r in rules]
        )
    return body


def _lineage(card: dict) -> str | None:
    lineage = _mapping(card.get("lineage"))
    if not lineage:
        return None
    reports = [r for r in lineage.get("reports") or [] if r]
    listed = "<ul>" + "".join(f"<li>{_uri(r)}</li>" for r in reports) + "</ul>" if reports else _text(None)
    return _definitions(
        [
            ("Trigger", _text(lineage.get("trigger"))),
            ("Reason", _text(lineage.get("reason"))),
            ("Alert", _text(lineage.get("alert_id"))),
            ("Retrain request", _text(lineage.get("request_id"))),
            ("Reports that started it", listed),
            ("Airflow run", _text(lineage.get("dag_run_id"))),
            ("MLflow run", _text(lineage.get("mlflow_run_id"))),
            ("Code version", _text(lineage.get("code_version"))),
        ]
    )


def _approval(card: dict) -> str | None:
    approval = _mapping(card.get("approval"))
    if not approval:
        return None
    outcome = approval.get("outcome")
    kind = {"approved": "pass", "rejected": "fail", "timed_out": "fail", "pending": "warn"}.get(
        outcome, "skip"
    )
    required = approval.get("required")
    return _definitions(
        [
            ("Required", _text({True: "yes", False: "no"}.get(required, required))),
            ("Outcome", _badge(str(outcome), kind) if outcome else _text(None)),
            ("By", _text(approval.get("by"))),
            ("At", _text(approval.get("at"))),
            ("Comment", _text(approval.get("comment"))),
        ]
    )


def _promotion(card: dict) -> str | None:
    promotion = _mapping(card.get("promotion"))
    if not promotion:
        return None
    previous = promotion.get("previous")
    return _definitions(
        [
            ("Action", _text(promotion.get("action"))),
            ("Previous champion", _text(f"version {previous}" if previous else "none")),
        ]
    )


def render_model_card(card: dict) -> str:
    """A self-contained HTML page for one model version; missing parts read "not recorded"."""
    title = f"Model card: {card.get('pipeline')} version {card.get('version')}"
    sections = [
        _section("Data", _data(card)),
        _section("Validation", _validation(card)),
        _section("Metrics on the shared holdout", _metrics(card)),
        _section("Slices", _slices(card)),
        _section("Promotion gate", _gate(card)),
        _section("Lineage", _lineage(card)),
        _section("Approval", _approval(card)),
        _section("Promotion", _promotion(card)),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + _header(card)
        + "".join(sections)
        + "</body></html>"
    )


def log_model_card(mlflow_client: MlflowClient, run_id: str, html: str) -> str:
    """Log the card as the run's ``model_card.html`` artifact; returns that artifact path.

    Logging again in a retried task overwrites the same artifact, so the run keeps one card.
    """
    mlflow_client.log_text(run_id, html, ARTIFACT_PATH)
    return ARTIFACT_PATH
