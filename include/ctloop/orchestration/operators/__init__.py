"""Custom Airflow operators; import them from their modules so Airflow loads only what a DAG uses."""
