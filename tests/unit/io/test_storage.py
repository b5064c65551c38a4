from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctloop.errors import StorageError
from ctloop.io.storage import LocalStorage, S3Storage, open_storage
from ctloop.settings import load_settings


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Storage(bucket, "prefix/inner", request.getfixturevalue("s3_endpoint"))


def test_write_read_list_exists(storage):
    assert not storage.exists("a/b.txt")
    uri = storage.write_bytes("a/b.txt", b"hello")
    storage.write_bytes("a/c/d.bin", b"\x00\x01")
    storage.write_bytes("z.txt", b"z")
    assert storage.exists("a/b.txt")
    assert storage.read_bytes("a/b.txt") == b"hello"
    assert storage.list_keys() == ["a/b.txt", "a/c/d.bin", "z.txt"]
    assert storage.list_keys("a") == ["a/b.txt", "a/c/d.bin"]
    assert uri == storage.uri("a/b.txt")


def test_fingerprint_changes_when_an_object_is_rewritten_even_at_the_same_size(storage):
    storage.write_bytes("batch.csv", b"a,b\n1,2\n")
    first = storage.fingerprint("batch.csv")
    assert storage.fingerprint("batch.csv") == first
    storage.write_bytes("batch.csv", b"a,b\n1,3\n")
    assert storage.fingerprint("batch.csv") != first


def test_missing_object_names_its_uri(storage):
    with pytest.raises(StorageError, match="missing.txt"):
        storage.read_bytes("missing.txt")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a//b", ""])
def test_keys_cannot_escape(storage, key):
    with pytest.raises(StorageError, match="relative path"):
        storage.write_bytes(key, b"x")


def test_local_write_leaves_no_partial_file_on_failure(tmp_path):
    store = LocalStorage(tmp_path)
    store.write_bytes("obj", b"old")

    with pytest.raises(TypeError):  # the write itself fails half-way
        store.write_bytes("obj", object())  # type: ignore[arg-type]
    assert store.read_bytes("obj") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["obj"]


def test_open_storage_resolves_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("CTLOOP_HOME", str(tmp_path))
    settings = load_settings()
    assert open_storage("rel/dir", settings) == LocalStorage(tmp_path / "rel/dir")
    assert open_storage("/abs/dir", settings).root.as_posix() == "/abs/dir"
    s3 = open_storage("s3://bucket/some/prefix", settings)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    with pytest.raises(StorageError, match="only local paths and s3://"):
        open_storage("gs://bucket/x", settings)
    with pytest.raises(StorageError, match="needs a bucket"):
        open_storage("s3:///x", settings)


def test_s3_objects_are_really_on_the_server(s3_bucket, s3_endpoint):
    import boto3

    S3Storage(s3_bucket, "p", s3_endpoint).write_bytes("k.bin", b"payload")
    body = (
        boto3.client("s3", endpoint_url=s3_endpoint)
        .get_object(Bucket=s3_bucket, Key="p/k.bin")["Body"]
        .read()
    )
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"payload").hexdigest()


def test_a_silent_s3_endpoint_fails_within_the_configured_bounds_naming_the_object(silent_endpoint):
    import time

    url, accepted = silent_endpoint
    storage = S3Storage("bucket", "p", url, connect_timeout_s=1.0, read_timeout_s=0.5, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://bucket/p/batches/b1\.csv: could not read: .*timeout"):
        storage.read_bytes("batches/b1.csv")
    assert time.monotonic() - started < 10  # botocore's defaults wait 60 s per attempt
    assert len(accepted) == 2  # max_attempts counts the first try
    with pytest.raises(StorageError, match=r"s3://bucket/p/out\.json: could not write"):
        storage.write_bytes("out.json", b"{}")


def test_open_storage_passes_the_s3_bounds_from_the_settings(tmp_path):
    settings = load_settings(
        {
            "CTLOOP_HOME": str(tmp_path),
            "CTLOOP_S3_CONNECT_TIMEOUT_S": "2",
            "CTLOOP_S3_READ_TIMEOUT_S": "7.5",
            "CTLOOP_S3_MAX_ATTEMPTS": "4",
        }
    )
    storage = open_storage("s3://bucket/x", settings)
    assert (storage.connect_timeout_s, storage.read_timeout_s, storage.max_attempts) == (2.0, 7.5, 4)
    config = storage._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_a_local_write_that_fails_names_the_path_and_leaves_no_partial_file(tmp_path):
    store = LocalStorage(tmp_path)
    (tmp_path / "taken").mkdir()  # a directory where the object should go
    with pytest.raises(
        StorageError, match=f"{re.escape(str(tmp_path / 'taken'))}: could not write: IsADirectoryError"
    ):
        store.write_bytes("taken", b"x")
    store.write_bytes("file", b"x")
    with pytest.raises(StorageError, match=f"{re.escape(str(tmp_path / 'file' / 'below'))}: could not write"):
        store.write_bytes("file/below", b"x")  # a file where a folder should be
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]
    assert list((tmp_path / "taken").iterdir()) == []


