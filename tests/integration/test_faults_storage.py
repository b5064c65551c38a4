"""ctloop's storage hanging, then down, then back: a training fails in bounded time naming the object,
nothing is promoted or left pending, and the next normal run succeeds.

Storage is a real HTTP S3 endpoint (moto's server on loopback); "hanging" is a loopback server that
accepts connections and never answers, "down" a port nobody listens on. The training runs as the
train DAG's tasks call the steps (tests/integration/test_faults_kill_training.run_steps).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ctloop.devtools.local_deployment import free_port
from ctloop.errors import StorageError
from tests.integration.test_faults_kill_training import (
    assert_settled,
    champion_of,
    moves_of,
    run_steps,
    small_pipeline,
)

pytestmark = pytest.mark.integration


def test_a_training_on_hanging_or_down_storage_fails_in_bounded_time_and_the_next_run_succeeds(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, silent_endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file, name = small_pipeline(tmp_path)
    root = f"s3://{s3_bucket}/ctloop"
    monkeypatch.setenv("CTLOOP_STORAGE_ROOT", root)
    for variable, value in {"CONNECT_TIMEOUT_S": "1", "READ_TIMEOUT_S": "1", "MAX_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(f"CTLOOP_S3_{variable}", value)

    hanging, accepted = silent_endpoint
    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", hanging)
    began = time.monotonic()
    with pytest.raises(StorageError, match=rf"^{root}/\S+: could not \w+: .*[Tt]imeout"):
        run_steps(spec_file, "manual__hanging", tmp_path / "hanging")
    assert time.monotonic() - began < 30  # 2 attempts of 1 s + 1 s, not botocore's minutes
    assert accepted

    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageError, match=rf"^{root}/\S+: could not \w+: "):
        run_steps(spec_file, "manual__down", tmp_path / "down")
    assert champion_of(name) is None
    assert moves_of(name) == []

    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", s3_endpoint)
    results = run_steps(spec_file, "manual__back", tmp_path / "back")
    assert results["promote"]["action"].startswith("promoted")
    assert champion_of(name) == results["register"]
    assert moves_of(name) == [("done", None, results["register"])]
    assert_settled(name, [f"{name}__train/manual__back"])
