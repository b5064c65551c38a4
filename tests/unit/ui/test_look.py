"""The plugin's stylesheet (``ui/layout.html``) is Airflow 3's look: every colour is a token of the
installed Airflow UI's theme, in light and in dark, and its fonts are Airflow's.

The tokens are read from Airflow's own UI bundle at test time (:mod:`tests.airflow_theme`), so an
Airflow upgrade that moves a token fails here and names the token.
"""

from __future__ import annotations

import re

import pytest

from tests.airflow_theme import SCHEMES, airflow_theme
from tests.helpers import REPO

UI = REPO / "include" / "ctloop" / "templates" / "ui"
PALETTE = re.compile(r"--ct-(white|black|[a-z]+-\d+)$")
"""A palette step (``--ct-gray-50`` is Airflow's ``gray.50``); the same in light and dark."""
FONTS = {"--ct-font-body": "body", "--ct-font-mono": "mono"}
REFERENCE = re.compile(r"var\(--ct-([\w-]+)\)")
CHART = [
    *("drift", "quality", "retrain", "promotion", "rollback", "threshold"),
    *("grid", "panel", "text", "champion"),
]
"""The colours the history charts (ctloop.ui.chart) draw with."""


def _stylesheet() -> str:
    layout = (UI / "layout.html").read_text()
    css = layout[layout.index("<style>") + len("<style>") : layout.index("</style>")]
    return re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)


def _declarations(block: str) -> dict[str, str]:
    return {name: value.strip() for name, value in re.findall(r"(--ct-[\w-]+):([^;]+)", block)}


def _schemes() -> dict[str, dict[str, str]]:
    """The variables in effect in light (``:root``) and in dark (``:root`` with the overrides of
    ``@media (prefers-color-scheme:dark)``)."""
    css = _stylesheet()
    dark_at = css.index("@media (prefers-color-scheme:dark){:root{")
    blocks = [(match.start(), match.group(1)) for match in re.finditer(r":root\{([^}]*)\}", css)]
    assert [at < dark_at for at, _ in blocks] == [True, False], "one :root for light, one for dark"
    light, dark = (_declarations(block) for _, block in blocks)
    return {"light": light, "dark": {**light, **dark}, "dark overrides": dark}


def _token(variable: str) -> str:
    """``--ct-bg-subtle`` names Airflow's ``bg.subtle``, ``--ct-brand-focus-ring`` ``brand.focusRing``."""
    group, _, key = variable.removeprefix("--ct-").partition("-")
    key = re.sub(r"-(\w)", lambda match: match.group(1).upper(), key)
    return f"{group}.{key}" if key else group


def _palette_name(value: str) -> str | None:
    match = re.fullmatch(r"var\(--ct-((?:white|black|[a-z]+-\d+))\)", value)
    return match.group(1).replace("-", ".") if match else None


def test_palette_steps_are_airflows_own_values() -> None:
    theme, light = airflow_theme(), _schemes()["light"]
    steps = {name: value for name, value in light.items() if PALETTE.match(name)}
    assert {"--ct-white", "--ct-black", "--ct-gray-50", "--ct-brand-600"} <= steps.keys()
    moved = [
        f"{name}: layout.html has {value}, Airflow's {name[5:].replace('-', '.')} is {airflow}"
        for name, value in steps.items()
        if value != (airflow := theme.palette.get(name[5:].replace("-", "."), "no such token"))
    ]
    assert not moved, "Airflow's palette moved:\n" + "\n".join(moved)


def test_every_palette_step_is_used() -> None:
    """The palette holds the steps the stylesheet uses, no more."""
    css, light = _stylesheet(), _schemes()["light"]
    used = set(REFERENCE.findall(css))
    assert [name for name in light if PALETTE.match(name) and name[5:] not in used] == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_semantic_variables_resolve_as_airflows_tokens(scheme: str) -> None:
    """``--ct-fg-muted`` is ``var(--ct-gray-600)`` in light and ``var(--ct-gray-400)`` in dark
    because Airflow's ``fg.muted`` is ``gray.600`` and ``gray.400``."""
    theme, variables = airflow_theme(), _schemes()[scheme]
    semantic = {
        name: value
        for name, value in variables.items()
        if not PALETTE.match(name) and name not in FONTS and not name.startswith("--ct-chart-")
    }
    assert {"--ct-bg", "--ct-fg", "--ct-fg-muted", "--ct-border", "--ct-success-fg"} <= semantic.keys()
    wrong = []
    for name, value in semantic.items():
        token = _token(name)
        if token not in theme.semantic:
            wrong.append(f"{name}: Airflow has no token {token}")
        elif _palette_name(value) != (airflow := theme.resolve(token, scheme)):
            wrong.append(f"{name} = {value}, but Airflow's {token} is {airflow} in {scheme}")
    assert not wrong, "\n".join(wrong)


def test_fonts_are_airflows() -> None:
    theme, light = airflow_theme(), _schemes()["light"]
    for variable, font in FONTS.items():
        assert light[variable] == theme.fonts[font], variable
    assert re.search(r"body\{[^}]*font-family:var\(--ct-font-body\)", _stylesheet())


def test_every_colour_comes_from_the_palette_variables() -> None:
    """Outside the palette steps the stylesheet names no colour of its own: rules and semantic and
    chart variables use ``var(--ct-…)`` only."""
    css = re.sub(r"--ct-(?:white|black|[a-z]+-\d+):[^;}]+", "", _stylesheet())
    literals = re.findall(
        r"#[0-9a-fA-F]{3,8}\b|\b(?:rgba?|hsla?|oklch|oklab|lab|lch|hwb)\(|(?<![\w-])(?:white|black)(?![\w-])",
        css,
    )
    assert not literals
    for name, value in _schemes()["dark"].items():
        if name.startswith("--ct-chart-"):
            assert REFERENCE.search(value), f"{name} = {value}"


def test_dark_overrides_only_what_changes_with_the_scheme() -> None:
    """The dark block redefines semantic and chart variables that exist in light (a typo there
    would go unused) and leaves palette steps and fonts alone."""
    schemes = _schemes()
    overrides = schemes["dark overrides"]
    assert overrides.keys() <= schemes["light"].keys()
    assert not [name for name in overrides if PALETTE.match(name) or name in FONTS]
    assert {"--ct-bg", "--ct-fg", "--ct-chart-drift"} <= overrides.keys()


def test_the_chart_colours_are_defined() -> None:
    defined = _schemes()["light"]
    assert [name for name in CHART if f"--ct-chart-{name}" not in defined] == []


def test_every_variable_the_pages_use_is_defined() -> None:
    """Templates and the chart code (``var(--ct-chart-drift, …)``) refer only to names the layout
    defines or that they declare themselves (the chart's ``--ct-c``)."""
    defined = _schemes()["light"]
    undefined = []
    for source in [*UI.glob("*.html"), *(REPO / "include" / "ctloop" / "ui").glob("*.py")]:
        text = source.read_text()
        own = set(re.findall(r"(--ct-[\w-]+):", text))
        undefined += [f"{source.name}: {name}" for name in set(re.findall(r"var\((--ct-[\w-]+)", text)) - own]
    assert sorted(name for name in undefined if name.partition(": ")[2] not in defined) == []
