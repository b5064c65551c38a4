"""Surfaces invalid pipeline specs as an import error in the Airflow UI, naming file and field.

The DAG files skip invalid specs so one broken YAML never takes down other pipelines; this
file fails instead, so the mistake is visible where people look. It defines no DAG.
"""

from __future__ import annotations

from ctloop.orchestration.specs import raise_for_invalid_specs

raise_for_invalid_specs()
