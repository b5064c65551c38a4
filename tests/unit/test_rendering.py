"""The one Jinja2 environment: it escapes in every template, refuses undefined variables, and its
filters escape what they put inside the markup they build."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import jinja2
import pytest
from markupsafe import Markup

from ctloop.rendering import DASH, badge, difference, environment, fragment, number, render, web_url, when

HOSTILE = '<script>alert("x")</script>'
OPT_OUTS = re.compile(r"\|\s*safe\b|autoescape\s+false|\bMarkup\b")


def test_every_template_is_autoescaped_and_none_opts_out() -> None:
    env = environment()
    names = env.list_templates()
    assert "model_card.html" in names
    assert "ui/layout.html" in names
    for name in names:
        policy = env.autoescape(name) if callable(env.autoescape) else env.autoescape
        assert policy is True, name
        source = env.loader.get_source(env, name)[0]
        assert not OPT_OUTS.search(source), name


def test_values_are_escaped_and_markup_is_not_escaped_twice() -> None:
    template = environment().from_string("<p title='{{ value }}'>{{ value }}</p>{{ piece }}")
    page = template.render(
        value=HOSTILE + "'", piece=fragment("ui/error.html", status_code=1, detail="x", login=None)
    )
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "&#39;" in page  # a quote cannot end the attribute
    assert "<h1>1</h1>" in page


def test_an_undefined_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ missing }}").render()
    with pytest.raises(jinja2.UndefinedError):
        render("validation.html", title="no report")
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ row.missing }}").render(row={})


def test_none_prints_as_nothing() -> None:
    assert environment().from_string("[{{ value }}]").render(value=None) == "[]"


def test_render_gives_plain_text_and_fragment_gives_markup() -> None:
    """The banner is concatenated with Evidently's page: Markup would escape that page."""
    page = render("ui/error.html", status_code=404, detail=HOSTILE, login=None)
    assert type(page) is str
    assert ("<body>" + page).startswith("<body>")  # Markup would have escaped the "<body>"
    assert isinstance(fragment("ui/error.html", status_code=404, detail="x", login=None), Markup)


def test_numbers_are_counts_or_measures_and_missing_is_a_dash() -> None:
    assert number(12000) == "12,000"
    assert number(0.81234) == "0.8123"
    assert number(0.81234, 2) == "0.81"
    assert number(None) == DASH
    assert number(float("nan")) == DASH
    assert number("") == DASH
    assert number(True) == "True"
    assert number(HOSTILE) == HOSTILE  # text is escaped by the template that prints it
    assert environment().from_string("{{ v|number }}").render(v=HOSTILE) == (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    )


def test_a_difference_is_signed_and_needs_two_numbers() -> None:
    assert difference(0.41, 0.43) == "-0.0200"
    assert difference(3, 1) == "+2.0000"
    assert difference(0.5, None) == DASH
    assert difference(True, 0.1) == DASH


def test_times_are_shown_in_utc_with_the_exact_time_as_tooltip() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert when(local) == '<span title="2026-01-02T03:04:05+00:00">2026-01-02 03:04:05</span>'
    assert when("2026-01-02T03:04:05+00:00") == when(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert when(None) == DASH
    assert when("") == DASH


def test_a_badge_is_coloured_by_its_status_or_its_kind_and_escapes_its_label() -> None:
    assert badge("success") == '<span class="badge good">success</span>'
    assert badge("failed") == '<span class="badge bad">failed</span>'
    assert badge("running") == '<span class="badge busy">running</span>'
    assert badge(None) == '<span class="badge ">none</span>'
    assert badge("FAIL", "fail") == '<span class="badge fail">FAIL</span>'
    assert badge(HOSTILE, '"><script>') == (
        '<span class="badge &#34;&gt;&lt;script&gt;">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</span>'
    )


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        " JavaScript:alert(2)",
        "java\tscript:alert(3)",
        "data:text/html,x",
        "s3://b/k",
        "/a/b",
    ],
)
def test_only_http_urls_are_links(value: str) -> None:
    assert web_url(value) is None


def test_http_urls_are_links() -> None:
    assert web_url(" https://example.com/r.html ") == "https://example.com/r.html"
    assert web_url(None) is None


def test_jinja_is_not_imported_until_a_page_is_rendered() -> None:
    """DAG files import the core; the environment is built on the first render, in a task or the UI."""
    code = "import sys, ctloop.rendering; print('jinja2' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"
