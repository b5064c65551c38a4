"""Scoring hostile production batches and label files against a real champion (registered in this
worker's MLflow store, promoted through the ledger): never a changed champion, never a lost file.

Every example is a pipeline of its own, with its own incoming and labels areas, so examples never
see each other's files, partitions or set-aside folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ctloop.devtools.example_data import ID_COLUMN, TARGET, generate_batch, write_batches
from ctloop.errors import CtloopError
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import LocalStorage, home_storage
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.registry.mlflow_store import LoggedModel
from ctloop.scoring import scored_batches
from ctloop.scoring.batches import new_batches, score_batch
from ctloop.scoring.input_files import input_name
from ctloop.scoring.late_labels import QUARANTINE, join_labels
from ctloop.scoring.prediction_log import PREDICTIONS, partition_key
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.fuzz.common import FUZZ, assert_names
from tests.helpers import example_spec

# Fewer examples than the readers' fuzzing: every example registers, promotes and loads a champion.
SCORING = hypothesis_settings(FUZZ, max_examples=30)
BATCH_AREAS = ("quarantine", "conflicts", "duplicates")
SOMETIMES = st.integers(0, 2).map(lambda n: n == 0)  # one hostile change in three
HOSTILE_CELLS = st.sampled_from(
    [
        "",
        "NA",
        "n/a",
        "null",
        "None",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "x" * 3000,
        "é",
        "١٢",
        "0x1F",
    ]
)


@dataclass(frozen=True)
class Model:
    """A model fitted and logged once for the module, to be registered under each example's pipeline."""

    data: Path
    logged: LoggedModel
    run_id: str


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    data = tmp_path_factory.mktemp("fuzz-scoring") / "training"
    write_batches(data, range(1), rows=300)
    settings, spec = load_settings(), _spec(data, data)
    training = generate_batch(300, seed=1)
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, spec.name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(client, experiment, f"{spec.name}__train/manual__1", {})
    logged = registry.log_model(fit(spec, training), training[spec.columns.features].head(20), run_id)
    return Model(data, logged, run_id)


def _spec(data: Path, folder: Path, fmt: str = "csv") -> PipelineSpec:
    raw = example_spec(f"fz{uuid.uuid4().hex[:10]}", str(data))
    raw["scoring"] = {
        "incoming_uri": str(folder / "incoming"),
        "labels_uri": str(folder / "labels"),
        "format": fmt,
    }
    return PipelineSpec.model_validate(raw)


@contextlib.contextmanager
def _served(model: Model, fmt: str) -> Iterator[tuple[PipelineSpec, Settings, LocalStorage, LocalStorage]]:
    """A new pipeline whose champion v1 is the module's model, promoted as a gate promotes it; its
    incoming and labels areas."""
    settings = load_settings()
    with tempfile.TemporaryDirectory() as folder:
        spec = _spec(model.data, Path(folder), fmt)
        client = registry.client(settings)
        run_key = f"{spec.name}__train/manual__1"
        version = registry.register_version(client, spec.name, model.logged, model.run_id, run_key, {})
        moved = ledger.move_alias(
            settings,
            client,
            spec.name,
            str(version.version),
            expected_from=None,
            action="promotion",
            reason="fuzz: a champion to score with",
            run_key=run_key,
        )
        assert moved.moved, moved.why
        incoming, labels = LocalStorage(Path(folder) / "incoming"), LocalStorage(Path(folder) / "labels")
        yield spec, settings, incoming, labels


def _registry_state(spec: PipelineSpec, settings: Settings) -> tuple[Any, ...]:
    """The champion (version and tags) and every ledger row, in every state."""
    champion = registry.get_champion(registry.client(settings), spec.name)
    assert champion is not None
    rows = [entry.model_dump() for entry in ledger.entries(settings, spec.name, every_state=True)]
    return str(champion.version), dict(champion.tags), rows


def _set_aside(settings: Settings, areas: tuple[str, ...], spec: PipelineSpec, key: str, data: bytes) -> bool:
    """Whether ``key`` lies with these bytes in its own folder (``<area>/<pipeline>/<name>/``, or
    ``<name>~<sha256 prefix>/``) of one of ``areas``, with a reason.json beside it that gives a reason."""
    storage, name = home_storage(settings), input_name(key, spec.scoring.format)
    for area in areas:
        for found in storage.list_keys(f"{area}/{spec.name}"):
            folder = PurePosixPath(found).parent
            if (
                folder.name.split("~")[0] == name
                and PurePosixPath(found).name == PurePosixPath(key).name
                and storage.read_bytes(found) == data
                and storage.exists(f"{folder}/reason.json")
            ):
                reason = json.loads(storage.read_bytes(f"{folder}/reason.json"))
                return any(reason.get(why) for why in ("failures", "detail", "duplicate_of"))
    return False


