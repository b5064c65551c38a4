"""The expectation suite a model was trained with, kept with it so the suite follows the champion.

A training stores the suite file it validated with, content-addressed like data snapshots, and
the model version records its key. Scoring checks production batches with the champion's suite,
so a rollback re-points the checks along with the model; an edit to the suite file takes effect
with the next promoted model, not silently under the current one.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ctloop.io.storage import home_storage
from ctloop.validation.data_validation import suite_path

if TYPE_CHECKING:
    from pathlib import Path

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec


def store_suite(spec: PipelineSpec, settings: Settings) -> str:
    """Store the spec's current suite file by its sha256; returns the storage key."""
    data = suite_path(spec, settings.expectations_dir).read_bytes()
    key = f"suites/{spec.name}/{hashlib.sha256(data).hexdigest()}.json"
    storage = home_storage(settings)
    if not storage.exists(key):
        storage.write_bytes(key, data)
    return key


def suite_dir(spec: PipelineSpec, settings: Settings, suite_key: str | None) -> Path:
    """A directory holding the suite stored under ``suite_key`` as ``<expectation_suite>.json``,
    for :func:`~ctloop.validation.data_validation.validate_frame`;
    the committed suites for a version without one."""
    if not suite_key:
        return settings.expectations_dir
    directory = settings.home / "cache" / "suites" / suite_key.rsplit("/", 1)[-1].removesuffix(".json")
    path = directory / f"{spec.expectation_suite}.json"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(home_storage(settings).read_bytes(suite_key))
        partial.replace(path)  # a reader never sees half a suite
    return directory
