"""Setting a production batch aside (quarantine, duplicates, conflicts) never loses a file."""

from __future__ import annotations

import json
import uuid

from ctloop.io.storage import LocalStorage, home_storage
from ctloop.scoring.batches import set_aside
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


def _spec(incoming) -> PipelineSpec:
    raw = example_spec(f"p{uuid.uuid4().hex[:8]}", "data", scoring={"incoming_uri": str(incoming)})
    return PipelineSpec.model_validate(raw)


def test_a_batch_set_aside_twice_keeps_both_files_with_their_reasons(tmp_path):
    spec, settings, incoming = _spec(tmp_path), load_settings(), LocalStorage(tmp_path)
    batch = {"key": "batch-0001.csv", "batch_id": "batch-0001", "uri": incoming.uri("batch-0001.csv")}
    incoming.write_bytes("batch-0001.csv", b"first delivery")
    first = set_aside(spec, settings, batch, b"first delivery", "quarantine", {"failures": ["a"]})
    incoming.write_bytes("batch-0001.csv", b"second delivery")
    second = set_aside(spec, settings, batch, b"second delivery", "quarantine", {"failures": ["b"]})

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
    assert set_aside(spec, settings, batch, b"first delivery", "quarantine", {"failures": ["a"]}) == first
