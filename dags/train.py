"""Airflow training DAGs, one per pipeline spec in include/pipelines: ``<pipeline>__train``."""

from __future__ import annotations

from ctloop.orchestration.specs import valid_specs
from ctloop.orchestration.train_dag import build_train_dag

for _spec in valid_specs():
    globals()[f"{_spec.name}__train"] = build_train_dag(_spec)
