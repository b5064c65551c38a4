"""The plugin's FastAPI app, mounted by the API server at ``/ctloop``.

Every route depends on the authenticated Airflow user and checks the auth manager's permission on
the pipeline's DAG before reading anything: a pipeline's history and reports need read access to
``<pipeline>__monitor``, its champion and ledger to ``<pipeline>__train``, a rollback permission
to trigger ``<pipeline>__rollback``. Ids in paths are validated against strict patterns and
looked up; no path from a request reaches storage.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ctloop import clock
from ctloop.errors import AlertRefused
from ctloop.monitoring import alerts
from ctloop.registry import ledger
from ctloop.settings import Settings, load_settings
from ctloop.spec.loading import load_specs
from ctloop.spec.models import NAME_PATTERN, PipelineSpec
from ctloop.ui import card_diff, pages, reports, runs, serving, state
from ctloop.ui.auth import UserDep, check_csrf, csrf_token, may, require
from ctloop.ui.links import Urls, mlflow_ui_url
from ctloop.ui.render import page

TARGET = re.compile(r"^(previous|[0-9]+)$")
VERSION = re.compile(r"^[0-9]{1,9}$")
MAX_REASON = 2000

router = APIRouter()


def create_app() -> FastAPI:
    """No OpenAPI or docs routes: they would answer without authentication."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    app = FastAPI(title="ctloop", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dag_bag = create_dag_bag()
    app.add_exception_handler(StarletteHTTPException, _error_page)
    app.include_router(router)
    return app


def _urls(request: Request) -> Urls:
    return Urls.of(request.scope.get("root_path", ""), mlflow_ui_url(load_settings().mlflow_tracking_uri))


def _page(request: Request, user, title: str, body: str) -> HTMLResponse:
    urls = _urls(request)
    return page(title, body, home=urls.home(), airflow=urls.airflow + "/", user=user.get_name())


async def _error_page(request: Request, exc: Exception) -> HTMLResponse | JSONResponse:
    """Errors as a page (as JSON under ``/api/``); a request without a session gets a way to log in
    and come back.

    Registered for Starlette's HTTPException only; typed as Starlette's handler signature wants."""
    from airflow.api_fastapi.app import get_auth_manager

    if not isinstance(exc, StarletteHTTPException):
        raise exc
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    urls = _urls(request)
    login = None
    if exc.status_code == status.HTTP_401_UNAUTHORIZED:
        login = get_auth_manager().get_url_login(next_url=str(request.url))
    return page(
        str(exc.status_code),
        pages.error(urls, exc.status_code, exc.detail, login),
        home=urls.home(),
        airflow=urls.airflow + "/",
        user="",
        status_code=exc.status_code,
    )


def _spec(settings: Settings, pipeline: str) -> PipelineSpec:
    if not re.match(NAME_PATTERN, pipeline):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a pipeline name")
    specs, _ = load_specs(settings.pipelines_dir)
    if pipeline not in specs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline {pipeline}")
    return specs[pipeline]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, user: UserDep) -> HTMLResponse:
    settings = load_settings()
    specs, errors = load_specs(settings.pipelines_dir)
    now = clock.now()
    rows = []
    for spec in specs.values():
        if not may(user, f"{spec.name}__train", "GET"):
            continue
        rows.append(
            pages.PipelineRow(
                spec=spec,
                champion=state.champion(ledger.entries(settings, spec.name)),
                runs=runs.latest_runs([f"{spec.name}__{kind}" for kind in pages.KINDS]),
                decision=state.latest_decision(settings, spec.name),
                policy=state.policy_state(spec, settings, now),
            )
        )
    invalid = sorted(path.name for path in errors)
    return _page(request, user, "Pipelines", pages.overview(_urls(request), rows, invalid))


