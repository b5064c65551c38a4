"""Setting a production batch aside (quarantine, duplicates, conflicts) never loses a file; the
shadow columns (the previous champion's, the challenger's) never cost a batch its predictions."""

from __future__ import annotations

import hashlib
import json
import uuid
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.errors import BatchConflict, BatchQuarantined, CtloopError
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.io.chunks import Chunk, iter_chunks
from ctloop.io.readers import from_parquet_bytes, read_options, to_parquet_bytes
from ctloop.io.storage import LocalStorage, home_storage
from ctloop.registry import tags
from ctloop.scoring import batches, scored_batches
from ctloop.scoring.batches import logged_columns, predict, set_aside
from ctloop.scoring.prediction_log import CHALLENGER, PREDICTIONS, PREVIOUS, SERVED, batch_ids, partition_key
from ctloop.settings import load_settings
from ctloop.spec.models import Features, PipelineSpec
from ctloop.training.estimator import fit, user_code_tags
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import multiclass_batch, multiclass_spec


def _spec(incoming) -> PipelineSpec:
    raw = example_spec(f"p{uuid.uuid4().hex[:8]}", "data", scoring={"incoming_uri": str(incoming)})
    return PipelineSpec.model_validate(raw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_batch_set_aside_twice_keeps_both_files_with_their_reasons(tmp_path):
    spec, settings, incoming = _spec(tmp_path), load_settings(), LocalStorage(tmp_path)
    batch = {"key": "batch-0001.csv", "batch_id": "batch-0001", "uri": incoming.uri("batch-0001.csv")}
    incoming.write_bytes("batch-0001.csv", b"first delivery")
    first = set_aside(spec, settings, batch, _sha(b"first delivery"), "quarantine", {"failures": ["a"]})
    incoming.write_bytes("batch-0001.csv", b"second delivery")
    second = set_aside(spec, settings, batch, _sha(b"second delivery"), "quarantine", {"failures": ["b"]})

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
    again = set_aside(spec, settings, batch, _sha(b"first delivery"), "quarantine", {"failures": ["a"]})
    assert again == first


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


def _shadows(spec: PipelineSpec, champion: str, frame: pd.DataFrame, logged: pd.DataFrame) -> dict[str, Any]:
    """Shadow-score ``frame`` into ``logged`` as a part of a batch does; what each shadow did."""
    shadows = batches._shadow_models(spec, load_settings(), champion)
    for shadow in shadows:
        shadow.score(spec, frame, logged)
    return {"shadow": shadows[0].outcome, "challenger": shadows[1].outcome}


def _claim(batch: dict[str, str], champion: str) -> dict[str, Any]:
    return {"batch": batch, "champion": champion, "scored_at": "2026-01-02T03:04:05+00:00"}


def test_the_previous_champion_scores_the_same_rows_into_the_shadow_columns(fitted, monkeypatch):
    spec, model, frame = fitted
    _watching(monkeypatch, lambda settings, version, trust=None: model if version.version == "1" else None)
    logged = _logged(spec, frame)

    shadows = _shadows(spec, "2", frame, logged)

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
    _watching(monkeypatch, lambda settings, version, trust=None: models[version.version], challenger="3")
    logged = _logged(spec, frame)

    shadows = _shadows(spec, "2", frame, logged)

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

    assert _shadows(spec, "2", frame, logged) == {"shadow": None, "challenger": None}
    assert logged[[*PREVIOUS, *CHALLENGER]].isna().all().all()


def test_a_shadow_that_fails_never_fails_the_batch_and_is_recorded(fitted, monkeypatch, caplog):
    spec, _, frame = fitted

    def broken(settings: Any, version: Any, trust: Any = None) -> Any:
        raise OSError("artifact checksum mismatch")

    _watching(monkeypatch, broken, challenger="3")
    logged = _logged(spec, frame)

    shadows = _shadows(spec, "2", frame, logged)

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

    assert _shadows(spec, "1", frame, logged) == {"shadow": None, "challenger": None}
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
    assert _shadows(unwatched, "2", frame, logged)["shadow"] is None
    assert logged[PREVIOUS.version].isna().all()


def test_a_multiclass_model_logs_every_class_probability_for_the_champion_and_its_shadows(monkeypatch):
    spec = multiclass_spec("shadowed_tiers")
    training, frame = multiclass_batch(800, seed=3), multiclass_batch(300, seed=4, batch_index=1)
    models = {
        "1": fit(spec, training.head(300)),
        "2": fit(spec, training),
        "3": fit(spec, training.tail(400)),
    }
    _watching(monkeypatch, lambda settings, version, trust=None: models[version.version], challenger="3")
    batch = {"key": "b.csv", "batch_id": "b", "uri": "b.csv"}

    logged = batches._predictions(spec, _claim(batch, "2"), models["2"], frame)
    shadows = _shadows(spec, "2", frame, logged)
    logged = from_parquet_bytes(to_parquet_bytes(logged))

    assert shadows == {
        "shadow": {"version": "1", "scored": True},
        "challenger": {"version": "3", "scored": True},
    }
    for columns, version in ((SERVED, "2"), (PREVIOUS, "1"), (CHALLENGER, "3")):
        model = models[version]
        probabilities = model.predict_proba(frame[spec.columns.features])
        for i, label in enumerate(("high", "low", "mid")):
            assert logged[f"{columns.score}__{label}"].to_numpy() == pytest.approx(probabilities[:, i])
        assert logged[columns.score].to_numpy() == pytest.approx(probabilities.max(axis=1))
        assert logged[columns.prediction].tolist() == model.predict(frame[spec.columns.features]).tolist()
        read = Predictions.from_frame(logged, columns.prediction, columns.score)
        assert read.classes.tolist() == ["high", "low", "mid"]


def test_a_binary_model_logs_exactly_its_prediction_and_score(fitted, monkeypatch):
    spec, model, frame = fitted
    _watching(monkeypatch, lambda settings, version, trust=None: model)
    batch = {"key": "b.csv", "batch_id": "b", "uri": "b.csv"}

    logged = batches._predictions(spec, _claim(batch, "2"), model, frame)
    _shadows(spec, "2", frame, logged)
    table = batches._arrow_table(spec, Chunk(0, 0, frame), logged)

    outputs = [*SERVED, "batch_id", "scored_at", *PREVIOUS, *CHALLENGER]
    assert table.column_names == [*logged_columns(spec), *outputs]


def test_a_csv_chunk_logs_its_own_arrow_columns_exactly_as_its_frame_would(fitted, tmp_path):
    """The log takes a CSV chunk's inputs from the Arrow table it was read as (no conversion back
    from Python): the same table as converting its frame, nulls, NaN as written and an empty text
    column included."""
    spec, model, frame = fitted
    frame = frame.copy()
    numeric, text = spec.columns.numeric[0], spec.columns.categorical[0]
    frame[numeric] = frame[numeric].astype(object)
    frame.loc[[0, 5], numeric] = ["NaN", ""]
    frame.loc[[1, 2], text] = ""
    frame[spec.columns.categorical[1]] = ""
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    (chunk,) = iter_chunks(path, "csv", "batch.csv", 10_000, read_options(spec.columns))
    assert chunk.table is not None
    logged = batches._predictions(spec, _claim({"batch_id": "b"}, "2"), model, chunk.frame)

    fast = batches._arrow_table(spec, chunk, logged)
    slow = batches._arrow_table(spec, chunk._replace(table=None), logged)

    assert fast.equals(slow)
    assert fast.column(numeric).null_count == 2


# --- scoring a batch: any failure of the batch sets it aside; ids of files ------------------------


@pytest.fixture
def served(fitted, monkeypatch, tmp_path) -> tuple[PipelineSpec, LocalStorage]:
    """A pipeline of its own whose champion v1 is the fitted model, with no shadow, and its incoming area."""
    _, model, _ = fitted
    spec = _spec(tmp_path / "incoming")
    champion = SimpleNamespace(name=spec.name, version="1", tags={})
    monkeypatch.setattr(batches.registry, "client", lambda settings: None)
    monkeypatch.setattr(batches.registry, "get_champion", lambda mlflow_client, name: champion)
    monkeypatch.setattr(batches.registry, "load_version", lambda settings, version, trust=None: model)
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: None)
    _challenger(monkeypatch, None)
    return spec, LocalStorage(tmp_path / "incoming")


