"""A batch above ``scoring.fan_out_rows`` is planned into parts that each read only their chunks,
and the parts publish exactly the partition one task would have written."""

from __future__ import annotations

import csv
import uuid
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest

from ctloop.devtools.example_data import generate_batch
from ctloop.errors import BatchQuarantined
from ctloop.io.storage import LocalStorage, home_storage
from ctloop.scoring import batches, scored_batches
from ctloop.scoring.prediction_log import PREDICTIONS, partition_key
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.training.estimator import fit
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import (
    multiclass_batch,
    multiclass_spec,
    regression_batch,
    regression_spec,
)

FAN_OUT = {"chunk_rows": 10, "fan_out_rows": 20}  # 50 rows: 5 chunks in 3 parts


def _spec(kind: str, incoming: Any, fmt: str = "csv", **scoring: Any) -> PipelineSpec:
    name = f"p{uuid.uuid4().hex[:8]}"
    settings = {"incoming_uri": str(incoming), "format": fmt, **FAN_OUT, **scoring}
    if kind == "multiclass":
        return multiclass_spec(name, scoring=settings)
    if kind == "regression":
        return regression_spec(name, scoring=settings)
    return PipelineSpec.model_validate(example_spec(name, "data", scoring=settings))


_BATCHES = {"binary": generate_batch, "multiclass": multiclass_batch, "regression": regression_batch}


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """A fitted champion per task kind."""
    specs = {kind: _spec(kind, "unused") for kind in _BATCHES}
    return {kind: fit(specs[kind], make(600, seed=3)) for kind, make in _BATCHES.items()}


def _serve(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    """``model`` is the champion v1 of every pipeline, with no shadow."""
    champion = SimpleNamespace(version="1", tags={})
    client = SimpleNamespace(get_model_version=lambda name, version: champion)
    monkeypatch.setattr(batches.registry, "client", lambda settings: client)
    monkeypatch.setattr(batches.registry, "get_champion", lambda mlflow_client, name: champion)
    monkeypatch.setattr(batches.registry, "load_version", lambda settings, version, trust=None: model)
    monkeypatch.setattr(batches.registry, "get_alias", lambda mlflow_client, name, alias: None)
    monkeypatch.setattr(batches, "watched_promotion", lambda settings, name, champion: None)


_CSV_LAYOUTS = {  # how pandas writes the CSV: the plan reads it by byte ranges unless it is quoted
    "csv": {},
    "csv-crlf": {"lineterminator": "\r\n"},
    "csv-quoted": {"quoting": csv.QUOTE_NONNUMERIC},  # copied: a quoted value could hold a line break
}


def _deliver(incoming: LocalStorage, frame: pd.DataFrame, layout: str) -> str:
    """Write ``frame`` as batch-0001: a CSV (:data:`_CSV_LAYOUTS`; ``csv-no-final-newline``
    without the last row's line break), a Parquet file with row groups of 10 rows (the chunks),
    or one with one row group (copied)."""
    incoming.root.mkdir(parents=True, exist_ok=True)
    if layout.startswith("csv"):
        path = incoming.root / "batch-0001.csv"
        frame.to_csv(path, index=False, **_CSV_LAYOUTS.get(layout, {}))
        if layout == "csv-no-final-newline":
            path.write_bytes(path.read_bytes().removesuffix(b"\n"))
        return "csv"
    rows = 10 if layout == "parquet-groups" else len(frame)
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), incoming.root / "batch-0001.parquet", rows
    )
    return "parquet"


def _fanned_out(spec: PipelineSpec) -> tuple[batches.Claim, list[batches.PartResult], dict[str, Any]]:
    """Claim the one pending batch, score its parts last first, publish."""
    settings = load_settings()
    (batch,) = batches.new_batches(spec, settings)
    claim, done = batches.claim_batch(spec, settings, batch)
    assert done is None
    results = [batches.score_part(spec, settings, claim, part) for part in reversed(batches.parts(claim))]
    return claim, results, batches.publish(spec, settings, claim, results)


def _partition(spec: PipelineSpec) -> pd.DataFrame:
    key = partition_key(PREDICTIONS, spec.name, "batch-0001")
    return pd.read_parquet(home_storage(load_settings()).uri(key)).drop(columns=["scored_at"])


