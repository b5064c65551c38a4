"""Airflow monitoring DAGs, one per pipeline spec in include/pipelines: ``<pipeline>__monitor``."""

from __future__ import annotations

from ctloop.orchestration.monitor_dag import build_monitor_dag
from ctloop.orchestration.specs import valid_specs

for _spec in valid_specs():
    globals()[f"{_spec.name}__monitor"] = build_monitor_dag(_spec)
