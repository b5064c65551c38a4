from __future__ import annotations

import pytest

from ctloop.errors import StorageError
from ctloop.replay.environment import replay_settings, replay_spec
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


def test_a_replay_keeps_every_record_in_its_own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////real/mlflow.db")
    monkeypatch.setenv("CTLOOP_DATABASE_URL", "sqlite:////real/ctloop.db")
    user = load_settings()
    settings = replay_settings(user, tmp_path / "replay")
    assert settings.home == tmp_path / "replay"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'replay' / 'mlflow.db'}"
    assert settings.database_url == f"sqlite:///{tmp_path / 'replay' / 'ctloop.db'}"
    assert settings.storage_root == str(tmp_path / "replay" / "storage")
    assert settings.mlflow_artifact_root == str(tmp_path / "replay" / "mlartifacts")
    assert (settings.pipelines_dir, settings.expectations_dir) == (user.pipelines_dir, user.expectations_dir)


def test_a_home_holding_files_is_refused(tmp_path):
    (tmp_path / "mlflow.db").write_text("")
    with pytest.raises(StorageError, match="new or empty"):
        replay_settings(load_settings(), tmp_path)


def test_the_training_data_stays_the_users_and_batches_land_in_the_replay_home(tmp_path):
    user = load_settings()
    spec = PipelineSpec.model_validate(
        example_spec(
            "p", "data/p/training", scoring={"incoming_uri": "s3://real/in", "labels_uri": "/real/labels"}
        )
    )
    replayed = replay_spec(spec, user)
    assert replayed.data.uri == str(user.home / "data/p/training")
    assert (replayed.incoming_uri, replayed.labels_uri) == ("data/p/incoming", "data/p/labels")
    s3 = spec.model_copy(update={"data": spec.data.model_copy(update={"uri": "s3://bucket/train"})})
    assert replay_spec(s3, user).data.uri == "s3://bucket/train"
