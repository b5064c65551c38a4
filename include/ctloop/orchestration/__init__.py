"""Airflow wiring: DAG builders that turn pipeline specs into DAGs. Imports airflow.sdk only."""
