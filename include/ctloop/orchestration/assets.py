"""The Airflow Assets that couple a pipeline's DAGs: score → monitor → train, no sensors.

Their URIs use an ``x-`` scheme, which Airflow leaves as is: any other scheme makes it load
every provider's URI normalizers (boto3 among them) while the DAG file parses.
"""

from __future__ import annotations

from airflow.sdk import Asset


def predictions_asset(pipeline: str) -> Asset:
    """Updated whenever a batch is scored; the monitor runs after new predictions."""
    return Asset(name=f"{pipeline}__predictions", uri=f"x-ctloop://{pipeline}/predictions")


def retrain_asset(pipeline: str) -> Asset:
    """A retrain request; its event's ``extra`` carries the reason, the report URI and figures."""
    return Asset(name=f"{pipeline}__retrain_request", uri=f"x-ctloop://{pipeline}/retrain-request")
