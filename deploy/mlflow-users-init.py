"""Create ctloop's MLflow user, the one workers and the UI plugin sign in as, or reset its password
to the one in .env. Idempotent: it runs on every `docker compose up`, as the admin
(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD). ctloop's user is no admin: it manages the
experiments and models it creates and reads the rest.
"""

from __future__ import annotations

import os

from mlflow.exceptions import RestException
from mlflow.server import get_app_client

USER = "ctloop"

client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
password = os.environ["MLFLOW_CTLOOP_PASSWORD"]
try:
    client.create_user(USER, password)
    print(f"created the MLflow user {USER}")
except RestException as exc:
    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
        raise
    client.update_user_password(USER, password)
    print(f"the MLflow user {USER} exists; its password was set from .env")
