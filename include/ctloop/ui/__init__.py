"""The Airflow UI plugin: pipelines, drift reports, the promotion ledger and rollback, in Airflow.

``plugin`` is what Airflow imports (in every component, so it stays light); ``app`` is the FastAPI
app the API server mounts at ``/ctloop``, built on its first request. Pages are rendered on the
server without scripts; Evidently reports are untrusted content and are only ever served
sandboxed (``reports``).
"""
