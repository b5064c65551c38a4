"""Airflow rollback DAGs, one per pipeline spec in include/pipelines: ``<pipeline>__rollback``."""

from __future__ import annotations

from ctloop.orchestration.rollback_dag import build_rollback_dag
from ctloop.orchestration.specs import valid_specs

for _spec in valid_specs():
    globals()[f"{_spec.name}__rollback"] = build_rollback_dag(_spec)
