"""Airflow scoring DAGs, one per pipeline spec in include/pipelines: ``<pipeline>__score``."""

from __future__ import annotations

from ctloop.orchestration.score_dag import build_score_dag
from ctloop.orchestration.specs import valid_specs

for _spec in valid_specs():
    globals()[f"{_spec.name}__score"] = build_score_dag(_spec)
