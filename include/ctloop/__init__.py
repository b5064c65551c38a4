"""ctloop: continuous training on Apache Airflow, tracked and promoted with MLflow.

The package is importable without Airflow; DAG wiring lives in ``dags/``.
"""

from __future__ import annotations

__version__ = "0.1.0"
