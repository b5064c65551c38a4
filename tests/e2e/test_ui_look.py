"""The plugin's look in Chromium, light and dark: Airflow's colours where Airflow has them, and text
that people can read (WCAG contrast >= 4.5:1) for body text, links, badges, notices and buttons.

A page is rendered through :func:`ctloop.ui.render.page` (the layout every plugin page gets) around
made-up content with every class the pages use, so no Airflow server is needed; the browser
follows the colour scheme of its context, as it would follow the OS. Screenshots go to
``test-artifacts/ui/look-light.png`` and ``look-dark.png``; the report headline and monitor runs
with every kind of signal, rendered by the plugin's own pages, to ``signals-light.png`` and
``signals-dark.png``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from markupsafe import Markup

from ctloop.rendering import badge
from ctloop.ui.render import page
from tests.airflow_theme import SCHEMES, airflow_theme

BODY = Markup("""<h1>churn</h1>
<p class="tabs"><a href="#m">Monitoring</a><a href="#l">Promotion ledger</a>
<span class="muted">Airflow DAGs:</span> <a href="#t">train</a> <a href="#r">rollback</a></p>
<div class="notice">Retrain started: run <a href="#run">manual__2026-01-01</a> {queued}.</div>
<div class="notice warning">churn__rollback is paused: the run waits until it is unpaused.</div>
<div class="notice error">You may not trigger churn__train.</div>
<p id="text">Champion now: <strong>v3</strong>, promoted by alice; see the <a href="#ledger">ledger</a>.</p>
<p class="small muted">Frozen and recent holdout: measured when the model was trained.</p>
<h2>Serving and waiting</h2>
<table><thead><tr><th>model</th><th>version</th><th>roc_auc</th><th>state</th></tr></thead><tbody>
<tr><td>champion<div class="small muted">since 2026-01-01 10:00:00</div></td><td><a href="#v3">v3</a></td>
<td class="num">0.8123</td><td>{success}</td></tr>
<tr><td>challenger</td><td><a href="#v4">v4</a></td><td class="num">0.8301</td><td>{running}</td></tr>
<tr><td>rejected</td><td><a href="#v5">v5</a></td><td class="num">0.7012</td><td>{failed}</td></tr>
<tr><td>request <code>req-1</code></td><td class="muted">none</td><td class="num">1,204</td>
<td>{neutral}</td></tr>
</tbody></table>
<dl><dt>drift share</dt><dd>0.381 <span class="badge bad">alert</span> {hold}</dd></dl>
<form method="post" action="#"><p><label for="reason"><strong>Reason</strong> (required)</label><br>
<textarea id="reason" name="reason" rows="2"></textarea></p>
<p><button type="submit">Retrain</button> <button class="danger" type="submit">Roll back</button></p></form>
<details><summary>2 URIs</summary><code>runs:/abc/model</code></details>
<iframe class="report" srcdoc="&lt;p&gt;Evidently&lt;/p&gt;" title="report"></iframe>""").format(
    queued=badge("queued"),
    success=badge("success"),
    running=badge("running"),
    failed=badge("failed"),
    neutral=badge("cooldown"),
    hold=badge("hold"),
)
TEXT = [
    "#text",
    "#text a",
    ".tabs a",
    ".tabs .muted",
    ".small.muted",
    "h1",
    "h2",
    "th",
    "td",
    "td a",
    "td.muted",
    "code",
    "dt",
    "summary",
    "label",
    "header .brand",
    "header a:not(.brand)",
    "header .user",
    ".badge",
    ".notice",
    ".notice a",
    "button",
]
"""Every element these select has text that must read at 4.5:1 on what is behind it."""
AIRFLOW = [
    ("body", "backgroundColor", "bg"),
    ("body", "color", "fg"),
    ("header", "backgroundColor", "brand.muted"),
    ("header .brand", "backgroundColor", "brand.solid"),
    ("#text a", "color", "fg.info"),
    (".small.muted", "color", "fg.muted"),
    ("th", "borderBottomColor", "border"),
    (".badge.good", "backgroundColor", "success.subtle"),
    (".badge.good", "color", "success.fg"),
    (".badge.bad", "backgroundColor", "failed.subtle"),
    (".badge.busy", "backgroundColor", "running.subtle"),
    ("button:not(.danger)", "backgroundColor", "brand.solid"),
    ("button.danger", "backgroundColor", "danger.solid"),
]
"""(element, style property, Airflow's token it must show)."""
CHART = [
    *("drift", "quality", "retrain", "promotion", "rollback", "override", "threshold"),
    *("champion", "previous", "challenger", "text", "title"),
]
"""The chart colours that draw lines and labels: 4.5:1 on the chart panel and on the page."""

SRGB = """colours => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    const context = canvas.getContext("2d", {willReadFrequently: true});
    return colours.map(colour => {
        context.clearRect(0, 0, 1, 1);
        context.fillStyle = "rgba(0, 0, 0, 0)";
        context.fillStyle = colour;
        context.fillRect(0, 0, 1, 1);
        return Array.from(context.getImageData(0, 0, 1, 1).data);
    });
}"""
"""CSS colours (oklch(), rgb(), #hex …) as the browser paints them in sRGB: [r, g, b, alpha]."""
PAIRS = """selectors => selectors.flatMap(selector => Array.from(
    document.querySelectorAll(selector), element => {
    let behind = element, background = "rgba(0, 0, 0, 0)";
    while (behind) {
        background = getComputedStyle(behind).backgroundColor;
        if (background !== "rgba(0, 0, 0, 0)" && background !== "transparent") break;
        behind = behind.parentElement;
    }
    return [selector, element.textContent.trim().slice(0, 30), getComputedStyle(element).color, background];
}))"""
"""Each selected element's text colour and the first background behind it."""


def _luminance(rgba: list[int]) -> float:
    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in rgba[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: list[int], second: list[int]) -> float:
    """WCAG 2 contrast ratio of two opaque sRGB colours."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_is_the_wcag_ratio() -> None:
    assert contrast([0, 0, 0, 255], [255, 255, 255, 255]) == pytest.approx(21)
    assert contrast([118, 118, 118, 255], [255, 255, 255, 255]) == pytest.approx(4.54, abs=0.01)


@pytest.fixture(params=SCHEMES)
def shown(request: pytest.FixtureRequest, browser, artifacts) -> Iterator[tuple[str, object]]:
    """The page in a browser whose colour scheme is ``light`` or ``dark``, then its screenshot."""
    scheme = request.param
    html = page("churn", BODY, home="/ctloop/", airflow="/", user="alice").body.decode()
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_content(html)
    yield scheme, tab
    tab.screenshot(path=str(artifacts / f"look-{scheme}.png"), full_page=True)
    context.close()


def test_colours_are_airflows_tokens(shown) -> None:
    scheme, tab = shown
    theme = airflow_theme()
    shown_colours = [
        tab.eval_on_selector(selector, f"element => getComputedStyle(element).{prop}")
        for selector, prop, _ in AIRFLOW
    ]
    expected = [theme.colour(token, scheme) for _, _, token in AIRFLOW]
    painted = tab.evaluate(SRGB, shown_colours + expected)
    wrong = [
        f"{selector} {prop} is {colour}, Airflow's {token} in {scheme} is {want}"
        for (selector, prop, token), colour, want, got, airflow in zip(
            AIRFLOW, shown_colours, expected, painted[: len(AIRFLOW)], painted[len(AIRFLOW) :], strict=True
        )
        if got != airflow
    ]
    assert not wrong, "\n".join(wrong)
    assert tab.evaluate("getComputedStyle(document.body).fontFamily").startswith("Inter,")


def test_text_reads_at_four_and_a_half_to_one(shown) -> None:
    scheme, tab = shown
    pairs = tab.evaluate(PAIRS, TEXT)
    assert {selector for selector, *_ in pairs} == set(TEXT)  # every selector found something
    painted = tab.evaluate(SRGB, [colour for *_, text, background in pairs for colour in (text, background)])
    low = [
        f"{selector} {text!r}: {colour} on {background} is {ratio:.2f}:1 in {scheme}"
        for (selector, text, colour, background), fore, back in zip(
            pairs, painted[::2], painted[1::2], strict=True
        )
        if (ratio := contrast(fore, back)) < 4.5
    ]
    assert not low, "\n".join(low)


def test_chart_colours_read_on_the_panel_and_the_page(shown) -> None:
    scheme, tab = shown
    names = [f"--ct-chart-{name}" for name in CHART] + ["--ct-chart-panel", "--ct-bg"]
    values = tab.evaluate(
        "names => names.map(name => getComputedStyle(document.documentElement).getPropertyValue(name))",
        names,
    )
    values = [value.strip() for value in values]
    assert all(values), dict(zip(names, values, strict=True))
    *lines, panel, page_bg = tab.evaluate(SRGB, values)
    low = [
        f"{name} {value} on {ground} is {ratio:.2f}:1 in {scheme}"
        for name, value, colour in zip(names, values, lines, strict=False)
        for ground, behind in (("panel", panel), ("page", page_bg))
        if (ratio := contrast(colour, behind)) < 4.5
    ]
    assert not low, "\n".join(low)


def test_reports_stay_on_a_light_page(shown) -> None:
    """The Evidently report and the model card are documents of their own, always light: their
    frame is white in dark mode too, not a dark hole around a light page."""
    _, tab = shown
    background = tab.eval_on_selector("iframe.report", "element => getComputedStyle(element).backgroundColor")
    assert tab.evaluate(SRGB, [background]) == [[255, 255, 255, 255]]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_signal_of_a_monitor_run_reads_and_fits_the_page(browser, artifacts, scheme: str) -> None:
    """The report page's headline with every kind of signal (quality rule, label shift, estimate
    with its note) and the monitor runs with their signal columns: text at 4.5:1 on the notice and
    the striped rows, and nothing wider than a 1200-pixel window."""
    from ctloop.ui import pages
    from ctloop.ui.state import PolicyState
    from tests.unit.ui.test_pages import MOVES
    from tests.unit.ui.test_report_page import SPEC, URLS, _estimate, _label_shift, _summary

    summary = _summary() | {"label_shift": _label_shift(), "estimate": _estimate()}
    rule = {
        "metric": "accuracy",
        "value": 0.79,
        "reference": 0.89,
        "interval": [0.77, 0.81],
        "verdict": "alert",
    }
    summary["quality"]["rules"] = [rule | {"why": "0.7900 on 900 labeled rows is 0.1000 worse"}]
    decisions = [
        {
            "run_key": f"churn__monitor/scheduled__2026-01-0{day}T00:00:00+00:00",
            "at": f"2026-01-0{day}T00:00:00+00:00",
            "action": "retrain",
            "alert": True,
            "champion_version": "3",
            "drift_share": 0.12,
            "quality": 0.79,
            "why": "confirmed alert: label shift: label_rate: the rate of class 1 is 0.540 against 0.650",
            "quality_rules": [rule],
            "label_shift": summary["label_shift"],
            "estimate": summary["estimate"] | {"verdict": "undecided"},
            "report_uri": "s3://reports/r",
        }
        for day in (1, 2)
    ]
    policy = PolicyState(queued=None, cooldown_until=None, rejections=0, max_rejections=3)
    body = pages.report(URLS, SPEC, "r1", summary) + pages.history(URLS, SPEC, decisions, MOVES, policy)
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_content(page("churn", body, home="/ctloop/", airflow="/", user="alice").body.decode())
    tab.screenshot(path=str(artifacts / f"signals-{scheme}.png"), full_page=True)

    selectors = ["#decision dt", "#decision dd", "#decision .small.muted", "#decision .badge", "td .small"]
    pairs = tab.evaluate(PAIRS, selectors)
    painted = tab.evaluate(SRGB, [c for *_, text, background in pairs for c in (text, background)])
    widths = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    context.close()

    assert {selector for selector, *_ in pairs} == set(selectors)
    low = [
        f"{selector} {text!r}: {ratio:.2f}:1 in {scheme}"
        for (selector, text, *_), fore, back in zip(pairs, painted[::2], painted[1::2], strict=True)
        if (ratio := contrast(fore, back)) < 4.5
    ]
    assert not low, "\n".join(low)
    assert widths[0] <= widths[1], f"the page is {widths[0]} pixels wide in a {widths[1]}-pixel window"