def _deliver(incoming: LocalStorage, key: str, frame: pd.DataFrame) -> bytes:
    data = frame.drop(columns=["churned"]).to_csv(index=False).encode()
    incoming.write_bytes(key, data)
    return data


def _score_all(spec: PipelineSpec) -> dict[str, Any]:
    """What scoring each pending batch did, by batch id: its summary or its error."""
    done: dict[str, Any] = {}
    for batch in batches.new_batches(spec, load_settings()):
        try:
            done[batch["batch_id"]] = batches.score_batch(spec, load_settings(), batch)["action"]
        except CtloopError as exc:
            done[batch["batch_id"]] = exc
    return done


def _reason(spec: PipelineSpec, area: str, batch_id: str) -> dict[str, Any]:
    return json.loads(home_storage(load_settings()).read_bytes(f"{area}/{spec.name}/{batch_id}/reason.json"))


class _Unpredictable:
    """A champion that cannot predict these rows, as a model fitted on other columns or types."""

    classes_ = [0, 1]

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        raise ValueError("Input X contains infinity or a value too large for dtype('float32').")


def test_a_batch_whose_prediction_fails_is_set_aside_once_and_never_counted_as_scored(
    served, fitted, monkeypatch
):
    spec, incoming = served
    data = _deliver(incoming, "batch-0001.csv", fitted[2].head(50))
    monkeypatch.setattr(
        batches.registry, "load_version", lambda settings, version, trust=None: _Unpredictable()
    )

    done = _score_all(spec)

    assert isinstance(done["batch-0001"], BatchQuarantined)
    assert "prediction[table]: ValueError: Input X contains infinity" in str(done["batch-0001"])
    assert not incoming.exists("batch-0001.csv")
    storage = home_storage(load_settings())
    assert storage.read_bytes(f"quarantine/{spec.name}/batch-0001/batch-0001.csv") == data
    (named,) = _reason(spec, "quarantine", "batch-0001")["failures"]
    assert named["check"] == "prediction"
    assert "infinity" in named["detail"]
    assert scored_batches.batch_record(storage, spec.name, "batch-0001") is None
    assert not storage.exists(partition_key(PREDICTIONS, spec.name, "batch-0001"))
    assert _score_all(spec) == {}  # nothing fails again on the next run

    incoming.write_bytes("batch-0003.csv", data)  # the same content under a new id is not a "duplicate"
    assert "prediction[table]" in str(_score_all(spec)["batch-0003"])


