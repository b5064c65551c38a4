"""Setting a production batch aside (quarantine, duplicates, conflicts) never loses a file; the
shadow columns (the previous champion's, the challenger's) never cost a batch its predictions."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import LocalStorage, home_storage
from ctloop.scoring import batches
from ctloop.scoring.batches import logged_columns, predict, set_aside
from ctloop.scoring.prediction_log import CHALLENGER, PREVIOUS
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.helpers import example_spec


def _spec(incoming) -> PipelineSpec:
    raw = example_spec(f"p{uuid.uuid4().hex[:8]}", "data", scoring={"incoming_uri": str(incoming)})
    return PipelineSpec.model_validate(raw)


def test_a_batch_set_aside_twice_keeps_both_files_with_their_reasons(tmp_path):
    spec, settings, incoming = _spec(tmp_path), load_settings(), LocalStorage(tmp_path)
    batch = {"key": "batch-0001.csv", "batch_id": "batch-0001", "uri": incoming.uri("batch-0001.csv")}
    incoming.write_bytes("batch-0001.csv", b"first delivery")
    first = set_aside(spec, settings, batch, b"first delivery", "quarantine", {"failures": ["a"]})
    incoming.write_bytes("batch-0001.csv", b"second delivery")
    second = set_aside(spec, settings, batch, b"second delivery", "quarantine", {"failures": ["b"]})

    assert first != second
    assert not incoming.exists("batch-0001.csv")
    storage, root = home_storage(settings), f"quarantine/{spec.name}"
    kept = {k: storage.read_bytes(k) for k in storage.list_keys(root) if k.endswith(".csv")}
    assert sorted(kept.values()) == [b"first delivery", b"second delivery"]
    reasons = [
        json.loads(storage.read_bytes(k)) for k in storage.list_keys(root) if k.endswith("reason.json")
    ]
    assert sorted(r["failures"][0] for r in reasons) == ["a", "b"]

    incoming.write_bytes("batch-0001.csv", b"first delivery")  # the same file a third time
    assert set_aside(spec, settings, batch, b"first delivery", "quarantine", {"failures": ["a"]}) == first


# --- the previous champion's shadow columns ---------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[PipelineSpec, Any, pd.DataFrame]:
    """A spec, a model fitted on generated rows, and a production batch to score."""
    spec = PipelineSpec.model_validate(example_spec("shadowed", "data"))
    return spec, fit(spec, generate_batch(1500, seed=3)), generate_batch(400, seed=4, batch_index=1)


def _watching(monkeypatch: pytest.MonkeyPatch, load: Any, challenger: str | None = None) -> None:
    """v2 is the champion promoted over v1, ``challenger`` (if any) waits for approval; ``load``
    stands in for loading a registered version."""
    promotion = SimpleNamespace(from_version="1", to_version="2", action="promotion")
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: promotion)
    monkeypatch.setattr(batches.registry, "client", lambda settings: SimpleNamespace(get_model_version=_mv))
    monkeypatch.setattr(batches.registry, "load_version", load)
    _challenger(monkeypatch, challenger)


def _challenger(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    def get_alias(mlflow_client: Any, name: str, alias: str) -> SimpleNamespace | None:
        assert alias == "challenger"
        return None if version is None else _mv(name, version)

    monkeypatch.setattr(batches.registry, "get_alias", get_alias)


def _mv(name: str, version: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, version=version)


def _logged(spec: PipelineSpec, frame: pd.DataFrame) -> pd.DataFrame:
    return frame[logged_columns(spec)].copy()


def test_the_previous_champion_scores_the_same_rows_into_the_shadow_columns(fitted, monkeypatch):
    spec, model, frame = fitted
    _watching(monkeypatch, lambda settings, version: model if version.version == "1" else None)
    logged = _logged(spec, frame)

    shadows = batches._shadows(spec, load_settings(), "2", frame, logged)

    assert shadows == {"shadow": {"version": "1", "scored": True}, "challenger": None}
    predicted, score = predict(model, frame, spec)
    assert logged[PREVIOUS.prediction].tolist() == predicted.tolist()
    assert logged[PREVIOUS.score].to_numpy() == pytest.approx(score)
    assert set(logged[PREVIOUS.version]) == {"1"}
    assert logged[list(CHALLENGER)].isna().all().all()
    again = from_parquet_bytes(to_parquet_bytes(logged))
    assert again[PREVIOUS.score].to_numpy() == pytest.approx(score)


def test_the_challenger_scores_the_same_rows_into_its_own_columns(fitted, monkeypatch):
    spec, model, frame = fitted
    other = fit(spec, generate_batch(1500, seed=11, concept_drift=True))
    models = {"1": model, "3": other}
    _watching(monkeypatch, lambda settings, version: models[version.version], challenger="3")
    logged = _logged(spec, frame)

    shadows = batches._shadows(spec, load_settings(), "2", frame, logged)

    assert shadows == {
        "shadow": {"version": "1", "scored": True},
        "challenger": {"version": "3", "scored": True},
    }
    predicted, score = predict(other, frame, spec)
    assert logged[CHALLENGER.prediction].tolist() == predicted.tolist()
    assert logged[CHALLENGER.score].to_numpy() == pytest.approx(score)
    assert set(logged[CHALLENGER.version]) == {"3"}
    assert logged[PREVIOUS.score].to_numpy() != pytest.approx(logged[CHALLENGER.score].to_numpy())


def test_a_challenger_already_promoted_to_champion_is_not_scored_twice(fitted, monkeypatch):
    spec, model, frame = fitted
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: None)
    monkeypatch.setattr(batches.registry, "client", lambda settings: SimpleNamespace(get_model_version=_mv))
    _challenger(monkeypatch, "2")
    logged = _logged(spec, frame)

    assert batches._shadows(spec, load_settings(), "2", frame, logged) == {"shadow": None, "challenger": None}
    assert logged[[*PREVIOUS, *CHALLENGER]].isna().all().all()


def test_a_shadow_that_fails_never_fails_the_batch_and_is_recorded(fitted, monkeypatch, caplog):
    spec, _, frame = fitted

    def broken(settings: Any, version: Any) -> Any:
        raise OSError("artifact checksum mismatch")

    _watching(monkeypatch, broken, challenger="3")
    logged = _logged(spec, frame)

    shadows = batches._shadows(spec, load_settings(), "2", frame, logged)

    failed = "OSError: artifact checksum mismatch"
    assert shadows["shadow"] == {"version": "1", "scored": False, "error": failed}
    assert shadows["challenger"] == {"version": "3", "scored": False, "error": failed}
    assert logged[[*PREVIOUS, *CHALLENGER]].isna().all().all()
    assert "shadow v1 did not score this batch" in caplog.text
    assert "shadow v3 did not score this batch; its challenger columns stay null" in caplog.text
    assert len(from_parquet_bytes(to_parquet_bytes(logged))) == len(frame)


def test_without_a_watched_promotion_or_a_challenger_the_shadow_columns_are_null(fitted, monkeypatch):
    spec, _, frame = fitted
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: None)
    _challenger(monkeypatch, None)
    logged = _logged(spec, frame)

    assert batches._shadows(spec, load_settings(), "1", frame, logged) == {"shadow": None, "challenger": None}
    assert logged[[*PREVIOUS, *CHALLENGER]].isna().all().all()


def test_a_disabled_watch_does_not_even_read_the_ledger(fitted, monkeypatch):
    spec, _, frame = fitted
    raw = example_spec("shadowed", "data", monitoring={"watch": {"enabled": False}})
    unwatched = PipelineSpec.model_validate(raw)

    def unexpected(*args: Any) -> None:
        raise AssertionError("the ledger was read")

    monkeypatch.setattr(batches, "watched_promotion", unexpected)
    _challenger(monkeypatch, None)
    logged = _logged(unwatched, frame)
    assert batches._shadows(unwatched, load_settings(), "2", frame, logged)["shadow"] is None
    assert logged[PREVIOUS.version].isna().all()
