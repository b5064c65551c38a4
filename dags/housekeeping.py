"""Airflow housekeeping DAGs, one per pipeline spec in include/pipelines: ``<pipeline>__housekeeping``."""

from __future__ import annotations

from ctloop.orchestration.housekeeping_dag import build_housekeeping_dag
from ctloop.orchestration.specs import valid_specs

for _spec in valid_specs():
    globals()[f"{_spec.name}__housekeeping"] = build_housekeeping_dag(_spec)
