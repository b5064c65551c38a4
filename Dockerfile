# syntax=docker/dockerfile:1
# One image for every ctloop service: the Airflow components, the init jobs and the MLflow server.
# It holds exactly what uv.lock pins (what the tests run against), installed by `uv sync --frozen`.
# Based on python:3.11-slim, not apache/airflow: that image ships its own Airflow and ~80 providers
# under Airflow's constraints, so the lock on top would make two dependency sets in one image.
# Kept from the official image's conventions: AIRFLOW_HOME=/opt/airflow, user 50000 in group 0,
# dags/ and plugins/ baked in (the Helm chart can run the image as is; compose mounts over them).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The uv the Makefile uses.
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check uv==${UV_VERSION}
ENV UV_PROJECT_ENVIRONMENT=/opt/ctloop \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
# Dependencies in their own layer, so a code change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY include/ctloop include/ctloop
# --no-editable: ctloop lives in the virtualenv, so the image does not depend on /src.
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
# tini as PID 1 forwards SIGTERM to the one child (Celery's warm shutdown) and reaps zombies;
# curl is for the healthchecks; libgomp1 is the OpenMP runtime LightGBM links against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini curl libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home airflow
COPY --from=build /opt/ctloop /opt/ctloop
# Named volumes copy these directories' ownership when first mounted, so no init chown is needed.
RUN mkdir -p /opt/airflow/logs /opt/airflow/ctloop \
    && chown -R 50000:0 /opt/airflow && chmod -R g+rwX /opt/airflow
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins
COPY --chown=50000:0 include/pipelines /opt/airflow/include/pipelines
COPY --chown=50000:0 include/expectations /opt/airflow/include/expectations
# The pipelines' own feature and training modules, imported by name (features.delivery.build).
COPY --chown=50000:0 include/features /opt/airflow/include/features
COPY --chown=50000:0 include/trainers /opt/airflow/include/trainers
COPY --chmod=755 deploy/airflow-init.sh /usr/local/bin/airflow-init
# Recorded on every MLflow run and model version; the image has no .git to ask.
# Build with: CTLOOP_CODE_VERSION=$(git rev-parse HEAD) docker compose build
ARG CTLOOP_CODE_VERSION=
ENV PATH=/opt/ctloop/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    CTLOOP_HOME=/opt/airflow/ctloop \
    CTLOOP_PIPELINES_DIR=/opt/airflow/include/pipelines \
    CTLOOP_EXPECTATIONS_DIR=/opt/airflow/include/expectations \
    PYTHONPATH=/opt/airflow/include \
    CTLOOP_CODE_VERSION=${CTLOOP_CODE_VERSION} \
    PYTHONUNBUFFERED=1
USER 50000
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
