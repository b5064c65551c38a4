#!/usr/bin/env bash
# The one-shot that readies the databases before any Airflow component starts, on a new stack and
# after an upgrade alike (every step is idempotent): Airflow's metadata schema (FAB's tables with it),
# Celery's result tables, ctloop's ledger, and the first admin user.
set -euo pipefail

airflow db migrate

# Celery creates its result tables on first use; create them here, once, instead of letting the
# scheduler and the first worker race to create them.
python -c 'from airflow.providers.celery.executors.celery_executor_utils import app; app.backend'

python -c 'from ctloop.registry.ledger import create_tables; from ctloop.settings import load_settings
create_tables(load_settings())'

# FAB's command leaves an existing user alone (a password changed in the UI stays changed), and
# masks --password in the command line it records in Airflow's audit log.
airflow users create --role Admin --username admin --password "$AIRFLOW_ADMIN_PASSWORD" \
  --firstname Airflow --lastname Admin --email admin@example.invalid