@router.get("/pipelines/{pipeline}", response_class=HTMLResponse)
def pipeline_page(
    request: Request, user: UserDep, pipeline: str, started: Annotated[str | None, Query()] = None
) -> HTMLResponse:
    """The place to decide: what serves and waits, what happened and why, and the two actions."""
    from ctloop.io.storage import home_storage
    from ctloop.monitoring.retrain_requests import all_requests
    from ctloop.registry import mlflow_store as registry

    settings = load_settings()
    spec = _spec(settings, pipeline)
    require(user, f"{pipeline}__monitor", "GET")
    train, rollback = f"{pipeline}__train", f"{pipeline}__rollback"
    decisions = state.history(settings, pipeline)
    moves = ledger.entries(settings, pipeline)
    may_read_models = may(user, train, "GET")
    client = registry.client(settings)
    requests = all_requests(home_storage(settings), pipeline)
    body = pages.pipeline(
        _urls(request),
        spec,
        pages.PipelineView(
            decisions=decisions,
            moves=moves,
            policy=state.policy_state(spec, settings, clock.now()),
            serving=serving.serving(client, spec, state.champion(moves), decisions)
            if may_read_models
            else None,
            trainings=serving.trainings(client, pipeline, requests) if may_read_models else [],
            approvals=runs.waiting_approvals(train) if may_read_models else [],
            actions=pages.Actions(
                retrain_csrf=csrf_token(request, f"retrain:{pipeline}") if may(user, train, "POST") else None,
                rollback_csrf=csrf_token(request, f"rollback:{pipeline}")
                if may(user, rollback, "POST")
                else None,
                paused={dag_id: runs.is_paused(dag_id) for dag_id in (train, rollback)},
            ),
            started=_started(pipeline, started),
        ),
    )
    return _page(request, user, pipeline, body)


def _started(pipeline: str, started: str | None) -> runs.Run | None:
    """The run an action of this page just started (``train:<run id>`` or ``rollback:<run id>``)."""
    kind, _, run_id = (started or "").partition(":")
    if kind not in ("train", "rollback") or not run_id:
        return None
    return runs.find_run(f"{pipeline}__{kind}", run_id)


@router.get("/pipelines/{pipeline}/reports/{run_id}", response_class=HTMLResponse)
def report_page(request: Request, user: UserDep, pipeline: str, run_id: str) -> HTMLResponse:
    settings = load_settings()
    spec = _spec(settings, pipeline)
    reports.check_run_id(run_id)
    require(user, f"{pipeline}__monitor", "GET")
    if reports.read_output(settings, pipeline, run_id, reports.REPORT) is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"monitor run {run_id} of {pipeline} wrote no report (no champion or no scored batch yet,"
            " or it has not finished)",
        )
    summary = reports.read_summary(settings, pipeline, run_id)
    return _page(
        request,
        user,
        f"{pipeline} drift report",
        pages.report(_urls(request), spec, run_id, summary),
    )


@router.get("/pipelines/{pipeline}/reports/{run_id}/raw")
def raw_report(user: UserDep, pipeline: str, run_id: str) -> HTMLResponse:
    """The Evidently HTML itself, under CSP ``sandbox``: never script in Airflow's origin."""
    settings = load_settings()
    _spec(settings, pipeline)
    reports.check_run_id(run_id)
    require(user, f"{pipeline}__monitor", "GET")
    body = reports.read_output(settings, pipeline, run_id, reports.REPORT)
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"monitor run {run_id} of {pipeline} wrote no report")
    return reports.untrusted_html(body, reports.REPORT_CSP)


@router.get("/pipelines/{pipeline}/ledger", response_class=HTMLResponse)
def ledger_page(
    request: Request, user: UserDep, pipeline: str, triggered: Annotated[str | None, Query()] = None
) -> HTMLResponse:
    settings = load_settings()
    spec = _spec(settings, pipeline)
    require(user, f"{pipeline}__train", "GET")
    body = pages.ledger(
        _urls(request),
        spec,
        ledger.entries(settings, pipeline),
        can_rollback=may(user, f"{pipeline}__rollback", "POST"),
        triggered=runs.find_run(f"{pipeline}__rollback", triggered) if triggered else None,
    )
    return _page(request, user, f"{pipeline} ledger", body)


