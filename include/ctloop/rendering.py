"""Every HTML page ctloop writes (plugin pages, model cards, validation summaries, the drift report's
banner) comes from the templates in ``ctloop/templates`` through the one environment built here.

Values come from data and from people (category values, reasons, slice labels), so the environment
escapes everything by default and refuses an undefined variable instead of printing nothing. The
filters return :class:`~markupsafe.Markup` only for markup they build themselves, with the values
inside escaped. Jinja2 is imported when the first page is rendered, never when a DAG file is parsed.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

DASH = Markup('<span class="muted">—</span>')
"""How a missing value reads."""
STATUS_KINDS = {
    **dict.fromkeys(("success", "promotion", "hold", "closed", "better"), "good"),
    **dict.fromkeys(("failed", "upstream_failed", "breaker_open", "override", "worse"), "bad"),
    **dict.fromkeys(("running", "queued", "retrain", "attach", "rollback", "open"), "busy"),
}
"""The colour of a run state, ledger action, monitor decision or comparison verdict shown as a badge."""


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def text(value: object) -> object:
    """A value as text (escaped on output); a missing one as a dash."""
    return DASH if value is None or value == "" else value


def number(value: object, digits: int = 4) -> object:
    """Counts with thousands separators, measures to ``digits`` decimals, anything else as text."""
    if _missing(value):
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return value


def difference(candidate: object, reference: object, digits: int = 4) -> object:
    """``candidate - reference``, signed; a dash when either is not a number."""
    if _is_number(candidate) and _is_number(reference):
        return f"{candidate - reference:+.{digits}f}"
    return DASH


def when(value: datetime | str | None) -> Markup:
    """A time in UTC, to the second, with the full ISO time as its tooltip."""
    if value is None or value == "":
        return DASH
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return Markup('<span title="{}">{:%Y-%m-%d %H:%M:%S}</span>').format(moment.isoformat(), moment)


def badge(value: object, kind: str | None = None) -> Markup:
    """A label in a coloured pill; ``kind`` (a CSS class) defaults to the colour of a status word."""
    label = "" if value is None else str(value)
    if kind is None:
        kind = STATUS_KINDS.get(label, "")
    return Markup('<span class="badge {}">{}</span>').format(kind, label or "none")


def web_url(value: object) -> str | None:
    """The URL if ``value`` is an http(s) one, else None: ``javascript:``, ``data:``, s3:// and
    file paths are never links."""
    if value is None or value == "":
        return None
    parts = urlsplit(str(value).strip())
    return parts.geturl() if parts.scheme in ("http", "https") and parts.netloc else None


def _blank_none(value: object) -> object:
    """``None`` prints as nothing, not as the word "None"."""
    return "" if value is None else value


FILTERS = {
    "badge": badge,
    "difference": difference,
    "number": number,
    "text": text,
    "web_url": web_url,
    "when": when,
}


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment: package templates, autoescaping everywhere, undefined is an error."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ctloop", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_blank_none,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def render(name: str, /, **context: Any) -> str:
    """Template ``name`` rendered with ``context``: a page or a piece that is written out as is.

    A plain ``str``, not :class:`~markupsafe.Markup`: concatenated with other text (the banner
    inserted into Evidently's page), ``Markup`` would escape that text.
    """
    return environment().get_template(name).render(**context)


def fragment(name: str, /, **context: Any) -> Markup:
    """Template ``name`` rendered as markup that another template embeds without escaping it again."""
    return Markup(render(name, **context))
