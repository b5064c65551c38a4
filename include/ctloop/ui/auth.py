"""Who may see and do what: Airflow's own authentication, its auth manager's DAG permissions, and
a CSRF guard for the one action that changes state.

Airflow does not authenticate a plugin's routes; every route of the app depends on
:data:`UserDep`, the dependency Airflow's public API uses (a JWT from the ``Authorization: Bearer``
header, or from the ``_token`` cookie the UI sets at login). What a page shows is then checked
against the auth manager per DAG, as Airflow's routes do.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import HTTPException, Request, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

UserDep = GetUserDep
Method = Literal["GET", "POST"]


def may(user: BaseUser, dag_id: str, method: Method) -> bool:
    """Whether ``user`` may read (GET) or trigger (POST) runs of ``dag_id``."""
    from airflow.models.dag import DagModel

    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    return get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=details, user=user
    )


def require(user: BaseUser, dag_id: str, method: Method) -> None:
    """Refuse with 403 unless ``user`` may ``method`` runs of ``dag_id``."""
    if not may(user, dag_id, method):
        what = "trigger" if method == "POST" else "read"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{user.get_name()} may not {what} runs of {dag_id}")


def csrf_token(request: Request, purpose: str) -> str:
    """A form token bound to the browser's session (the JWT cookie) and to one action.

    A page on another site can neither read the cookie nor this page, so it cannot produce it.
    """
    session = request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")
    return hmac.new(session.encode(), f"ctloop-ui:{purpose}".encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, submitted: str, purpose: str) -> None:
    """Refuse a state-changing request that a browser may have sent on another site's behalf.

    A request carrying its own ``Authorization`` header is not one (a browser never adds it by
    itself). One authenticated by the cookie must come from this origin (``Origin``, else
    ``Referer``) and carry the form's token.
    """
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if urlsplit(source).netloc not in _own_hosts(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    if not hmac.compare_digest(submitted.encode(), csrf_token(request, purpose).encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form expired or did not come from this page")


def _own_hosts(request: Request) -> set[str]:
    from airflow.configuration import conf

    hosts = {request.headers.get("host", "")}
    hosts.add(urlsplit(conf.get("api", "base_url", fallback="")).netloc)  # behind a proxy
    return hosts - {""}