@router.get("/pipelines/{pipeline}/versions/{version}/model-card")
def model_card(user: UserDep, pipeline: str, version: str) -> HTMLResponse:
    """The version's model card from its MLflow run, sandboxed like any HTML built from data."""
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from ctloop.registry import mlflow_store as registry
    from ctloop.registry.model_card import ARTIFACT_PATH

    settings = load_settings()
    _spec(settings, pipeline)
    if not VERSION.match(version):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a model version")
    require(user, f"{pipeline}__train", "GET")
    client = registry.client(settings)
    try:
        run_id = client.get_model_version(pipeline, version).run_id
        if run_id is None:
            raise MlflowException(f"version {version} has no run")
        with tempfile.TemporaryDirectory() as tmp:
            body = Path(client.download_artifacts(run_id, ARTIFACT_PATH, tmp)).read_bytes()
    except (MlflowException, OSError) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model card for {pipeline} v{version}") from exc
    return reports.untrusted_html(body, reports.CARD_CSP)


@router.get("/pipelines/{pipeline}/versions/{version}", response_class=HTMLResponse)
def version_page(request: Request, user: UserDep, pipeline: str, version: str) -> HTMLResponse:
    """A version's model card inside the plugin (framed from :func:`model_card`), under what
    changed against the champion now, from the two versions' MLflow runs."""
    from functools import partial

    from mlflow.exceptions import MlflowException

    from ctloop.io.storage import storage_relative
    from ctloop.registry import mlflow_store as registry

    settings = load_settings()
    spec = _spec(settings, pipeline)
    if not VERSION.match(version):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a model version")
    require(user, f"{pipeline}__train", "GET")
    client = registry.client(settings)
    try:
        facts = card_diff.run_facts(client, pipeline, version)
    except MlflowException as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no version {version} of {pipeline}") from exc
    serving = state.champion(ledger.entries(settings, pipeline))
    champion = serving.to_version if serving else None
    diff = None
    if champion is not None and champion != version:
        try:
            against = card_diff.run_facts(client, pipeline, champion)
        except MlflowException:
            against = None  # the page says the champion's run could not be read
        if against is not None:
            diff = card_diff.card_diff(facts, against, partial(storage_relative, settings))
    body = pages.version(_urls(request), spec, version, champion, diff)
    return _page(request, user, f"{pipeline} v{version} model card", body)


@router.get("/pipelines/{pipeline}/rollback", response_class=HTMLResponse)
def rollback_form(
    request: Request, user: UserDep, pipeline: str, target: Annotated[str, Query()] = "previous"
) -> HTMLResponse:
    settings = load_settings()
    spec = _spec(settings, pipeline)
    if not TARGET.match(target):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "target: 'previous' or a version number")
    dag_id = f"{pipeline}__rollback"
    require(user, dag_id, "GET")
    body = pages.rollback_form(
        _urls(request),
        spec,
        ledger.entries(settings, pipeline),
        target=target,
        csrf=csrf_token(request, f"rollback:{pipeline}"),
        can_rollback=may(user, dag_id, "POST"),
        paused=runs.is_paused(dag_id),
    )
    return _page(request, user, f"Roll back {pipeline}", body)


@router.post("/pipelines/{pipeline}/rollback")
def rollback(
    request: Request,
    user: UserDep,
    pipeline: str,
    target: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    force: Annotated[bool, Form()] = False,
    csrf: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "ledger",
) -> RedirectResponse:
    """Trigger ``<pipeline>__rollback`` with the form's target, reason and force, as the user; back
    to the ledger, or to the pipeline page when the form was there (``back=pipeline``)."""
    settings = load_settings()
    _spec(settings, pipeline)
    dag_id = f"{pipeline}__rollback"
    require(user, dag_id, "POST")
    check_csrf(request, csrf, f"rollback:{pipeline}")
    if not TARGET.match(target):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "target: 'previous' or a version number")
    reason = _text("reason", reason, required=True)
    run_id = runs.trigger(
        request.app.state.dag_bag,
        request,
        user,
        dag_id,
        conf={"target": target, "reason": reason, "force": force},
        note=f"Rollback from the ctloop UI: {reason}",
    )
    if back == "pipeline":
        return _back_to_pipeline(request, pipeline, f"rollback:{run_id}")
    location = f"{_urls(request).ledger(pipeline)}?{urlencode({'triggered': run_id})}"
    return RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/pipelines/{pipeline}/retrain")
