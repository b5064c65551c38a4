"""One small interface over a local directory and S3, so every stack reads and writes alike.

Keys are ``/``-separated relative paths. Writes are atomic: a reader sees the whole object or
nothing (local files are renamed into place; an S3 PUT is atomic by itself).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from ctloop.errors import StorageError

if TYPE_CHECKING:
    from ctloop.settings import Settings


class Storage(Protocol):
    """What ctloop needs of a store of objects."""

    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> str: ...
    def list_keys(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def fingerprint(self, key: str) -> str: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"storage key {key!r} must be a relative path without '.' or '..' parts")
    return key


@dataclass(frozen=True)
class LocalStorage:
    """Objects as files below ``root``."""

    root: Path

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"{path}: no such object") from exc

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def fingerprint(self, key: str) -> str:
        """Changes whenever the object is rewritten, without reading it: size and mtime."""
        stat = self._path(key).stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


@dataclass(frozen=True)
class S3Storage:
    """Objects under ``s3://bucket/prefix``; ``endpoint_url`` points at MinIO or another S3."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None

    @property
    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix.rstrip('/')}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            raise StorageError(f"{self.uri(key)}: {exc}") from exc
        body: bytes = response["Body"].read()
        return body

    def write_bytes(self, key: str, data: bytes) -> str:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return self.uri(key)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def fingerprint(self, key: str) -> str:
        """Changes whenever the object is rewritten, without reading it: size and ETag."""
        head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return f"{head['ContentLength']}:{head['ETag']}"

    def list_keys(self, prefix: str = "") -> list[str]:
        full_prefix = self._key(prefix) if prefix else (self.prefix.rstrip("/") + "/" if self.prefix else "")
        strip = len(self.prefix.rstrip("/")) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)


def open_storage(location: str, settings: Settings) -> Storage:
    """The storage rooted at ``location``: ``s3://bucket/prefix``, an absolute path, or a
    path relative to ``CTLOOP_HOME``."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        if not parsed.netloc:
            raise StorageError(f"{location!r}: an S3 location needs a bucket, as in s3://bucket/prefix")
        return S3Storage(parsed.netloc, parsed.path.strip("/"), settings.s3_endpoint_url)
    if "://" in location:
        raise StorageError(f"{location!r}: only local paths and s3:// locations are supported")
    path = Path(location).expanduser()
    return LocalStorage(path if path.is_absolute() else settings.home / path)


def home_storage(settings: Settings) -> Storage:
    """ctloop's own storage: snapshots, validation results, holdouts."""
    return open_storage(settings.storage_root, settings)
