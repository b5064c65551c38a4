from __future__ import annotations

import hashlib

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