def test_a_batch_with_an_infinite_value_is_set_aside_naming_the_column(served, fitted):
    spec, incoming = served
    frame = fitted[2].head(50).copy()
    frame.loc[3, "data_usage_gb"] = float("inf")  # no expectation bounds this column
    _deliver(incoming, "batch-0001.csv", frame)
    _deliver(incoming, "batch-0002.csv", fitted[2].tail(50))

    done = _score_all(spec)

    assert done["batch-0002"] == "scored"
    assert isinstance(done["batch-0001"], BatchQuarantined)
    (named,) = _reason(spec, "quarantine", "batch-0001")["failures"]
    assert "'data_usage_gb'" in named["detail"]
    assert scored_batches.batch_record(home_storage(load_settings()), spec.name, "batch-0001") is None
    assert _score_all(spec) == {}


def test_a_partition_write_that_fails_sets_the_batch_aside_unscored(served, fitted, monkeypatch):
    spec, incoming = served
    _deliver(incoming, "batch-0001.csv", fitted[2].head(50))

    publish_file = LocalStorage.publish_file

    def full(storage: LocalStorage, key: str, path: Any) -> str:
        if key.startswith(PREDICTIONS):
            raise OSError(28, "No space left on device")
        return publish_file(storage, key, path)

    monkeypatch.setattr(LocalStorage, "publish_file", full)
    (outcome,) = _score_all(spec).values()

    assert isinstance(outcome, BatchQuarantined)
    assert "write[table]: OSError" in str(outcome)
    assert _reason(spec, "quarantine", "batch-0001")["failures"][0]["check"] == "write"
    assert scored_batches.batch_record(home_storage(load_settings()), spec.name, "batch-0001") is None


def test_a_model_that_cannot_load_leaves_the_batch_in_place_for_the_next_run(served, fitted, monkeypatch):
    spec, incoming = served
    _deliver(incoming, "batch-0001.csv", fitted[2].head(50))

    def unavailable(settings: Any, version: Any, trust: Any = None) -> Any:
        raise ConnectionError("registry unavailable")

    monkeypatch.setattr(batches.registry, "load_version", unavailable)
    with pytest.raises(ConnectionError):
        _score_all(spec)

    assert incoming.exists("batch-0001.csv")
    assert scored_batches.batch_record(home_storage(load_settings()), spec.name, "batch-0001") is None
    monkeypatch.setattr(batches.registry, "load_version", lambda settings, version, trust=None: fitted[1])
    assert _score_all(spec) == {"batch-0001": "scored"}


