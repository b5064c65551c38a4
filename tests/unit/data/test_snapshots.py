"""Training-data snapshots are named by the sha256 of their content and never overwritten."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import pandas as pd
import pytest

from ctloop.data.snapshots import load_snapshot, snapshot_key, take_snapshot
from ctloop.devtools.example_data import write_batches
from ctloop.errors import DataReadError
from ctloop.io.storage import home_storage
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec

ROWS = 40


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def _spec(data: Path) -> PipelineSpec:
    """A spec over the files in ``data``, under a name of its own: snapshots are kept per pipeline."""
    return PipelineSpec.model_validate(example_spec(f"sn{uuid.uuid4().hex[:10]}", str(data)))


def test_the_key_is_the_sha256_of_the_stored_bytes(tmp_path: Path, settings: Settings) -> None:
    spec = _spec(tmp_path / "training")
    sources = write_batches(tmp_path / "training", range(2), rows=ROWS)

    snap = take_snapshot(spec, settings)

    stored = home_storage(settings).read_bytes(snap["key"])
    assert snap["sha256"] == hashlib.sha256(stored).hexdigest()
    assert snap["key"] == f"snapshots/{spec.name}/{snap['sha256']}.parquet"
    assert snapshot_key(spec.name, snap["sha256"]) == snap["key"]
    assert snap["uri"] == home_storage(settings).uri(snap["key"])
    assert snap["sources"] == [str(p) for p in sources]
    assert snap["rows"] == 2 * ROWS
    assert (snap["source_rows"], snap["labeled_sources"]) == ([ROWS, ROWS], 0)
    assert snap["created"] is True


def test_the_snapshot_holds_the_source_rows(tmp_path: Path, settings: Settings) -> None:
    spec = _spec(tmp_path / "training")
    sources = write_batches(tmp_path / "training", range(2), rows=ROWS)
    expected = pd.concat([pd.read_csv(p, dtype={"customer_id": str}) for p in sources], ignore_index=True)

    snap = take_snapshot(spec, settings)
    loaded = load_snapshot(snap["key"], settings)

    assert snap["columns"] == list(expected.columns)
    assert loaded["customer_id"].tolist() == expected["customer_id"].tolist()
    assert loaded["tenure_months"].tolist() == expected["tenure_months"].tolist()
    assert loaded["churned"].tolist() == expected["churned"].tolist()


def test_the_same_content_gets_the_same_key_and_the_stored_snapshot_is_not_rewritten(
    tmp_path: Path, settings: Settings
) -> None:
    spec = _spec(tmp_path / "training")
    write_batches(tmp_path / "training", range(2), rows=ROWS)
    first = take_snapshot(spec, settings)
    storage = home_storage(settings)
    # Mark the stored object: a second snapshot that wrote it again would erase the mark.
    storage.write_bytes(first["key"], b"marker")

    second = take_snapshot(spec, settings)

    assert second["key"] == first["key"]
    assert second["sha256"] == first["sha256"]
    assert second["created"] is False
    assert storage.read_bytes(first["key"]) == b"marker"


def test_new_content_gets_a_new_key_and_the_earlier_snapshot_stays(
    tmp_path: Path, settings: Settings
) -> None:
    spec = _spec(tmp_path / "training")
    write_batches(tmp_path / "training", range(2), rows=ROWS)
    first = take_snapshot(spec, settings)
    before = home_storage(settings).read_bytes(first["key"])

    write_batches(tmp_path / "training", range(2, 3), rows=ROWS)
    second = take_snapshot(spec, settings)

    assert second["key"] != first["key"]
    assert second["created"] is True
    assert second["rows"] == 3 * ROWS
    assert home_storage(settings).read_bytes(first["key"]) == before
    assert sorted(home_storage(settings).list_keys(f"snapshots/{spec.name}")) == sorted(
        [first["key"], second["key"]]
    )


def test_an_unreadable_source_file_is_named_and_nothing_is_snapshotted(
    tmp_path: Path, settings: Settings
) -> None:
    spec = _spec(tmp_path / "training")
    write_batches(tmp_path / "training", range(2), rows=ROWS)
    (broken,) = write_batches(tmp_path / "training", range(2, 3), rows=ROWS, fault="empty")

    with pytest.raises(DataReadError, match=re.escape(str(broken))) as raised:
        take_snapshot(spec, settings)

    assert "file is empty" in str(raised.value)
    assert home_storage(settings).list_keys(f"snapshots/{spec.name}") == []


def test_a_source_file_of_another_schema_is_named(tmp_path: Path, settings: Settings) -> None:
    spec = _spec(tmp_path / "training")
    write_batches(tmp_path / "training", range(2), rows=ROWS)
    (odd,) = write_batches(tmp_path / "training", range(2, 3), rows=ROWS, fault="missing_column")

    with pytest.raises(DataReadError, match=re.escape(str(odd))) as raised:
        take_snapshot(spec, settings)

    assert "monthly_charges" in str(raised.value)