@pytest.mark.parametrize("kind", sorted(_BATCHES))
@pytest.mark.parametrize("layout", ["csv", "csv-quoted", "parquet-groups", "parquet-one-group"])
def test_parts_publish_the_partition_one_task_writes(kind, layout, models, monkeypatch, tmp_path):
    _serve(monkeypatch, models[kind])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = _BATCHES[kind](50, seed=4, batch_index=1).drop(columns=["churned"])  # no labels yet
    fmt = _deliver(incoming, frame, layout)
    single, fanned = _spec(kind, incoming.root, fmt), _spec(kind, incoming.root, fmt)

    one = batches.score_batch(single, load_settings(), batches.new_batches(single, load_settings())[0])
    claim, results, summary = _fanned_out(fanned)

    assert claim["plan"] is not None
    assert [r["part"] for r in results] == [{"index": i, "count": 3} for i in (2, 1, 0)]
    assert [r["chunks"] for r in results] == [1, 2, 2]  # chunks 2 / 1,4 / 0,3
    assert (summary["action"], summary["rows"]) == ("scored", one["rows"]) == ("scored", 50)
    pd.testing.assert_frame_equal(_partition(fanned), _partition(single).assign(batch_id="batch-0001"))
    storage = home_storage(load_settings())
    assert storage.list_keys(f"staging/{fanned.name}") == []  # the parts and the copies are dropped
    assert scored_batches.scored_from(storage, fanned.name, "batch-0001", claim["source"]["sha256"])


@pytest.mark.parametrize("layout", ["csv", "csv-quoted"])
def test_a_csv_claim_hashes_and_counts_the_batch_in_one_pass(layout, models, monkeypatch, tmp_path):
    """The claim's sha256 is the file's, computed in the pass that counts its lines: the storage is
    never asked to hash it (on S3 that was a whole read of its own before the download)."""
    import hashlib

    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), layout)
    spec = _spec("binary", incoming.root)

    def never(storage: LocalStorage, key: str) -> str:
        raise AssertionError(f"{key} hashed in a pass of its own")

    monkeypatch.setattr(LocalStorage, "sha256", never)
    claim = _claimed(spec)

    assert (
        claim["source"]["sha256"]
        == hashlib.sha256((incoming.root / "batch-0001.csv").read_bytes()).hexdigest()
    )
    assert claim["plan"] is not None
    assert claim["plan"]["parts"] == 3
    assert bool(claim["plan"]["ranges"]) == (layout == "csv")  # a quoted batch is copied instead