def test_a_crash_between_reserving_and_writing_scores_the_batch_again(served, fitted, monkeypatch):
    spec, incoming = served
    _deliver(incoming, "batch-0001.csv", fitted[2].head(50))

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt  # as a process killed after the reservation

    monkeypatch.setattr(batches, "_shadow_models", killed)
    with pytest.raises(KeyboardInterrupt):
        _score_all(spec)
    monkeypatch.undo()
    assert scored_batches.reserved(home_storage(load_settings()), spec.name, "batch-0001")
    assert incoming.exists("batch-0001.csv")


def test_a_crash_after_the_write_before_the_commit_is_not_a_conflict(served, fitted, monkeypatch):
    spec, incoming = served
    _deliver(incoming, "batch-0001.csv", fitted[2].head(50))
    commit = scored_batches.commit

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batches.scored_batches, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        _score_all(spec)
    monkeypatch.setattr(batches.scored_batches, "commit", commit)

    assert _score_all(spec) == {"batch-0001": "scored"}
    assert _score_all(spec) == {}
    storage = home_storage(load_settings())
    assert not scored_batches.reserved(storage, spec.name, "batch-0001")


@pytest.mark.parametrize("key", ["batch-0001.CSV", "batch-0001.Csv"])
def test_an_upper_case_suffix_is_a_batch_of_the_format(served, fitted, key):
    spec, incoming = served
    _deliver(incoming, key, fitted[2].head(50))
    incoming.write_bytes("notes.txt", b"not a batch")

    assert [b["batch_id"] for b in batches.new_batches(spec, load_settings())] == ["batch-0001"]
    assert _score_all(spec) == {"batch-0001": "scored"}


def test_a_scored_batch_whose_partition_retention_deleted_is_not_scored_again(served, fitted):
    """Retention deletes old prediction partitions while their files stay in the incoming area: the
    batch's record says it was scored, so it is not pending; new content under its id still is."""
    spec, incoming = served
    _deliver(incoming, "batch-0001.csv", fitted[2].head(50))
    assert _score_all(spec) == {"batch-0001": "scored"}
    storage = home_storage(load_settings())
    storage.delete(partition_key(PREDICTIONS, spec.name, "batch-0001"))

    assert batches.new_batches(spec, load_settings()) == []

    _deliver(incoming, "batch-0001.csv", fitted[2].tail(50))  # other content under the same id
    assert [b["batch_id"] for b in batches.new_batches(spec, load_settings())] == ["batch-0001"]


def test_files_of_one_name_in_two_sub_folders_are_two_batches(served, fitted):
    spec, incoming = served
    _deliver(incoming, "2026-01-01/batch.csv", fitted[2].head(50))
    _deliver(incoming, "2026-01-02/batch.csv", fitted[2].tail(50))

    assert _score_all(spec) == {"2026-01-01__batch": "scored", "2026-01-02__batch": "scored"}
    assert batch_ids(PREDICTIONS, spec.name, load_settings()) == ["2026-01-01__batch", "2026-01-02__batch"]


def test_a_second_file_of_the_same_batch_id_is_set_aside_as_a_conflict(served, fitted):
    spec, incoming = served
    _deliver(incoming, "2026-01-01/batch.csv", fitted[2].head(50))
    data = _deliver(incoming, "2026-01-01__batch.csv", fitted[2].tail(50))

    pending = batches.new_batches(spec, load_settings())

    assert [(b["key"], b["batch_id"]) for b in pending] == [
        ("2026-01-01/batch.csv", "2026-01-01__batch"),
        ("2026-01-01__batch.csv", "2026-01-01__batch"),
    ]
    assert batches.score_batch(spec, load_settings(), pending[0])["action"] == "scored"
    with pytest.raises(BatchConflict, match="is also the id of '2026-01-01/batch.csv'"):
        batches.score_batch(spec, load_settings(), pending[1])
    assert not incoming.exists("2026-01-01__batch.csv")
    storage = home_storage(load_settings())
    assert storage.read_bytes(f"conflicts/{spec.name}/2026-01-01__batch/2026-01-01__batch.csv") == data
    assert _reason(spec, "conflicts", "2026-01-01__batch")["collides_with"] == "2026-01-01/batch.csv"
    assert _score_all(spec) == {}