# --- production batches -----------------------------------------------------------------------


@st.composite
def hostile_tables(draw: st.DrawFn) -> pd.DataFrame:
    """A production batch as a careless upstream system writes it: columns missing, extra,
    repeated or reordered, hostile cells (NA tokens, inf, huge or odd text) anywhere, any length;
    each change made only sometimes; half the tables are careful ones, good enough to score."""
    frame = generate_batch(draw(st.integers(0, 6)), seed=draw(st.integers(0, 9))).astype(object)
    if draw(st.booleans()):  # a careful upstream: the columns in any order, nothing else changed
        return frame[draw(st.permutations(list(frame.columns)))]
    if draw(SOMETIMES):
        frame = frame.drop(
            columns=draw(st.lists(st.sampled_from(list(frame.columns)), max_size=2, unique=True))
        )
    if draw(SOMETIMES):
        frame["extra"] = "x"
    frame = frame[draw(st.permutations(list(frame.columns)))]
    for _ in range(draw(st.integers(1, 3)) if len(frame) and draw(SOMETIMES) else 0):
        row = draw(st.integers(0, len(frame) - 1))
        frame.iloc[row, draw(st.integers(0, len(frame.columns) - 1))] = draw(HOSTILE_CELLS)
    if draw(SOMETIMES) and len(frame.columns):
        repeated = draw(st.sampled_from(list(frame.columns)))
        frame = pd.concat([frame, frame[[repeated]]], axis=1)
    return frame


@st.composite
def batch_bytes(draw: st.DrawFn, fmt: str) -> bytes:
    """Arbitrary bytes, or a hostile table in any delimiter and encoding (csv) or as parquet."""
    if draw(SOMETIMES):
        return draw(st.binary(max_size=300))
    frame = draw(hostile_tables())
    if fmt == "parquet":
        try:
            return to_parquet_bytes(frame)
        except (TypeError, ValueError):  # mixed or repeated columns pyarrow cannot store as they are
            return to_parquet_bytes(frame.loc[:, ~frame.columns.duplicated()].astype(str))
    return _csv(draw, frame)


def _csv(draw: st.DrawFn, frame: pd.DataFrame) -> bytes:
    """``frame`` as CSV, sometimes in another delimiter or encoding."""
    sep = draw(st.sampled_from([";", "\t", "|"])) if draw(SOMETIMES) else ","
    encoding = draw(st.sampled_from(["utf-8-sig", "utf-16", "latin-1"])) if draw(SOMETIMES) else "utf-8"
    return frame.to_csv(index=False, sep=sep).encode(encoding, errors="replace")


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, list[dict[str, bytes]]]:
    """A format and two rounds of files delivered to the incoming area, a scoring run after each:
    names that collide in batch id (case, sub-folders), a file of another format, the same content
    under two names, and a name delivered again with the same or other content after it was scored."""
    fmt = draw(st.sampled_from(["csv", "parquet"]))
    suffix = f".{fmt}"
    names = [
        f"b1{suffix}",
        f"b1{suffix.upper()}",
        f"day/b1{suffix}",
        f"day__b1{suffix}",
        f"b2{suffix}",
        "notes.txt",
    ]
    rounds: list[dict[str, bytes]] = []
    for smallest in (1, 0):
        files: dict[str, bytes] = {}
        for name in draw(st.lists(st.sampled_from(names), min_size=smallest, max_size=3, unique=True)):
            earlier = sorted({data for delivered in [*rounds, files] for data in delivered.values()})
            again = earlier and draw(st.booleans())
            files[name] = draw(st.sampled_from(earlier)) if again else draw(batch_bytes(fmt))
        rounds.append(files)
    return fmt, rounds


def _score_pending(spec: PipelineSpec, settings: Settings) -> int:
    """Score every pending batch as the scoring task does; every error is typed and names its file."""
    pending = new_batches(spec, settings)
    for batch in pending:
        try:
            score_batch(spec, settings, batch)
        except CtloopError as error:
            assert_names(error, batch["uri"])
    return len(pending)