def test_a_full_disk_names_the_path(tmp_path, monkeypatch):
    import errno
    import os

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store = LocalStorage(tmp_path)
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(
        StorageError, match=f"{re.escape(str(tmp_path / 'snap.parquet'))}: could not write: .*No space left"
    ):
        store.write_bytes("snap.parquet", b"data")
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_local_object_names_its_path(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(
        StorageError, match=f"{re.escape(str(tmp_path / 'dir'))}: could not read: IsADirectoryError"
    ):
        LocalStorage(tmp_path).read_bytes("dir")


@pytest.mark.parametrize(
    ("root", "uri", "shown"),
    [
        (
            "{home}/storage",
            "{home}/storage/snapshots/churn/ab.parquet",
            "storage://snapshots/churn/ab.parquet",
        ),
        ("storage", "{home}/storage/validation/r/result.json", "storage://validation/r/result.json"),
        ("{home}/storage", "file://{home}/storage/x/y.html", "storage://x/y.html"),
        ("{home}/storage", "/srv/elsewhere/batch.csv", "batch.csv"),
        ("{home}/storage", "{home}/storage-old/a.csv", "a.csv"),  # a sibling, not below the root
        ("s3://bucket/ctloop", "s3://bucket/ctloop/snapshots/a.parquet", "storage://snapshots/a.parquet"),
        ("s3://bucket/ctloop", "s3://bucket/other/a.parquet", "s3://bucket/other/a.parquet"),
        ("{home}/storage", "models:/churn/3", "models:/churn/3"),
        ("{home}/storage", "https://example.com/r.html", "https://example.com/r.html"),
    ],
)
def test_a_storage_uri_is_shown_relative_to_ctloops_storage_never_as_a_server_path(root, uri, shown):
    from ctloop.io.storage import storage_relative

    settings = load_settings()
    home = str(settings.home)
    settings = settings.model_copy(update={"storage_root": root.format(home=home)})
    assert storage_relative(settings, uri.format(home=home)) == shown


# --- objects of any size: through local files, never whole in memory ----------------------------


def test_an_object_is_read_through_a_local_file_and_hashed_in_blocks(storage):
    payload = bytes(range(256)) * 9000  # larger than one hash block
    storage.write_bytes("big/batch.bin", payload)

    with storage.local_file("big/batch.bin") as path, path.open("rb") as handle:
        handle.seek(1000)
        assert handle.read(3) == payload[1000:1003]
    assert storage.sha256("big/batch.bin") == hashlib.sha256(payload).hexdigest()


def test_a_published_file_appears_whole_under_its_key(storage, tmp_path):
    source = tmp_path / "out.parquet"
    source.write_bytes(b"x" * 100_000)

    uri = storage.publish_file("predictions/p/part-0.parquet", source)

    assert uri == storage.uri("predictions/p/part-0.parquet")
    assert storage.read_bytes("predictions/p/part-0.parquet") == source.read_bytes()
    assert storage.list_keys() == ["predictions/p/part-0.parquet"]  # no partial file left beside it
    assert source.exists()


def test_an_object_is_copied_to_another_storage(storage, tmp_path):
    other = LocalStorage(tmp_path / "other")
    storage.write_bytes("in/batch.csv", b"a,b\n1,2\n")

    assert storage.copy_to("in/batch.csv", other, "quarantine/batch.csv") == other.uri("quarantine/batch.csv")
    assert other.read_bytes("quarantine/batch.csv") == b"a,b\n1,2\n"
    other.copy_to("quarantine/batch.csv", storage, "back/batch.csv")
    assert storage.read_bytes("back/batch.csv") == b"a,b\n1,2\n"


def test_streaming_a_missing_object_names_its_uri(storage, tmp_path):
    uri = re.escape(storage.uri("none.csv"))
    with pytest.raises(StorageError, match=uri):
        storage.sha256("none.csv")
    with pytest.raises(StorageError, match=uri), storage.local_file("none.csv"):
        pass
    with pytest.raises(StorageError, match=re.escape(storage.uri("x/y.bin"))):
        storage.publish_file("x/y.bin", tmp_path / "absent.bin")


def test_a_local_publish_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path / "store")

    def full(source, target):
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ctloop.io.storage.shutil.copyfile", full)
    source = tmp_path / "out.parquet"
    source.write_bytes(b"payload")
    with pytest.raises(StorageError, match=r"part-0\.parquet: could not write: OSError"):
        storage.publish_file("p/part-0.parquet", source)
    assert list((tmp_path / "store" / "p").iterdir()) == []


def test_a_byte_range_of_an_object_is_read_without_the_rest(storage):
    storage.write_bytes("batch.csv", b"header\nrow one\nrow two\n")

    assert storage.read_range("batch.csv", 7, 15) == b"row one\n"
    assert storage.read_range("batch.csv", 15, 100) == b"row two\n"  # past the end: what there is
    assert storage.read_range("batch.csv", 7, 7) == b""
    with pytest.raises(StorageError, match="missing.csv"):
        storage.read_range("missing.csv", 0, 3)


def test_each_listed_object_comes_with_when_it_was_last_written(storage):
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)  # S3 times are whole seconds
    storage.write_bytes("a/b.txt", b"1")
    storage.write_bytes("a/c/d.bin", b"2")
    storage.write_bytes("z.txt", b"3")
    after = datetime.now(UTC) + timedelta(seconds=2)

    found = storage.list_modified("a")

    assert sorted(found) == storage.list_keys("a") == ["a/b.txt", "a/c/d.bin"]
    assert all(before <= at <= after and at.utcoffset() == timedelta(0) for at in found.values())
    assert sorted(storage.list_modified()) == ["a/b.txt", "a/c/d.bin", "z.txt"]


def test_a_local_objects_time_is_its_files_mtime_and_a_file_gone_meanwhile_is_left_out(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("old.txt", b"x")
    storage.write_bytes("here.txt", b"x")
    os.utime(tmp_path / "old.txt", (1_000_000_000, 1_000_000_000))
    listed = LocalStorage.list_keys
    monkeypatch.setattr(
        LocalStorage, "list_keys", lambda self, prefix="": [*listed(self, prefix), "gone.txt"]
    )

    found = storage.list_modified()

    assert found.keys() == {"here.txt", "old.txt"}
    assert found["old.txt"] == datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)