def test_a_file_colliding_with_a_scored_batch_never_displaces_it(served, fitted):
    spec, incoming = served
    scored = _deliver(incoming, "2026-01-01__batch.csv", fitted[2].head(50))
    assert _score_all(spec) == {"2026-01-01__batch": "scored"}
    later = _deliver(incoming, "2026-01-01/batch.csv", fitted[2].tail(50))  # sorts before the scored one

    (pending,) = batches.new_batches(spec, load_settings())
    with pytest.raises(BatchConflict, match="is also the id of '2026-01-01__batch.csv'"):
        batches.score_batch(spec, load_settings(), pending)

    assert incoming.read_bytes("2026-01-01__batch.csv") == scored
    assert not incoming.exists("2026-01-01/batch.csv")
    storage = home_storage(load_settings())
    assert storage.read_bytes(f"conflicts/{spec.name}/2026-01-01__batch/batch.csv") == later


def test_scoring_with_feature_code_changed_since_the_champion_was_trained_says_so(
    served, fitted, monkeypatch
):
    spec, incoming = served
    spec = spec.model_copy(
        update={"features": Features(factory="tests.unit.training.user_code.custom.ratio")}
    )
    current = user_code_tags(spec)
    champion = SimpleNamespace(name=spec.name, version="1", tags=dict(current))
    monkeypatch.setattr(batches.registry, "get_champion", lambda mlflow_client, name: champion)
    _deliver(incoming, "batch-0001.csv", fitted[2].head(20))
    (batch,) = batches.new_batches(spec, load_settings())
    assert "user_code_changed" not in batches.score_batch(spec, load_settings(), batch)

    champion.tags[tags.FEATURES_SHA256] = "0" * 64  # trained with other feature code than today's
    _deliver(incoming, "batch-0002.csv", fitted[2].iloc[20:40])
    (batch,) = batches.new_batches(spec, load_settings())
    summary = batches.score_batch(spec, load_settings(), batch)
    assert summary["action"] == "scored"  # scored all the same: the change is recorded, not refused
    (changed,) = summary["user_code_changed"]
    assert changed.startswith("tests.unit.training.user_code.custom.ratio: source sha256")


# --- streaming: chunk by chunk, one verdict per batch, parts assembled into one partition ---------


def _in_chunks(spec: PipelineSpec, rows: int) -> PipelineSpec:
    return spec.model_copy(update={"scoring": spec.scoring.model_copy(update={"chunk_rows": rows})})


def _partition(spec: PipelineSpec, batch_id: str) -> pd.DataFrame:
    return from_parquet_bytes(
        home_storage(load_settings()).read_bytes(partition_key(PREDICTIONS, spec.name, batch_id))
    )


def test_a_batch_scored_in_chunks_logs_every_row_in_order_as_one_row_group_per_chunk(served, fitted):
    import pyarrow.parquet as pq

    spec, incoming = served
    spec, model, frame = _in_chunks(spec, 7), fitted[1], fitted[2].head(50)
    _deliver(incoming, "batch-0001.csv", frame)

    assert _score_all(spec) == {"batch-0001": "scored"}

    logged = _partition(spec, "batch-0001")
    predicted, score = predict(model, frame, spec)
    assert logged["customer_id"].tolist() == frame["customer_id"].tolist()
    assert logged[SERVED.prediction].tolist() == predicted.tolist()
    assert logged[SERVED.score].to_numpy() == pytest.approx(score)
    assert logged["scored_at"].nunique() == 1
    key = partition_key(PREDICTIONS, spec.name, "batch-0001")
    parquet = pq.ParquetFile(home_storage(load_settings()).uri(key))
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [7] * 7 + [1]


def test_a_failing_chunk_sets_the_whole_batch_aside_naming_its_rows(served, fitted):
    spec, incoming = served
    spec, frame = _in_chunks(spec, 20), fitted[2].head(50).copy()
    frame.loc[25, "contract"] = "weekly"
    data = _deliver(incoming, "batch-0001.csv", frame)

    (outcome,) = _score_all(spec).values()

    assert isinstance(outcome, BatchQuarantined)
    (named,) = _reason(spec, "quarantine", "batch-0001")["failures"]
    assert (named["check"], named["column"]) == ("expect_column_values_to_be_in_set", "contract")
    assert "'weekly'" in named["detail"]
    assert named["detail"].endswith("(in rows 20-39)")
    assert batch_ids(PREDICTIONS, spec.name, load_settings()) == []
    storage = home_storage(load_settings())
    assert storage.read_bytes(f"quarantine/{spec.name}/batch-0001/batch-0001.csv") == data
    assert scored_batches.batch_record(storage, spec.name, "batch-0001") is None
    assert storage.list_keys(f"staging/{spec.name}") == []


