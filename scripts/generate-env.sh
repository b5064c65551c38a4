#!/usr/bin/env bash
# Writes .env for docker-compose.yaml: every password and key of the stack, freshly random, mode 0600.
# docker-compose.yaml refers to each one as ${NAME:?...}, so compose refuses to start without it.
#
#   scripts/generate-env.sh [--force] [--output PATH]
#
# An existing file is kept unless --force: Postgres and MinIO store the passwords they were first
# started with, so new ones only work on new volumes (`docker compose down -v` deletes the data).
set -euo pipefail

usage() {
  echo "usage: $0 [--force] [--output PATH]  (default PATH: .env beside docker-compose.yaml)" >&2
  exit 2
}

output="$(cd "$(dirname "$0")/.." && pwd)/.env"
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --output) [ $# -ge 2 ] || usage; output=$2; shift ;;
    *) usage ;;
  esac
  shift
done

if [ -e "$output" ] && [ "$force" -ne 1 ]; then
  echo "$output exists; keeping it (the running stack's passwords are in it). --force replaces it." >&2
  exit 1
fi

# mktemp makes the file 0600 from the start, in the target directory so the rename is atomic.
tmp=$(mktemp "$output.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"${PYTHON:-python3}" - >"$tmp" <<'PY'
import base64
import secrets
from datetime import datetime, timezone


def password() -> str:
    # Hex: safe inside URLs, YAML and shell words without quoting; 128 bits. 32 characters also
    # fits MinIO's limit on secret keys (40).
    return secrets.token_hex(16)


def access_key() -> str:
    return secrets.token_hex(8)  # MinIO allows access keys of at most 20 characters


values = {
    # Postgres: the superuser, then one role per database (deploy/postgres-init.sh).
    "POSTGRES_PASSWORD": password(),
    "AIRFLOW_DB_PASSWORD": password(),
    "CELERY_DB_PASSWORD": password(),
    "MLFLOW_DB_PASSWORD": password(),
    "CTLOOP_DB_PASSWORD": password(),
    "REDIS_PASSWORD": password(),
    # MinIO: root (only minio and minio-init see it), then one user per bucket (deploy/minio-init.sh).
    "MINIO_ROOT_USER": access_key(),
    "MINIO_ROOT_PASSWORD": password(),
    "CTLOOP_S3_ACCESS_KEY_ID": access_key(),
    "CTLOOP_S3_SECRET_ACCESS_KEY": password(),
    "MLFLOW_S3_ACCESS_KEY_ID": access_key(),
    "MLFLOW_S3_SECRET_ACCESS_KEY": password(),
    # MLflow encrypts stored gateway secrets with a key derived from this; unset, it uses a public default.
    "MLFLOW_KEK_PASSPHRASE": secrets.token_hex(32),
    # MLflow's basic-auth app: the admin (people), ctloop's user (workers and the UI plugin,
    # deploy/mlflow-users-init.py) and the key that signs the app's CSRF tokens.
    "MLFLOW_ADMIN_PASSWORD": password(),
    "MLFLOW_CTLOOP_PASSWORD": password(),
    "MLFLOW_FLASK_SECRET_KEY": secrets.token_hex(32),
    # Airflow: user "admin"; the Fernet key (32 url-safe base64 bytes) encrypts connections and
    # variables; one JWT secret signs and checks task tokens; the API secret key signs sessions
    # and log requests.
    "AIRFLOW_ADMIN_PASSWORD": password(),
    "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
    "AIRFLOW_API_SECRET_KEY": secrets.token_hex(32),
}

print(f"# Written by scripts/generate-env.sh at {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}.")
print("# Secrets of the docker compose stack: keep this file out of git and off shared disks.")
for name, value in values.items():
    print(f"{name}={value}")
PY
mv -f "$tmp" "$output"
trap - EXIT
echo "wrote $output; the Airflow and MLflow UIs' user is admin, its passwords AIRFLOW_ADMIN_PASSWORD and MLFLOW_ADMIN_PASSWORD in that file"
