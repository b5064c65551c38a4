"""One small interface over a local directory and S3, so every stack reads and writes alike.

Keys are ``/``-separated relative paths. Writes are atomic: a reader sees the whole object or
nothing (local files are renamed into place; an S3 PUT is atomic by itself, and so is a managed
upload, whose object exists only once it completes). Objects of any size are read and written
through local files (:meth:`Storage.local_file`, :meth:`Storage.publish_file`), never whole in
memory. Every failure is a :class:`~ctloop.errors.StorageError` naming the path or ``s3://`` URI
at fault, and an S3 call waits at most ``max_attempts`` x (``connect_timeout_s`` +
``read_timeout_s``) plus botocore's backoff: botocore's own defaults (60 s per read, retried)
held a task for minutes on a silent endpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from ctloop.errors import StorageError
from ctloop.settings import S3_CONNECT_TIMEOUT_S, S3_MAX_ATTEMPTS, S3_READ_TIMEOUT_S

if TYPE_CHECKING:
    from ctloop.settings import Settings


class Storage(Protocol):
    """What ctloop needs of a store of objects."""

    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object, without reading the rest."""
        ...

    def write_bytes(self, key: str, data: bytes) -> str: ...
    def list_keys(self, prefix: str = "") -> list[str]: ...
    def list_modified(self, prefix: str = "") -> dict[str, datetime]:
        """Every object :meth:`list_keys` lists, with when it was last written (UTC): in one listing,
        not one request per object."""
        ...

    def delete(self, key: str) -> None: ...
    def fingerprint(self, key: str) -> str: ...
    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """A seekable local file holding the object, for as long as the context lasts."""
        ...

    def sha256(self, key: str) -> str:
        """The object's sha256, read in blocks."""
        ...

    def publish_file(self, key: str, path: Path) -> str:
        """Write the local file ``path`` under ``key`` atomically; returns the object's URI."""
        ...

    def copy_to(self, key: str, target: Storage, target_key: str) -> str:
        """Copy the object to ``target_key`` of ``target`` through a local file; returns its URI there."""
        ...


HASH_BLOCK_BYTES = 1 << 20


def fingerprint_size(fingerprint: str) -> int:
    """The object's size in bytes, from its :meth:`Storage.fingerprint` (``size:version``)."""
    return int(fingerprint.split(":", 1)[0])


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _copy_via_file(source: Storage, key: str, target: Storage, target_key: str) -> str:
    with source.local_file(key) as path:
        return target.publish_file(target_key, path)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"storage key {key!r} must be a relative path without '.' or '..' parts")
    return key


@contextmanager
def _naming(where: str, action: str, errors: tuple[type[Exception], ...] = (OSError,)) -> Iterator[None]:
    """Re-raise ``errors`` as a :class:`StorageError` that names ``where``: a bare
    ``[Errno 28] No space left on device`` does not say which disk or object."""
    try:
        yield
    except errors as exc:
        raise StorageError(f"{where}: could not {action}: {type(exc).__name__}: {exc}") from exc


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place: a reader sees the old
    object or the whole new one, never part of it; the temporary file is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class LocalStorage:
    """Objects as files below ``root``."""

    root: Path

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with _naming(str(path), "check"):
            return path.is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _naming(str(path), "read"):
            try:
                return path.read_bytes()
            except FileNotFoundError as exc:
                raise StorageError(f"{path}: no such object") from exc

    def read_range(self, key: str, start: int, end: int) -> bytes:
        path = self._path(key)
        with _naming(str(path), "read"):
            try:
                with path.open("rb") as file:
                    file.seek(start)
                    return file.read(end - start)
            except FileNotFoundError as exc:
                raise StorageError(f"{path}: no such object") from exc

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with _naming(str(path), "write"):
            _replace_atomically(path, lambda tmp: tmp.write_bytes(data))
        return str(path)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _naming(str(path), "delete"):
            path.unlink(missing_ok=True)

    def fingerprint(self, key: str) -> str:
        """Changes whenever the object is rewritten, without reading it: size and mtime."""
        path = self._path(key)
        with _naming(str(path), "stat"):
            stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        """The object's own file: nothing is copied."""
        path = self._path(key)
        with _naming(str(path), "read"):
            if not path.is_file():
                raise StorageError(f"{path}: no such object")
        yield path

    def sha256(self, key: str) -> str:
        path = self._path(key)
        with _naming(str(path), "read"):
            try:
                return _file_sha256(path)
            except FileNotFoundError as exc:
                raise StorageError(f"{path}: no such object") from exc

    def publish_file(self, key: str, path: Path) -> str:
        """Copied to a temporary file beside the target, then renamed into place."""
        target = self._path(key)
        with _naming(str(target), "write"):
            _replace_atomically(target, lambda tmp: shutil.copyfile(path, tmp))
        return str(target)

    def copy_to(self, key: str, target: Storage, target_key: str) -> str:
        return _copy_via_file(self, key, target, target_key)

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        with _naming(str(base), "list"):
            if base.is_file():
                return [prefix]
            if not base.is_dir():
                return []
            return sorted(
                p.relative_to(self.root).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )

    def list_modified(self, prefix: str = "") -> dict[str, datetime]:
        """Each file's mtime; a file deleted between the listing and its ``stat`` is left out."""
        found: dict[str, datetime] = {}
        for key in self.list_keys(prefix):
            path = self.root / key
            with _naming(str(path), "stat"), suppress(FileNotFoundError):
                found[key] = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return found