def test_a_value_repeated_across_chunks_fails_uniqueness_over_the_whole_batch(served, fitted):
    spec, incoming = served
    spec, frame = _in_chunks(spec, 20), fitted[2].head(50).copy()
    frame.loc[45, "customer_id"] = frame.loc[5, "customer_id"]  # chunks 0 and 2: each unique alone
    _deliver(incoming, "batch-0001.csv", frame)

    (outcome,) = _score_all(spec).values()

    assert isinstance(outcome, BatchQuarantined)
    (named,) = _reason(spec, "quarantine", "batch-0001")["failures"]
    assert (named["check"], named["column"]) == ("expect_column_values_to_be_unique", "customer_id")
    assert "2 unexpected values" in named["detail"]


def test_a_column_empty_in_some_chunks_only_has_values_and_one_empty_in_all_does_not(served, fitted):
    spec, incoming = served
    spec = _in_chunks(spec, 20)
    partly, empty = fitted[2].head(50).copy(), fitted[2].tail(50).copy()
    partly.loc[partly.index[:40], "credit_score"] = float("nan")
    empty["credit_score"] = float("nan")
    _deliver(incoming, "batch-0001.csv", partly)
    _deliver(incoming, "batch-0002.csv", empty)

    done = _score_all(spec)

    assert done["batch-0001"] == "scored"
    assert isinstance(done["batch-0002"], BatchQuarantined)
    (named,) = _reason(spec, "quarantine", "batch-0002")["failures"]
    assert (named["check"], named["column"]) == ("not_all_null", "credit_score")
    assert "no value in any of its 50 rows" in named["detail"]


def test_parts_scored_in_any_order_and_retried_publish_the_batch_once(served, fitted, monkeypatch):
    spec, incoming = served
    monkeypatch.setattr(batches.registry, "client", lambda settings: SimpleNamespace(get_model_version=_mv))
    spec, model, frame = _in_chunks(spec, 7), fitted[1], fitted[2].head(50)
    _deliver(incoming, "batch-0001.csv", frame)
    settings = load_settings()
    (batch,) = batches.new_batches(spec, settings)

    claim, done = batches.claim_batch(spec, settings, batch)
    assert done is None
    parts = {i: batches.score_part(spec, settings, claim, {"index": i, "count": 3}) for i in (2, 0, 1)}
    retried = batches.score_part(spec, settings, claim, {"index": 1, "count": 3})  # a worker lost mid-part
    assert retried == parts[1]
    assert [parts[i]["chunks"] for i in range(3)] == [3, 3, 2]  # chunks 0,3,6 / 1,4,7 / 2,5
    storage = home_storage(settings)
    assert len(storage.list_keys(f"staging/{spec.name}")) == 3
    with pytest.raises(CtloopError, match="every part"):
        batches.publish(spec, settings, claim, [parts[0], parts[2]])

    summary = batches.publish(spec, settings, claim, [parts[1], parts[0], parts[2]])

    assert (summary["action"], summary["rows"], summary["model_version"]) == ("scored", 50, "1")
    logged = _partition(spec, "batch-0001")
    assert logged["customer_id"].tolist() == frame["customer_id"].tolist()
    assert logged[SERVED.prediction].tolist() == predict(model, frame, spec)[0].tolist()
    assert storage.list_keys(f"staging/{spec.name}") == []
    assert scored_batches.scored_from(storage, spec.name, "batch-0001", claim["source"]["sha256"])
    assert batches.publish(spec, settings, claim, [parts[0], parts[1], parts[2]]) == summary  # retried
    assert _partition(spec, "batch-0001")["customer_id"].tolist() == frame["customer_id"].tolist()
    assert _score_all(spec) == {}