class _Reads:
    """What a part opened: storage keys, byte ranges and the batch file's row groups."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []
        self.groups: list[int] = []
        local_file, read_range, read_group = (
            LocalStorage.local_file,
            LocalStorage.read_range,
            batches._read_group,
        )

        def opened(storage: LocalStorage, key: str) -> Any:
            self.keys.append(key)
            return local_file(storage, key)

        def ranged(storage: LocalStorage, key: str, start: int, end: int) -> bytes:
            self.ranges.append((key, start, end))
            return read_range(storage, key, start, end)

        def group(parquet: Any, index: int, name: str) -> pa.Table:
            self.groups.append(index)
            return read_group(parquet, index, name)

        monkeypatch.setattr(LocalStorage, "local_file", opened)
        monkeypatch.setattr(LocalStorage, "read_range", ranged)
        monkeypatch.setattr(batches, "_read_group", group)
        monkeypatch.setattr(batches, "iter_chunks", self._never)

    @staticmethod
    def _never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a planned part parsed the whole batch")


def _claimed(spec: PipelineSpec) -> batches.Claim:
    settings = load_settings()
    claim, _ = batches.claim_batch(spec, settings, batches.new_batches(spec, settings)[0])
    return claim


def test_a_part_of_a_quoted_csv_batch_reads_only_the_copies_of_its_chunks(models, monkeypatch, tmp_path):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), "csv-quoted")
    spec = _spec("binary", incoming.root)
    claim = _claimed(spec)
    plan = claim["plan"]
    assert plan is not None
    assert (plan["parts"], plan["chunk_rows"], len(plan["copies"]), plan["ranges"]) == (3, [10] * 5, 5, [])
    reads = _Reads(monkeypatch)

    result = batches.score_part(spec, load_settings(), claim, {"index": 1, "count": 3})

    assert reads.keys == [plan["copies"][1], plan["copies"][4]]  # never the batch file, nor others' chunks
    assert (result["chunks"], result["rows"]) == (2, 20)


@pytest.mark.parametrize("layout", ["csv", "csv-crlf", "csv-no-final-newline"])
def test_a_part_of_a_csv_batch_reads_only_the_header_and_the_byte_ranges_of_its_chunks(
    layout, models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = generate_batch(50, seed=4).drop(columns=["churned"])
    _deliver(incoming, frame, layout)
    spec = _spec("binary", incoming.root)
    claim = _claimed(spec)
    plan = claim["plan"]
    assert plan is not None
    assert (plan["parts"], plan["chunk_rows"], plan["copies"]) == (3, [10] * 5, [])  # nothing copied
    assert home_storage(load_settings()).list_keys(f"staging/{spec.name}") == []
    reads = _Reads(monkeypatch)

    result = batches.score_part(spec, load_settings(), claim, {"index": 1, "count": 3})

    header = ("batch-0001.csv", 0, plan["ranges"][0][0])
    assert reads.ranges == [
        header,
        ("batch-0001.csv", *plan["ranges"][1]),
        ("batch-0001.csv", *plan["ranges"][4]),
    ]
    assert reads.keys == []  # the batch file is never read whole
    assert (result["chunks"], result["rows"]) == (2, 20)
    staged = pd.read_parquet(home_storage(load_settings()).uri(result["staging"]))
    assert (
        staged["customer_id"].tolist() == frame["customer_id"].iloc[[*range(10, 20), *range(40, 50)]].tolist()
    )


def test_a_part_of_a_parquet_batch_with_chunk_sized_row_groups_reads_only_its_groups(
    models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), "parquet-groups")
    spec = _spec("binary", incoming.root, "parquet")
    claim = _claimed(spec)
    assert claim["plan"] == {"parts": 3, "chunk_rows": [10] * 5, "copies": [], "ranges": []}  # read as it is
    reads = _Reads(monkeypatch)

    result = batches.score_part(spec, load_settings(), claim, {"index": 0, "count": 3})

    assert reads.groups == [0, 3]
    assert (result["chunks"], result["rows"]) == (2, 20)


@pytest.mark.parametrize("layout", ["csv", "csv-quoted"])
@pytest.mark.parametrize(("rows", "scoring", "parts"), [(20, {}, 1), (50, {"max_parts": 2}, 2), (50, {}, 3)])
def test_a_batch_is_split_only_above_fan_out_rows_and_into_at_most_max_parts(
    rows, scoring, parts, layout, models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(rows, seed=4).drop(columns=["churned"]), layout)
    spec = _spec("binary", incoming.root, **scoring)

    claim = _claimed(spec)

    assert batches.parts(claim) == [{"index": i, "count": parts} for i in range(parts)]
    staged = home_storage(load_settings()).list_keys(f"staging/{spec.name}")
    # a batch in one part is read as it streams, one in parts by byte ranges: only a quoted one is copied
    assert len(staged) == (5 if parts > 1 and layout == "csv-quoted" else 0)


def test_a_bad_chunk_in_one_part_sets_the_whole_batch_aside_naming_its_rows(models, monkeypatch, tmp_path):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = generate_batch(50, seed=4).drop(columns=["churned"])
    frame.loc[43, "contract"] = "weekly"  # chunk 4: part 1 of 3
    _deliver(incoming, frame, "csv")
    spec = _spec("binary", incoming.root)

    with pytest.raises(BatchQuarantined, match=r"'weekly'.*\(in rows 40-49\)"):
        _fanned_out(spec)

    storage = home_storage(load_settings())
    assert storage.list_keys(f"staging/{spec.name}") == []
    assert storage.exists(f"quarantine/{spec.name}/batch-0001/batch-0001.csv")
    assert not storage.exists(partition_key(PREDICTIONS, spec.name, "batch-0001"))
    assert scored_batches.batch_record(storage, spec.name, "batch-0001") is None


def test_a_batch_the_planning_pass_cannot_read_is_one_part_that_names_the_fault(
    models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = generate_batch(50, seed=4).drop(columns=["churned"]).astype({"tenure_months": object})
    frame.loc[37, "tenure_months"] = "about ten"
    _deliver(incoming, frame, "csv-quoted")
    spec = _spec("binary", incoming.root)

    assert _claimed(spec)["plan"] is None
    assert home_storage(load_settings()).list_keys(f"staging/{spec.name}") == []  # no copy left behind
    with pytest.raises(BatchQuarantined, match=r"numeric_dtype\[tenure_months\].*'about ten'"):
        _fanned_out(spec)


def test_an_unreadable_value_in_a_byte_range_sets_the_batch_aside_naming_its_true_rows(
    models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = generate_batch(50, seed=4).drop(columns=["churned"]).astype({"tenure_months": object})
    frame.loc[17, "tenure_months"] = "about ten"  # chunk 1: the second range, part 1 of 3
    _deliver(incoming, frame, "csv")
    spec = _spec("binary", incoming.root)

    with pytest.raises(
        BatchQuarantined, match=r"numeric_dtype\[tenure_months\].*'about ten'.*\(in rows 10-19\)"
    ):
        _fanned_out(spec)

    storage = home_storage(load_settings())
    assert storage.exists(f"quarantine/{spec.name}/batch-0001/batch-0001.csv")
    assert not storage.exists(partition_key(PREDICTIONS, spec.name, "batch-0001"))
    assert storage.list_keys(f"staging/{spec.name}") == []


def test_fan_out_rows_below_chunk_rows_is_refused():
    with pytest.raises(pydantic.ValidationError, match="fan_out_rows"):
        _spec("binary", "unused", chunk_rows=100, fan_out_rows=50)
    with pytest.raises(pydantic.ValidationError, match="max_parts"):
        _spec("binary", "unused", max_parts=0)


def test_a_part_retried_before_the_publish_replaces_its_own_staged_file(models, monkeypatch, tmp_path):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), "csv")
    single, spec, settings = _spec("binary", incoming.root), _spec("binary", incoming.root), load_settings()
    batches.score_batch(single, settings, batches.new_batches(single, settings)[0])
    claim = _claimed(spec)
    results = [batches.score_part(spec, settings, claim, part) for part in batches.parts(claim)]

    retried = batches.score_part(spec, settings, claim, results[1]["part"])  # its worker died after staging

    assert retried == results[1]
    summary = batches.publish(spec, settings, claim, [results[0], retried, results[2]])
    assert (summary["action"], summary["rows"]) == ("scored", 50)
    pd.testing.assert_frame_equal(_partition(spec), _partition(single).assign(batch_id="batch-0001"))


def test_a_part_and_the_publish_cleared_after_the_commit_change_nothing(models, monkeypatch, tmp_path):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), "csv")
    spec, settings = _spec("binary", incoming.root), load_settings()
    claim, results, summary = _fanned_out(spec)
    written = home_storage(settings).read_bytes(partition_key(PREDICTIONS, spec.name, "batch-0001"))

    again = batches.score_part(spec, settings, claim, results[1]["part"])  # its copies are gone: the file

    assert again == results[1]
    assert batches.publish(spec, settings, claim, [results[0], again, results[2]]) == summary
    storage = home_storage(settings)
    assert storage.read_bytes(partition_key(PREDICTIONS, spec.name, "batch-0001")) == written
    assert storage.list_keys(f"staging/{spec.name}") == []


def _reason(spec: PipelineSpec) -> dict[str, Any]:
    import json

    storage = home_storage(load_settings())
    return json.loads(storage.read_bytes(f"quarantine/{spec.name}/batch-0001/reason.json"))


def test_an_id_repeated_in_two_parts_fails_uniqueness_named_by_its_values(models, monkeypatch, tmp_path):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    frame = generate_batch(50, seed=4).drop(columns=["churned"])
    frame.loc[45, "customer_id"] = frame.loc[5, "customer_id"]  # chunks 0 and 4: parts 0 and 1
    _deliver(incoming, frame, "csv")
    spec = _spec("binary", incoming.root)

    with pytest.raises(BatchQuarantined, match="expect_column_values_to_be_unique"):
        _fanned_out(spec)

    (named,) = _reason(spec)["failures"]
    assert (named["check"], named["column"]) == ("expect_column_values_to_be_unique", "customer_id")
    assert "2 unexpected values" in named["detail"]
    assert frame.loc[5, "customer_id"] in named["detail"]


def test_the_parts_hash_unique_columns_and_a_hash_collision_never_fails_a_batch(
    models, monkeypatch, tmp_path
):
    _serve(monkeypatch, models["binary"])
    incoming = LocalStorage(tmp_path / "incoming")
    _deliver(incoming, generate_batch(50, seed=4).drop(columns=["churned"]), "csv")
    spec, settings = _spec("binary", incoming.root), load_settings()
    claim = _claimed(spec)
    monkeypatch.setattr(  # every value hashes alike: publish must compare the values themselves
        batches, "_row_hashes", lambda values: pa.array([7] * len(values), type=pa.uint64())
    )
    results = [batches.score_part(spec, settings, claim, part) for part in batches.parts(claim)]
    staged = pq.ParquetFile(home_storage(settings).uri(results[0]["staging"])).schema_arrow.names
    assert batches.HASHED + "customer_id" in staged

    summary = batches.publish(spec, settings, claim, results)

    assert (summary["action"], summary["rows"]) == ("scored", 50)
    assert not [c for c in _partition(spec).columns if c.startswith(batches.HASHED)]


def test_a_csv_batch_on_s3_is_fanned_out_by_byte_ranges(models, monkeypatch, s3_bucket, s3_endpoint):
    from ctloop.io.storage import S3Storage

    _serve(monkeypatch, models["binary"])
    monkeypatch.setenv("CTLOOP_S3_ENDPOINT_URL", s3_endpoint)
    frame = generate_batch(50, seed=4).drop(columns=["churned"])
    S3Storage(s3_bucket, "incoming", s3_endpoint).write_bytes(
        "batch-0001.csv", frame.to_csv(index=False).encode()
    )
    spec = _spec("binary", f"s3://{s3_bucket}/incoming")

    claim, results, summary = _fanned_out(spec)

    assert claim["plan"] is not None
    assert (len(claim["plan"]["ranges"]), claim["plan"]["copies"]) == (5, [])
    assert (summary["action"], summary["rows"]) == ("scored", 50)
    assert _partition(spec)["customer_id"].tolist() == frame["customer_id"].tolist()
