"""The scored-batch records: which content each batch id was scored from, and the reverse."""

from __future__ import annotations

import hashlib
import multiprocessing
import uuid

from ctloop.io.storage import LocalStorage, home_storage
from ctloop.scoring import scored_batches
from ctloop.settings import load_settings


def _source(batch_id: str, data: bytes) -> dict:
    return {"batch_id": batch_id, "key": f"{batch_id}.csv", "sha256": hashlib.sha256(data).hexdigest()}


def _claim(settings, pipeline: str, source: dict, partition_uri: str) -> str | None:
    """Both phases, as scoring runs them around its partition write."""
    first = scored_batches.reserve(settings, pipeline, source)
    if first is None:
        scored_batches.commit(settings, pipeline, source, partition_uri)
    return first


def test_a_content_is_claimed_by_one_batch_id_only():
    pipeline, settings = f"p{uuid.uuid4().hex[:8]}", load_settings()
    source = _source("batch-0001", b"rows")
    assert _claim(settings, pipeline, source, "partition-uri") is None
    assert _claim(settings, pipeline, source, "partition-uri") is None  # a retry of the same batch
    assert _claim(settings, pipeline, _source("batch-0002", b"rows"), "other") == "batch-0001"
    storage = home_storage(settings)
    assert scored_batches.scored_from(storage, pipeline, "batch-0001", source["sha256"])
    assert not scored_batches.scored_from(storage, pipeline, "batch-0002", source["sha256"])


def _reserve(pipeline: str, batch_id: str, barrier, results) -> None:
    barrier.wait()
    results.put(scored_batches.reserve(load_settings(), pipeline, _source(batch_id, b"same rows")))


def test_two_files_of_the_same_content_scored_at_once_claim_it_once():
    pipeline = f"p{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [
        context.Process(target=_reserve, args=(pipeline, f"batch-{i:04d}", barrier, results))
        for i in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    outcomes = [results.get(timeout=5) for _ in workers]
    assert outcomes.count(None) == 1  # one file claims the content ...
    (winner,) = set(outcomes) - {None}  # ... and the five others are told which one
    assert outcomes.count(winner) == 5


def test_a_redelivered_file_is_read_only_when_its_fingerprint_changed(tmp_path):
    pipeline, settings = f"p{uuid.uuid4().hex[:8]}", load_settings()
    storage, incoming = home_storage(settings), LocalStorage(tmp_path)
    incoming.write_bytes("batch-0001.csv", b"a,b\n1,2\n")
    batch = {"batch_id": "batch-0001", "key": "batch-0001.csv", "uri": incoming.uri("batch-0001.csv")}
    source = {**_source("batch-0001", b"a,b\n1,2\n"), "fingerprint": incoming.fingerprint("batch-0001.csv")}
    _claim(settings, pipeline, source, "uri")
    assert scored_batches.unchanged_since_scored(storage, incoming, pipeline, batch)

    incoming.write_bytes("batch-0001.csv", b"a,b\n1,2\n")  # delivered again, same bytes: a new mtime
    assert scored_batches.unchanged_since_scored(storage, incoming, pipeline, batch)
    record = scored_batches.batch_record(storage, pipeline, "batch-0001")
    assert record["fingerprint"] == incoming.fingerprint("batch-0001.csv")  # not hashed again next time

    incoming.write_bytes("batch-0001.csv", b"a,b\n1,3\n")  # same size, other content
    assert not scored_batches.unchanged_since_scored(storage, incoming, pipeline, batch)


def test_a_reserved_batch_is_not_scored_until_committed_and_a_release_frees_its_content(tmp_path):
    pipeline, settings = f"p{uuid.uuid4().hex[:8]}", load_settings()
    storage, incoming = home_storage(settings), LocalStorage(tmp_path)
    incoming.write_bytes("batch-0001.csv", b"a,b\n1,inf\n")
    batch = {"batch_id": "batch-0001", "key": "batch-0001.csv", "uri": incoming.uri("batch-0001.csv")}
    source = {**_source("batch-0001", b"a,b\n1,inf\n"), "fingerprint": incoming.fingerprint("batch-0001.csv")}

    assert scored_batches.reserve(settings, pipeline, source) is None
    assert scored_batches.reserved(storage, pipeline, "batch-0001")
    assert not scored_batches.scored_from(storage, pipeline, "batch-0001", source["sha256"])
    assert not scored_batches.unchanged_since_scored(storage, incoming, pipeline, batch)  # scored again
    assert scored_batches.reserve(settings, pipeline, source) is None  # its own retry goes on
    assert scored_batches.reserve(settings, pipeline, _source("batch-0002", b"a,b\n1,inf\n")) == "batch-0001"

    scored_batches.release(settings, pipeline, source)  # the batch was set aside
    assert scored_batches.batch_record(storage, pipeline, "batch-0001") is None
    assert scored_batches.reserve(settings, pipeline, _source("batch-0002", b"a,b\n1,inf\n")) is None

    scored_batches.commit(settings, pipeline, _source("batch-0002", b"a,b\n1,inf\n"), "uri")
    assert not scored_batches.reserved(storage, pipeline, "batch-0002")
    assert scored_batches.scored_from(storage, pipeline, "batch-0002", source["sha256"])
    scored_batches.release(settings, pipeline, _source("batch-0002", b"a,b\n1,inf\n"))  # commits stay
    assert scored_batches.scored_from(storage, pipeline, "batch-0002", source["sha256"])


def test_a_batch_replaced_after_an_unfinished_scoring_frees_the_old_content(tmp_path):
    pipeline, settings = f"p{uuid.uuid4().hex[:8]}", load_settings()
    old, new = _source("batch-0001", b"old rows"), _source("batch-0001", b"new rows")
    assert scored_batches.reserve(settings, pipeline, old) is None  # then the process died

    assert scored_batches.reserve(settings, pipeline, new) is None
    assert (
        scored_batches.batch_record(home_storage(settings), pipeline, "batch-0001")["sha256"] == new["sha256"]
    )
    assert scored_batches.reserve(settings, pipeline, _source("batch-0002", b"old rows")) is None
