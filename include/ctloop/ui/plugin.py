"""The Airflow plugin: ctloop's pages mounted in the API server, a navigation entry and the links
on ctloop's task instances.

Airflow imports plugins in every component (scheduler, dag-processor, task processes), so this
module builds nothing heavy: the FastAPI app, Airflow's security module, pandas and MLflow are
imported when the API server answers its first request under ``/ctloop``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from ctloop.ui.links import PREFIX, DriftReportLink, PipelineLink, airflow_base_path


class LazyApp:
    """An ASGI app that builds the plugin's FastAPI app on its first request and delegates to it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._app is None:
            from ctloop.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class CtloopUiPlugin(AirflowPlugin):
    """Registered once, from plugins/ctloop_ui.py (Airflow skips a second plugin of the same name)."""

    name = "ctloop_ui"
    fastapi_apps = [{"name": "ctloop", "app": LazyApp(), "url_prefix": PREFIX}]
    # Under Browse, opening in a tab of its own. No url_route: Airflow would frame the pages in a
    # sandbox that blocks their links to Airflow's own pages. Not nav_top_level: Airflow 3.3 renders
    # a top-level external link as a button that opens nothing.
    external_views = [
        {
            "name": "ctloop",
            "href": f"{airflow_base_path()}{PREFIX}/",
            "destination": "nav",
            "category": "browse",
        }
    ]
    global_operator_extra_links = [DriftReportLink(), PipelineLink()]