@SCORING
@given(delivered=deliveries())
def test_hostile_batches_are_scored_or_set_aside_and_never_move_the_champion(model, delivered):
    fmt, rounds = delivered
    with _served(model, fmt) as (spec, settings, incoming, _):
        before = _registry_state(spec, settings)
        storage = home_storage(settings)
        for files in rounds:
            for key, data in files.items():
                incoming.write_bytes(key, data)

            _score_pending(spec, settings)

            assert _registry_state(spec, settings) == before
            for key, data in files.items():
                batch_id = input_name(key, fmt)
                if incoming.exists(key):  # left in place: scored from these bytes, or not a batch at all
                    assert incoming.read_bytes(key) == data
                    if batch_id is not None:
                        assert storage.exists(partition_key(PREDICTIONS, spec.name, batch_id)), key
                        assert scored_batches.scored_from(
                            storage, spec.name, batch_id, hashlib.sha256(data).hexdigest()
                        ), key
                else:
                    assert _set_aside(settings, BATCH_AREAS, spec, key, data), f"{key} was lost"
            assert new_batches(spec, settings) == []  # nothing left to fail again on the next run


# --- label files ------------------------------------------------------------------------------


@st.composite
def label_files(draw: st.DrawFn, ids: list[str], fmt: str) -> bytes:
    """Arbitrary bytes, or labels of scored and unknown ids, columns missing, extra or reordered,
    values sometimes hostile (another class, text, NA tokens, inf), in any delimiter and encoding."""
    if draw(SOMETIMES):
        return draw(st.binary(max_size=200))
    rows = draw(st.integers(0, 6))
    values = st.sampled_from(["0", "1", "1.0", 0, 1])
    if draw(SOMETIMES):
        values = st.one_of(values, st.sampled_from(["2", "maybe", -1]), HOSTILE_CELLS)
    id_values = st.sampled_from([*ids, "unknown"])
    if draw(SOMETIMES):
        id_values = st.one_of(id_values, HOSTILE_CELLS)
    columns = [ID_COLUMN, TARGET, *(["note"] if draw(SOMETIMES) else [])]
    if draw(SOMETIMES):
        columns = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    frame = pd.DataFrame(
        {
            c: draw(st.lists(id_values if c == ID_COLUMN else values, min_size=rows, max_size=rows))
            for c in draw(st.permutations(columns))
        }
    )
    return to_parquet_bytes(frame.astype(str)) if fmt == "parquet" else _csv(draw, frame)


def _join_error(spec: PipelineSpec, settings: Settings) -> CtloopError | None:
    """Join the labels as the join task does; the typed error it raises, if any."""
    try:
        join_labels(spec, settings)
    except CtloopError as error:
        return error
    return None


@SCORING
@given(data=st.data(), fmt=st.sampled_from(["csv", "parquet"]))
def test_hostile_label_files_join_or_are_set_aside_and_never_move_the_champion(model, data, fmt):
    with _served(model, fmt) as (spec, settings, incoming, labels):
        batch = generate_batch(6, seed=data.draw(st.integers(0, 9)))
        written = batch.to_csv(index=False).encode() if fmt == "csv" else to_parquet_bytes(batch)
        incoming.write_bytes(f"b1.{fmt}", written)
        assert _score_pending(spec, settings) == 1
        ids = batch[ID_COLUMN].astype(str).tolist()
        count = data.draw(st.integers(1, 3))
        files = {f"labels-{i}.{fmt}": data.draw(label_files(ids, fmt)) for i in range(count)}
        for key, content in files.items():
            labels.write_bytes(key, content)
        before = _registry_state(spec, settings)

        error = _join_error(spec, settings)
        if error is not None:
            assert any(labels.uri(key) in str(error) for key in files), f"no label file named: {error}"

        assert _registry_state(spec, settings) == before
        for key, content in files.items():
            if labels.exists(key):
                assert labels.read_bytes(key) == content
            else:
                assert _set_aside(settings, (QUARANTINE,), spec, key, content), f"{key} was lost"
        join_labels(spec, settings)  # the files left are all good: a second join does not fail again
        assert home_storage(settings).exists(partition_key(PREDICTIONS, spec.name, "b1"))
        assert _registry_state(spec, settings) == before
