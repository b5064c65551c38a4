"""Settings from the environment: defaults under CTLOOP_HOME, overrides, frozen, typos refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ctloop.errors import SettingsError
from ctloop.settings import PACKAGE_DIR, READ_ELSEWHERE, Settings, known_variables, load_settings


def test_defaults_live_under_ctloop_home(tmp_path):
    settings = load_settings({"CTLOOP_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()
    assert settings.storage_root == str(tmp_path / "storage")
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.mlflow_artifact_root == str(tmp_path / "mlartifacts")
    assert settings.database_url == f"sqlite:///{tmp_path / 'ctloop.db'}"
    assert settings.pipelines_dir == PACKAGE_DIR.parent / "pipelines"
    assert settings.expectations_dir == PACKAGE_DIR.parent / "expectations"
    assert settings.s3_endpoint_url is None


def test_home_defaults_to_dot_ctloop_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).home == tmp_path.resolve() / ".ctloop"


def test_home_expands_the_user_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({"CTLOOP_HOME": "~/state"}).home == tmp_path.resolve() / "state"


def test_every_location_can_be_overridden(tmp_path):
    settings = load_settings(
        {
            "CTLOOP_HOME": str(tmp_path),
            "CTLOOP_STORAGE_ROOT": "s3://bucket/ctloop",
            "CTLOOP_PIPELINES_DIR": "/etc/ctloop/pipelines",
            "CTLOOP_EXPECTATIONS_DIR": "/etc/ctloop/expectations",
            "MLFLOW_TRACKING_URI": "postgresql://mlflow@db/mlflow",
            "CTLOOP_MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow",
            "CTLOOP_S3_ENDPOINT_URL": "http://minio:9000",
            "CTLOOP_DATABASE_URL": "postgresql+psycopg2://ctloop@db/ctloop",
        }
    )
    assert settings.storage_root == "s3://bucket/ctloop"
    assert settings.pipelines_dir == Path("/etc/ctloop/pipelines")
    assert settings.expectations_dir == Path("/etc/ctloop/expectations")
    assert settings.mlflow_tracking_uri == "postgresql://mlflow@db/mlflow"
    assert settings.mlflow_artifact_root == "s3://bucket/mlflow"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.database_url == "postgresql+psycopg2://ctloop@db/ctloop"


def test_the_process_environment_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CTLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("CTLOOP_STORAGE_ROOT", "s3://from-env/x")
    settings = load_settings()
    assert settings.home == tmp_path.resolve()
    assert settings.storage_root == "s3://from-env/x"
    assert Settings() == settings


@pytest.mark.parametrize(
    ("tracking_uri", "artifact_root"),
    [("http://mlflow:5000", None), ("https://mlflow.example.com", None), ("sqlite:///m.db", "HOME")],
)
def test_artifact_root_only_for_a_database_tracking_uri(tmp_path, tracking_uri, artifact_root):
    settings = load_settings({"CTLOOP_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": tracking_uri})
    expected = str(tmp_path / "mlartifacts") if artifact_root == "HOME" else None
    assert settings.mlflow_artifact_root == expected


def test_an_explicit_artifact_root_wins_even_with_a_server(tmp_path):
    settings = load_settings(
        {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "CTLOOP_MLFLOW_ARTIFACT_ROOT": "s3://b/a"}
    )
    assert settings.mlflow_artifact_root == "s3://b/a"


def test_empty_variables_count_as_unset(tmp_path):
    settings = load_settings({"CTLOOP_HOME": str(tmp_path), "CTLOOP_MLFLOW_ARTIFACT_ROOT": ""})
    assert settings.mlflow_artifact_root == str(tmp_path / "mlartifacts")


def test_s3_endpoint_falls_back_to_the_aws_variable():
    assert load_settings({"AWS_ENDPOINT_URL_S3": "http://aws:9000"}).s3_endpoint_url == "http://aws:9000"
    both = {"CTLOOP_S3_ENDPOINT_URL": "http://ctloop:9000", "AWS_ENDPOINT_URL_S3": "http://aws:9000"}
    assert load_settings(both).s3_endpoint_url == "http://ctloop:9000"
    empty = {"CTLOOP_S3_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "http://aws:9000"}
    assert load_settings(empty).s3_endpoint_url == "http://aws:9000"


def test_settings_are_frozen():
    settings = load_settings({})
    with pytest.raises(ValidationError, match="frozen"):
        settings.storage_root = "/elsewhere"  # type: ignore[misc]


def test_model_copy_changes_one_field_and_keeps_the_original():
    settings = load_settings({})
    changed = settings.model_copy(update={"database_url": "sqlite:///other.db"})
    assert changed.database_url == "sqlite:///other.db"
    assert changed.storage_root == settings.storage_root
    assert settings.database_url != "sqlite:///other.db"


def test_a_misspelt_variable_is_refused_by_name():
    with pytest.raises(SettingsError, match=r"unknown environment variable CTLOOP_STORAGE_ROT") as caught:
        load_settings({"CTLOOP_STORAGE_ROT": "/tmp/x"})
    assert "did you mean CTLOOP_STORAGE_ROOT?" in str(caught.value)


def test_a_misspelt_variable_in_the_process_environment_is_refused(monkeypatch):
    monkeypatch.setenv("CTLOOP_DATABSE_URL", "sqlite:///x.db")
    with pytest.raises(SettingsError, match="CTLOOP_DATABSE_URL"):
        load_settings()
    with pytest.raises(SettingsError, match="CTLOOP_DATABSE_URL"):
        Settings()


def test_an_unprefixed_field_name_is_not_read():
    # MLflow's tracking URI comes only from MLflow's own variable, not from a CTLOOP_ twin.
    with pytest.raises(SettingsError, match="CTLOOP_MLFLOW_TRACKING_URI"):
        load_settings({"CTLOOP_MLFLOW_TRACKING_URI": "http://x"})


def test_variables_read_elsewhere_are_allowed():
    environ = dict.fromkeys(READ_ELSEWHERE, "value")
    assert load_settings(environ).storage_root
    assert set(READ_ELSEWHERE) <= known_variables()


def test_other_variables_are_ignored():
    assert load_settings({"AIRFLOW_CONN_CTLOOP_WEBHOOK": "{}", "PATH": "/bin"}).s3_endpoint_url is None