def test_a_part_that_fails_sets_the_batch_aside_only_when_it_is_published(served, fitted, monkeypatch):
    spec, incoming = served
    monkeypatch.setattr(batches.registry, "client", lambda settings: SimpleNamespace(get_model_version=_mv))
    spec, frame = _in_chunks(spec, 10), fitted[2].head(50).copy()
    frame.loc[33, "tenure_months"] = -5  # chunk 3: part 1 of 2
    _deliver(incoming, "batch-0001.csv", frame)
    settings = load_settings()
    (batch,) = batches.new_batches(spec, settings)
    claim, _ = batches.claim_batch(spec, settings, batch)

    parts = [batches.score_part(spec, settings, claim, {"index": i, "count": 2}) for i in range(2)]

    assert parts[0]["failures"] == []
    assert [f["detail"].endswith("(in rows 30-39)") for f in parts[1]["failures"]] == [True]
    assert incoming.exists("batch-0001.csv")  # the other parts may still be reading it
    with pytest.raises(BatchQuarantined, match=r"expect_column_values_to_be_between\[tenure_months\]"):
        batches.publish(spec, settings, claim, parts)
    assert not incoming.exists("batch-0001.csv")
    assert home_storage(settings).list_keys(f"staging/{spec.name}") == []
    assert scored_batches.batch_record(home_storage(settings), spec.name, "batch-0001") is None


def test_a_parquet_batch_on_s3_is_scored_and_a_bad_one_moved_aside_whole(
    fitted, monkeypatch, s3_bucket, s3_endpoint
):
    from ctloop.io.storage import S3Storage

    _, model, frame = fitted
    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", s3_endpoint)
    raw = example_spec(
        f"p{uuid.uuid4().hex[:8]}",
        "data",
        scoring={"incoming_uri": f"s3://{s3_bucket}/incoming", "format": "parquet", "chunk_rows": 15},
    )
    spec = PipelineSpec.model_validate(raw)
    champion = SimpleNamespace(name=spec.name, version="1", tags={})
    monkeypatch.setattr(batches.registry, "client", lambda settings: None)
    monkeypatch.setattr(batches.registry, "get_champion", lambda mlflow_client, name: champion)
    monkeypatch.setattr(batches.registry, "load_version", lambda settings, version, trust=None: model)
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: None)
    _challenger(monkeypatch, None)
    incoming = S3Storage(s3_bucket, "incoming", s3_endpoint)
    bad = frame.tail(40).copy()
    bad.loc[bad.index[-1], "contract"] = "weekly"
    incoming.write_bytes("batch-0001.parquet", to_parquet_bytes(frame.head(40).drop(columns=["churned"])))
    bad_data = to_parquet_bytes(bad.drop(columns=["churned"]))
    incoming.write_bytes("batch-0002.parquet", bad_data)

    done = _score_all(spec)

    assert done["batch-0001"] == "scored"
    assert isinstance(done["batch-0002"], BatchQuarantined)
    assert "(in rows 30-39)" in str(done["batch-0002"])
    assert _partition(spec, "batch-0001")["customer_id"].tolist() == frame.head(40)["customer_id"].tolist()
    kept = home_storage(load_settings()).read_bytes(f"quarantine/{spec.name}/batch-0002/batch-0002.parquet")
    assert kept == bad_data
    assert incoming.list_keys() == ["batch-0001.parquet"]


class _Counting:
    """The champion, recording the most rows it was asked to predict at once."""

    def __init__(self, model: Any) -> None:
        self.model, self.most = model, 0
        self.classes_ = model.classes_

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        self.most = max(self.most, len(frame))
        return self.model.predict_proba(frame)


def test_a_large_batch_is_never_held_whole(served, fitted, monkeypatch, tmp_path):
    import tracemalloc

    spec, incoming = served
    spec = _in_chunks(spec, 8_000)
    frame = generate_batch(160_000, seed=5, batch_index=2)
    whole = int(frame.memory_usage(deep=True).sum())
    incoming.root.mkdir(parents=True)
    frame.drop(columns=["churned"]).to_csv(incoming.root / "batch-0001.csv", index=False)
    del frame
    model = _Counting(fitted[1])
    monkeypatch.setattr(batches.registry, "load_version", lambda settings, version, trust=None: model)
    _deliver(incoming, "batch-0000.csv", fitted[2].head(50))
    batches.score_batch(spec, load_settings(), batches.new_batches(spec, load_settings())[0])  # imports GX

    tracemalloc.start()
    try:
        assert _score_all(spec) == {"batch-0001": "scored"}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert model.most == 8_000
    assert peak < whole / 4, (peak, whole)  # a few chunks' worth: 1/20 of the batch each
    assert len(_partition(spec, "batch-0001")) == 160_000
