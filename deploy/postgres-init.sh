#!/usr/bin/env bash
# Postgres runs this once, when its volume is first initialised: one role and one database per
# client (Airflow's metadata, Celery's results, MLflow, ctloop's ledger), so each credential opens
# exactly one database. Passwords come from .env; to change one later, ALTER ROLE by hand.
set -euo pipefail

create_database() {  # name password
  # psql variables (:"name", :'password') quote the values; nothing from .env is spliced into SQL.
  psql --no-psqlrc --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set name="$1" --set password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
-- Every role may connect to every database by default; only the owner may here.
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create_database airflow "$AIRFLOW_DB_PASSWORD"
create_database celery "$CELERY_DB_PASSWORD"
create_database mlflow "$MLFLOW_DB_PASSWORD"
create_database ctloop "$CTLOOP_DB_PASSWORD"
