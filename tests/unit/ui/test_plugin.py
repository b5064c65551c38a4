"""The plugin as Airflow loads it: one plugin from the plugins folder, and nothing heavy on import
(every Airflow component imports it)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

HEAVY = (
    "fastapi",
    "pandas",
    "mlflow",
    "evidently",
    "sklearn",
    "great_expectations",
    "airflow.api_fastapi.app",
    "airflow.api_fastapi.core_api.security",
    "ctloop.ui.app",
)


def test_the_plugins_folder_registers_the_ui_plugin_once() -> None:
    from airflow._shared.plugins_manager import _load_plugins_from_plugin_directory

    plugins, errors = _load_plugins_from_plugin_directory(plugins_folder=str(REPO / "plugins"))
    assert errors == {}
    assert [p.name for p in plugins] == ["ctloop_ui"]
    (plugin,) = plugins
    assert [(a["name"], a["url_prefix"]) for a in plugin.fastapi_apps] == [("ctloop", "/ctloop")]
    assert [(v["href"], v["category"]) for v in plugin.external_views] == [("/ctloop/", "browse")]
    assert {link.name for link in plugin.global_operator_extra_links} == {"Drift report", "ctloop pipeline"}


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """In a fresh interpreter, as the scheduler would: Airflow first, then the plugins folder."""
    probe = (
        "import sys\n"
        "from airflow._shared.plugins_manager import _load_plugins_from_plugin_directory\n"
        "before = set(sys.modules)\n"
        f"plugins, errors = _load_plugins_from_plugin_directory(plugins_folder={str(REPO / 'plugins')!r})\n"
        "assert [p.name for p in plugins] == ['ctloop_ui'], (plugins, errors)\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}"
        f" or m in {HEAVY!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