@dataclass(frozen=True)
class S3Storage:
    """Objects under ``s3://bucket/prefix``; ``endpoint_url`` points at MinIO or another S3.

    ``connect_timeout_s`` and ``read_timeout_s`` bound each attempt (``read_timeout_s`` is the
    longest silence tolerated while waiting for or reading a response); ``max_attempts`` counts the
    first try (botocore's ``standard`` retry mode, which backs off between attempts).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    connect_timeout_s: float = S3_CONNECT_TIMEOUT_S
    read_timeout_s: float = S3_READ_TIMEOUT_S
    max_attempts: int = S3_MAX_ATTEMPTS

    @property
    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
        )
        return boto3.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _call(self, where: str, action: str, call: Callable[[Any], Any]) -> Any:
        """``call(client)``, its errors named by ``where``."""
        from botocore.exceptions import BotoCoreError, ClientError

        with _naming(where, action, (OSError, BotoCoreError, ClientError)):
            return call(self._client)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix.rstrip('/')}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(
                self.uri(key), "check", lambda c: c.head_object(Bucket=self.bucket, Key=self._key(key))
            )
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "404",
                "NoSuchKey",
                "NotFound",
            ):
                return False
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        def read(client: Any) -> bytes:  # the body streams after the call: its errors count too
            body: bytes = client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            return body

        data: bytes = self._call(self.uri(key), "read", read)
        return data

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:  # an empty HTTP range is not satisfiable
            return b""

        def read(client: Any) -> bytes:
            response = client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end - 1}"
            )
            body: bytes = response["Body"].read()
            return body

        data: bytes = self._call(self.uri(key), "read", read)
        return data

    def write_bytes(self, key: str, data: bytes) -> str:
        self._call(
            self.uri(key), "write", lambda c: c.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        )
        return self.uri(key)

    def delete(self, key: str) -> None:
        self._call(self.uri(key), "delete", lambda c: c.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def fingerprint(self, key: str) -> str:
        """Changes whenever the object is rewritten, without reading it: size and ETag."""
        head = self._call(
            self.uri(key), "stat", lambda c: c.head_object(Bucket=self.bucket, Key=self._key(key))
        )
        return f"{head['ContentLength']}:{head['ETag']}"

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        """The object downloaded (boto3's managed transfer, in parts) to a temporary file,
        deleted when the context ends."""
        name = PurePosixPath(key).name
        with tempfile.TemporaryDirectory(prefix="ctloop-s3-") as directory:
            path = Path(directory) / name
            self._call(
                self.uri(key), "read", lambda c: c.download_file(self.bucket, self._key(key), str(path))
            )
            yield path

    def sha256(self, key: str) -> str:
        def digest(client: Any) -> str:  # the body streams after the call: its errors count too
            body = client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            hasher = hashlib.sha256()
            for block in body.iter_chunks(HASH_BLOCK_BYTES):
                hasher.update(block)
            return hasher.hexdigest()

        found: str = self._call(self.uri(key), "read", digest)
        return found

    def publish_file(self, key: str, path: Path) -> str:
        """A managed upload (multipart when large): the object appears only once it completes."""
        self._call(self.uri(key), "write", lambda c: c.upload_file(str(path), self.bucket, self._key(key)))
        return self.uri(key)

    def copy_to(self, key: str, target: Storage, target_key: str) -> str:
        return _copy_via_file(self, key, target, target_key)

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(self.list_modified(prefix))

    def list_modified(self, prefix: str = "") -> dict[str, datetime]:
        """Each object's ``LastModified``, from the listing's own pages."""
        full_prefix = self._key(prefix) if prefix else (self.prefix.rstrip("/") + "/" if self.prefix else "")
        strip = len(self.prefix.rstrip("/")) + 1 if self.prefix else 0

        def pages(client: Any) -> dict[str, datetime]:
            paginator = client.get_paginator("list_objects_v2")
            return {
                item["Key"][strip:]: item["LastModified"].astimezone(UTC)
                for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix)
                for item in page.get("Contents", [])
            }

        found: dict[str, datetime] = self._call(f"s3://{self.bucket}/{full_prefix}", "list", pages)
        return found


def open_storage(location: str, settings: Settings) -> Storage:
    """The storage rooted at ``location``: ``s3://bucket/prefix``, an absolute path, or a
    path relative to ``CTLOOP_HOME``."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        if not parsed.netloc:
            raise StorageError(f"{location!r}: an S3 location needs a bucket, as in s3://bucket/prefix")
        return S3Storage(
            parsed.netloc,
            parsed.path.strip("/"),
            settings.s3_endpoint_url,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
        )
    if "://" in location:
        raise StorageError(f"{location!r}: only local paths and s3:// locations are supported")
    path = Path(location).expanduser()
    return LocalStorage(path if path.is_absolute() else settings.home / path)


def home_storage(settings: Settings) -> Storage:
    """ctloop's own storage: snapshots, validation results, holdouts."""
    return open_storage(settings.storage_root, settings)


STORAGE_SCHEME = "storage://"
"""How a page names an object of ctloop's own storage: by its key, not the server's path to it."""


def storage_relative(settings: Settings, uri: str) -> str:
    """``uri`` as people should read it: ``storage://<key>`` for an object of ctloop's storage,
    the name alone for another local file (a server path tells a reader nothing and shows the
    server's layout), any other URI (``s3://``, ``models:/``, ``http``) unchanged."""
    root = settings.storage_root
    if root.startswith("s3://"):
        prefix = root.rstrip("/") + "/"
        return STORAGE_SCHEME + uri.removeprefix(prefix) if uri.startswith(prefix) else uri
    path = Path(uri.removeprefix("file://")) if uri.startswith(("/", "file:///")) else None
    if path is None:
        return uri
    base = Path(root).expanduser()
    base = base if base.is_absolute() else settings.home / base
    if path.is_relative_to(base) and path != base:
        return STORAGE_SCHEME + path.relative_to(base).as_posix()
    return path.name
