"""The ``challenger`` alias on a real MLflow registry: a newer waiting candidate takes it over, and
a release never takes it from a candidate other than the one whose run ended."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ctloop.registry import challenger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> str:
    client = registry.client(settings)
    name = f"c{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=str(tmp_path), run_id=None)
    return name


def _waiting(settings: Settings, name: str) -> str | None:
    found = registry.get_alias(registry.client(settings), name, registry.CHALLENGER)
    return str(found.version) if found else None


def _tag(settings: Settings, name: str, version: str) -> str:
    return registry.client(settings).get_model_version(name, version).tags[tags.CHALLENGER]


def test_a_newer_waiting_candidate_takes_the_alias_over(settings: Settings, pipeline: str) -> None:
    assert _waiting(settings, pipeline) is None
    assert challenger.mark(settings, pipeline, "1") is None
    assert _waiting(settings, pipeline) == "1"
    assert _tag(settings, pipeline, "1").startswith("since ")

    assert challenger.mark(settings, pipeline, "2") == "1"
    assert _waiting(settings, pipeline) == "2"
    assert _tag(settings, pipeline, "1").startswith("replaced at ")
    assert "by v2" in _tag(settings, pipeline, "1")
    assert challenger.mark(settings, pipeline, "2") is None  # marking again replaces nobody


def test_a_release_only_removes_the_alias_from_its_own_candidate(settings: Settings, pipeline: str) -> None:
    challenger.mark(settings, pipeline, "1")
    challenger.mark(settings, pipeline, "2")

    assert challenger.release(settings, pipeline, "1", "its training run ended: rejected") is False
    assert _waiting(settings, pipeline) == "2"  # v1's run ending does not take it from v2

    assert challenger.release(settings, pipeline, "2", "its training run ended: promoted") is True
    assert _waiting(settings, pipeline) is None
    assert _tag(settings, pipeline, "2").endswith(": its training run ended: promoted")
    assert challenger.release(settings, pipeline, "2", "again") is False
    assert registry.get_champion(registry.client(settings), pipeline) is None  # champion untouched
