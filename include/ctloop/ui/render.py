"""HTML building blocks of the plugin's pages: one layout, tables, badges, times and numbers.

Every value that reaches a page goes through :func:`esc` (or a helper that calls it); the pages
carry no script, and their CSP (:data:`PAGE_CSP`) would refuse one.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import HTMLResponse

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
GOOD = ("success", "promotion", "hold", "closed")
BAD = ("failed", "upstream_failed", "breaker_open", "override")
BUSY = ("running", "queued", "retrain", "attach", "rollback", "open")

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
line-height:1.45;background:#fff}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.5rem;background:#0d1117;color:#f0f6fc}
header a{color:#f0f6fc;text-decoration:none}header .brand{font-weight:700;font-size:1.1rem}
header .user{margin-left:auto;color:#9198a1;font-size:.9rem}
main{padding:1rem 1.5rem 3rem;max-width:90rem}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0969da}.muted{color:#656d76}.small{font-size:.82rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:.7rem;font-size:.8rem;font-weight:600;
background:#eaeef2;color:#424a53;white-space:nowrap}
.good{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}
.busy{background:#ddf4ff;color:#0a3069}
.tabs a{margin-right:1rem}.notice{padding:.6rem .9rem;border-radius:.4rem;background:#ddf4ff;margin:.8rem 0}
.warning{background:#fff8c5}.error{background:#ffebe9}
form.inline{display:inline}button{font:inherit;padding:.25rem .8rem;border-radius:.4rem;
border:1px solid #d0d7de;background:#f6f8fa;cursor:pointer}button.danger{background:#cf222e;color:#fff;
border-color:#a40e26}textarea{width:100%;max-width:40rem;font:inherit}
iframe.report{width:100%;height:85vh;border:1px solid #d0d7de}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
svg text{font-family:inherit}code{font-size:.85em;word-break:break-all}summary{cursor:pointer}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def badge(value: Any) -> str:
    text = "" if value is None else str(value)
    kind = "good" if text in GOOD else "bad" if text in BAD else "busy" if text in BUSY else ""
    return f'<span class="badge {kind}">{esc(text or "none")}</span>'


def when(value: datetime | str | None) -> str:
    """A time in UTC, to the second."""
    if value is None or value == "":
        return '<span class="muted">—</span>'
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f'<span title="{esc(moment.isoformat())}">{moment:%Y-%m-%d %H:%M:%S}</span>'


def number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span class="muted">—</span>'
    return f"{float(value):.{digits}f}"


def table(headers: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """Cells are HTML already (built with the helpers above)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">nothing yet</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(
    title: str, body: str, *, home: str, airflow: str, user: str, status_code: int = 200
) -> HTMLResponse:
    """The layout around every page: a bar with the way back to Airflow and who is logged in."""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · ctloop</title><style>{_STYLE}</style></head><body>"
        f'<header><a class="brand" href="{esc(home)}">ctloop</a>'
        f'<a href="{esc(airflow or "/")}">Airflow</a>'
        f'<span class="user">{esc(user)}</span></header>'
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(
        document,
        status_code=status_code,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "private, no-store",
        },
    )