def retrain(
    request: Request,
    user: UserDep,
    pipeline: str,
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Trigger ``<pipeline>__train`` as the user, with the reason (required) and note: the same
    permission, Params and record as Airflow's trigger form."""
    settings = load_settings()
    _spec(settings, pipeline)
    dag_id = f"{pipeline}__train"
    require(user, dag_id, "POST")
    check_csrf(request, csrf, f"retrain:{pipeline}")
    reason = _text("reason", reason, required=True)
    conf = {"reason": reason, "note": _text("note", note, required=False) or None}
    run_id = runs.trigger(
        request.app.state.dag_bag,
        request,
        user,
        dag_id,
        conf=conf,
        note=f"Retrain from the ctloop UI: {reason}",
    )
    return _back_to_pipeline(request, pipeline, f"train:{run_id}")


def _text(field: str, value: str, *, required: bool) -> str:
    """A form's free text, stripped; 400 naming the field when it is missing or too long."""
    value = value.strip()
    if (required and not value) or len(value) > MAX_REASON:
        need = "required, " if required else ""
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{field}: {need}at most {MAX_REASON} characters")
    return value


def _back_to_pipeline(request: Request, pipeline: str, started: str) -> RedirectResponse:
    location = f"{_urls(request).pipeline(pipeline)}?{urlencode({'started': started})}"
    return RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)


class Alert(BaseModel):
    """What an external monitoring system posts: its alert's id, why, and a note for reviewers."""

    model_config = ConfigDict(extra="forbid")

    alert_id: str = Field(max_length=10_000)  # checked by ctloop.monitoring.alerts, never echoed
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    note: str | None = Field(None, max_length=MAX_REASON)


@router.post("/api/pipelines/{pipeline}/alerts", status_code=status.HTTP_201_CREATED)
def receive_alert(request: Request, user: UserDep, pipeline: str, alert: Alert) -> JSONResponse:
    """Start ``<pipeline>__train`` for an external alert, once per alert id: 201 with the run, 400
    for a malformed id, 409 (naming the run that received it) for an id already received."""
    settings = load_settings()
    _spec(settings, pipeline)
    dag_id = f"{pipeline}__train"
    require(user, dag_id, "POST")
    try:
        alert_id = alerts.check_alert_id(alert.alert_id)
    except AlertRefused as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    earlier = alerts.claimed(settings, pipeline, alert_id)
    if earlier is not None:
        why = f"alert {alert_id!r} was already received by {earlier.run_key} at {earlier.at}; nothing started"
        return JSONResponse(
            {"detail": why, "alert_id": alert_id, "received_by": earlier.run_key, "at": earlier.at},
            status_code=status.HTTP_409_CONFLICT,
        )
    run_id = f"alert__{alert_id}"
    alerts.claim(settings, pipeline, alert_id, f"{dag_id}/{run_id}")
    conf = {"reason": alert.reason, "alert_id": alert_id, "note": alert.note}
    try:
        runs.trigger(request.app.state.dag_bag, request, user, dag_id, conf, f"Alert {alert_id}", run_id)
    except Exception:
        alerts.release(settings, pipeline, alert_id, f"{dag_id}/{run_id}")  # nothing started: let it retry
        raise
    return JSONResponse({"alert_id": alert_id, "dag_id": dag_id, "dag_run_id": run_id}, status_code=201)
