"""The response around every plugin page: ``ui/layout.html`` and the headers that keep it inert.

Pages are rendered by :mod:`ctloop.ui.pages` from the templates in ``ctloop/templates/ui`` through
the one environment of :mod:`ctloop.rendering`, which escapes every value; the pages carry no
script, and their CSP (:data:`PAGE_CSP`) would refuse one.
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from ctloop.rendering import render

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)


def page(
    title: str, body: str, *, home: str, airflow: str, user: str, status_code: int = 200
) -> HTMLResponse:
    """The layout around a page's ``body`` (markup from :mod:`ctloop.ui.pages`; a plain ``str``
    is escaped), with a bar with the way back to Airflow and who is logged in."""
    document = render("ui/layout.html", title=title, body=body, home=home, airflow=airflow, user=user)
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
