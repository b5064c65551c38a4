"""Monitor-run outputs addressed by id, and how untrusted HTML (Evidently reports, model cards)
is served.

A report is named by its pipeline (a spec that exists) and its monitor run id (Airflow's run id
alphabet); the storage key is derived from both the way the monitor derived it, so nothing from
the request is ever used as a path. Evidently embeds data values unescaped in a ``<script>``
block, so a report is only ever served under ``Content-Security-Policy: sandbox``: its scripts
(Evidently's own, and whatever a category value injected) run in an opaque origin, with no
access to Airflow's cookies, storage or pages.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from fastapi import HTTPException, status
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from ctloop.settings import Settings

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~:+-]{0,249}$")
"""Airflow's default ``allowed_run_id_pattern``, starting with a letter or digit (never ``.``)."""
REPORT, SUMMARY = "report.html", "summary.json"

# Scripts may run (Evidently renders with them) but only in an opaque origin; nothing is fetched.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
# A model card has no scripts at all; it keeps them off too.
CARD_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a monitor run id")
    return run_id


def run_prefix(pipeline: str, run_id: str) -> str:
    """The storage prefix of a ``<pipeline>__monitor`` run, as the monitor wrote it."""
    from ctloop.training.steps import RunContext

    return RunContext(dag_id=f"{pipeline}__monitor", run_id=check_run_id(run_id), reason="").storage_prefix


def read_output(settings: Settings, pipeline: str, run_id: str, name: str) -> bytes | None:
    """``report.html`` or ``summary.json`` of a monitor run; None if that run wrote none."""
    from ctloop.io.storage import home_storage

    storage = home_storage(settings)
    key = f"{run_prefix(pipeline, run_id)}/{name}"
    return storage.read_bytes(key) if storage.exists(key) else None


def read_summary(settings: Settings, pipeline: str, run_id: str) -> dict | None:
    raw = read_output(settings, pipeline, run_id, SUMMARY)
    return json.loads(raw) if raw is not None else None


def untrusted_html(body: bytes, csp: str) -> HTMLResponse:
    """HTML from data, served so that nothing in it runs in Airflow's origin."""
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, no-store",
        },
    )


def evidence_note(summary: dict) -> str | None:
    """Why the Evidently report under the decision may show other numbers, in one line; None when
    it tested the same rows with the same rules, so its headline is the decision's.

    The report runs on a seeded sample (``monitoring.report_sample_rows``) and the decision on
    every row; reports written before Evidently got the pipeline's rules used its defaults."""
    evidently = summary.get("evidently")
    if not evidently:
        return None
    dataset = evidently["drift"]["drifted_columns"]
    if "threshold" not in dataset:
        return (
            "This report predates ctloop's rules in Evidently: its headline uses Evidently's default"
            " threshold 0.5 and counts score and prediction as features; the decision above is ctloop's."
        )
    sample = evidently["sample"]
    sides = [(side, sample[side]) for side in ("reference", "current")]
    skipped = evidently["drift"].get("skipped", {})
    if all(counts["sampled"] == counts["rows"] for _, counts in sides) and not skipped:
        return None
    rows = " and ".join(f"{c['sampled']:,} of {c['rows']:,} {side}" for side, c in sides)
    untested = f"; {', '.join(skipped)} had no value in it and went untested" if skipped else ""
    return (
        f"Evidently's share {dataset['share']:.3f} comes from a seeded sample of {rows} rows"
        f" (monitoring.report_sample_rows {sample['sample_rows']:,}){untested}; the decision's"
        f" {summary['drift']['share']:.3f} from every row."
    )
