"""Retention rules on generated storage content, locally and on the loopback S3, against a real MLflow
registry, promotion ledger and retrain requests: what the rules select goes, what is referenced stays."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pydantic import ValidationError

from ctloop.housekeeping import retention
from ctloop.housekeeping.retention import _Item, apply_retention, selected
from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import LocalStorage, home_storage
from ctloop.monitoring import retrain_requests
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.scoring import scored_batches
from ctloop.scoring.prediction_log import PREDICTIONS, partition_key
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec, RetentionRule
from tests.helpers import example_spec

OLD = {"max_age_days": 1}
AREAS = (
    "snapshots", "holdouts", "predictions", "labeled", "reports", "history", "set_aside", "retrain_requests",
    "model_versions", "staging",
)  # fmt: skip
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _items(*ages_days: float) -> list[_Item]:
    return [_Item(f"i{n}", (f"k{n}",), NOW - timedelta(days=age), ()) for n, age in enumerate(ages_days)]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({}, set()),
        ({"max_age_days": 5}, {"i2", "i3"}),
        ({"keep_last": 2}, {"i2", "i3"}),
        ({"keep_last": 3}, {"i3"}),
        ({"max_age_days": 5, "keep_last": 3}, {"i3"}),  # either limit keeps
        ({"max_age_days": 9, "keep_last": 1}, {"i3"}),
        ({"max_age_days": 20}, set()),
    ],
)
def test_a_rule_selects_what_is_older_than_its_age_and_beyond_its_newest_n(rule, expected):
    chosen = selected(RetentionRule(**rule), _items(1, 3, 6, 10), NOW)
    assert set(chosen) == expected
    if rule:
        assert all(("older than" in why) == ("max_age_days" in rule) for why in chosen.values())


def _spec(name: str, **retention) -> PipelineSpec:
    spec = example_spec(name, "data/x")
    spec["monitoring"] = {"window_batches": 2}
    spec["retrain"] = {"k_of_n": {"k": 1, "n": 1}, "selection": {"last_batches": [1]}}
    spec["gates"] = {**spec.get("gates", {}), "recent_holdout": {"batches": 1}}
    spec["retention"] = retention
    return PipelineSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("retention", "field"),
    [
        ({"snapshots": {"max_age_days": -1}}, "retention.snapshots.max_age_days"),
        ({"model_versions": {"keep_last": 0}}, "retention.model_versions.keep_last"),
        ({"reports": {"max_days": 3}}, "retention.reports.max_days"),
        ({"logs": {"keep_last": 3}}, "retention.logs"),
        ({"label_wait_days": -2}, "retention.label_wait_days"),
        ({"staging": {"keep_last": 3}}, "retention.staging.keep_last"),
    ],
)
def test_a_bad_retention_field_is_refused_by_name(retention, field):
    with pytest.raises(ValidationError) as raised:
        _spec("bad", **retention)
    assert field in str(raised.value).replace("\n", " ")


def test_by_default_nothing_is_selected_and_housekeeping_runs_daily():
    retention = _spec("defaults").retention
    assert not any(getattr(retention, area).active for area in AREAS)
    assert retention.schedule == "30 3 * * *"
    assert retention.dry_run is False


@pytest.fixture(params=["local", "s3"])
def settings(request, tmp_path):
    """This worker's MLflow registry, a ctloop database of this test's own, and storage in a local
    folder or a fresh bucket of the loopback S3."""
    found = load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})
    if request.param == "local":
        return found.model_copy(update={"storage_root": str(tmp_path / "storage")})
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return found.model_copy(update={"storage_root": f"s3://{bucket}/ctloop", "s3_endpoint_url": endpoint})


def _parquet(**columns) -> bytes:
    return to_parquet_bytes(pd.DataFrame(columns))


class World:
    """A pipeline with history in every area and a reference of every kind to some of it."""

    def __init__(self, settings):
        self.settings = settings
        self.name = f"h{uuid.uuid4().hex[:10]}"
        self.storage = home_storage(settings)
        self.client = registry.client(settings)

    def put(self, key: str, data: bytes = b"x") -> str:
        return self.storage.write_bytes(key, data)

    def version(self, sha: str, extra: dict[str, str] | None = None, run_tags: dict[str, str] | None = None):
        experiment = registry.ensure_experiment(self.client, self.name, None)
        run = self.client.create_run(experiment, tags=run_tags or {})
        self.client.set_terminated(run.info.run_id)
        source = f"runs:/{run.info.run_id}/model"
        version_tags = {tags.DATA_SHA256: sha, tags.GATE: "rejected", **(extra or {})}
        created = self.client.create_model_version(self.name, source, run.info.run_id, tags=version_tags)
        return str(created.version)

    def versions(self) -> set[str]:
        return {str(v.version) for v in self.client.search_model_versions(f"name = '{self.name}'")}

    def build(self) -> None:
        n, put = self.name, self.put
        self.client.create_registered_model(n)
        snapshot = {s: f"snapshots/{n}/{s * 64}.parquet" for s in "abcdefgi"}
        for key in snapshot.values():
            put(key)
        put(f"holdouts/{n}/{'h' * 64}.parquet")
        put(f"holdouts/{n}/{'x' * 64}.parquet")
        reports = {r: f"runs/{n}__monitor/{r}/report.html" for r in ("m1", "m2", "m3", "m4", "m5")}
        reports["t1"] = f"runs/{n}__train/t1/holdout_predictions.parquet"
        uris = {r: put(key) for r, key in reports.items()}
        put(f"runs/{n}__monitor/m3/summary.json")
        put("runs/other__monitor/m3/report.html")  # another pipeline's: never this one's to delete

        self.v1 = self.version("a" * 64, {tags.HOLDOUT_KEY: f"holdouts/{n}/{'h' * 64}.parquet"})
        self.v2 = self.version(
            "b" * 64, {tags.DATA_URI: self.storage.uri(snapshot["b"])}, {tags.TRIGGER_REPORTS: uris["m1"]}
        )
        self.v3 = self.version("c" * 64)  # rejected, never served: goes, and its snapshot with it
        self.v4 = self.version("d" * 64)  # the challenger
        self.v5 = self.version("g" * 64, {tags.GATE: "pending"})
        self.client.set_registered_model_alias(n, registry.CHALLENGER, self.v4)
        experiment = registry.ensure_experiment(self.client, n, None)
        self.client.create_run(experiment, tags={tags.DATA_URI: self.storage.uri(snapshot["i"])})  # running
        for to, before, evidence in (
            (self.v1, None, {}),
            (self.v2, self.v1, {"snapshot": self.storage.uri(snapshot["e"]), "predictions": reports["t1"]}),
        ):
            moved = ledger.move_alias(
                self.settings, self.client, n, to, expected_from=before, action="promotion", reason="t",
                evidence=evidence,
            )  # fmt: skip
            assert moved.moved

        for batch in ("b00", "b01", "b02", "b03", "b04", "b05"):
            put(f"predictions/{n}/batch_id={batch}/part-0.parquet", _parquet(id=["1"], model_version=["9"]))
        for batch, served in (("b01", self.v1), ("b02", "9"), ("b03", "9"), ("b04", "9"), ("b05", "9")):
            put(f"labeled/{n}/batch_id={batch}/part-0.parquet", _parquet(id=["1"], model_version=[served]))

        history = (("h1", "1", "m4"), ("h2", self.v2, "m5"), ("h3", "1", None), ("h4", "1", None))
        for entry, champion, report in history:
            record = {"champion_version": champion, "report_uri": uris[report] if report else None}
            put(f"monitor/{n}/history/2026010{entry[1]}T000000_{entry}.json", json.dumps(record).encode())
        put(f"label-joins/{n}/20260101T000000.000000Z.json", b"{}")
        put(f"quarantine/{n}/b9/b9.csv")
        put(f"quarantine/{n}/b9/reason.json")
        put(f"conflicts/{n}/b8/b8.csv")

        def request(run_key, outcome, reason):
            opened = retrain_requests.claim(self.settings, n, run_key, reason)
            return retrain_requests.close(self.settings, n, run_key, outcome, None)["id"], opened

        monitor = {"kind": "monitor", "text": "drift"}
        self.r0, _ = request("t/r0", "promoted", {"kind": "manual", "text": "x"})
        retrain_requests.request_retrain(self.settings, n, monitor)
        self.r1, _ = request("t/r1", "promoted", {"kind": "schedule", "text": "x"})  # serves the monitor's
        self.r2, _ = request("t/r2", "rejected", {"kind": "schedule", "text": "x"})
        _, self.r3 = retrain_requests.request_retrain(self.settings, n, {**monitor, "report_uri": uris["m2"]})
        self.r3 = self.r3["id"]

    def keys(self) -> set[str]:
        return set(self.storage.list_keys())


VERSION = "referenced by a model version or an MLflow run"
READ = "read by the monitor's window, the recent holdout or the training window"
WINDOW = "in the monitor's window"


def _snap(area: str, char: str) -> str:
    return f"{area}/{{n}}/{char * 64}.parquet"


EXPECTED_DELETED = {
    ("model_versions", "v3"),
    ("snapshots", _snap("snapshots", "c")),
    ("snapshots", _snap("snapshots", "f")),
    ("holdouts", _snap("holdouts", "x")),
    ("retrain_requests", "retrain/{n}/requests/{r0}.json"),
    ("predictions", "predictions/{n}/batch_id=b01"),
    ("predictions", "predictions/{n}/batch_id=b02"),
    ("predictions", "predictions/{n}/batch_id=b03"),
    ("labeled", "labeled/{n}/batch_id=b02"),
    ("labeled", "labeled/{n}/batch_id=b03"),
    ("history", "monitor/{n}/history/20260101T000000_h1.json"),
    ("history", "monitor/{n}/history/20260103T000000_h3.json"),
    ("history", "label-joins/{n}/20260101T000000.000000Z.json"),
    ("reports", "runs/{n}__monitor/m3"),
    ("reports", "runs/{n}__monitor/m4"),
    ("set_aside", "quarantine/{n}/b9"),
    ("set_aside", "conflicts/{n}/b8"),
}
EXPECTED_KEPT = {
    ("model_versions", "v1", "in the promotion ledger"),
    ("model_versions", "v2", "the champion"),
    ("model_versions", "v4", "holds an alias"),
    ("model_versions", "v5", "waits for its gate"),
    ("snapshots", _snap("snapshots", "a"), VERSION),
    ("snapshots", _snap("snapshots", "b"), VERSION),
    ("snapshots", _snap("snapshots", "d"), VERSION),
    ("snapshots", _snap("snapshots", "e"), "referenced by the promotion ledger"),
    ("snapshots", _snap("snapshots", "g"), VERSION),
    ("snapshots", _snap("snapshots", "i"), VERSION),
    ("holdouts", _snap("holdouts", "h"), VERSION),
    ("retrain_requests", "retrain/{n}/requests/{r1}.json", "the retrain cooldown starts at it"),
    ("retrain_requests", "retrain/{n}/requests/{r2}.json", "the circuit breaker counts it"),
    ("retrain_requests", "retrain/{n}/requests/{r3}.json", "the request is open"),
    ("predictions", "predictions/{n}/batch_id=b00", "its labels may still arrive"),
    ("predictions", "predictions/{n}/batch_id=b04", WINDOW),
    ("predictions", "predictions/{n}/batch_id=b05", WINDOW),
    ("labeled", "labeled/{n}/batch_id=b01", "the champion watch reads it"),
    ("labeled", "labeled/{n}/batch_id=b04", READ),
    ("labeled", "labeled/{n}/batch_id=b05", READ),
    ("history", "monitor/{n}/history/20260104T000000_h4.json", "k-of-n reads the last n entries"),
    ("history", "monitor/{n}/history/20260102T000000_h2.json", "k-of-n counts the current champion's"),
    ("reports", "runs/{n}__monitor/m1", VERSION),
    ("reports", "runs/{n}__monitor/m2", "referenced by an open retrain request"),
    ("reports", "runs/{n}__monitor/m5", "referenced by a monitor history entry"),
    ("reports", "runs/{n}__train/t1", "referenced by the promotion ledger"),
}  # fmt: skip


def test_rules_delete_what_they_select_and_keep_every_kind_of_reference(settings):
    world = World(settings)
    world.build()
    spec = _spec(world.name, **{area: OLD for area in AREAS})
    ids = {"n": world.name, "r0": world.r0, "r1": world.r1, "r2": world.r2, "r3": world.r3}
    later = datetime.now(UTC) + timedelta(days=10)  # everything written is 10 days old
    before, versions = world.keys(), world.versions()

    dry = apply_retention(spec, settings, dry_run=True, now=later)
    assert dry.dry_run
    assert world.keys() == before  # a dry run deletes nothing
    assert world.versions() == versions

    result = apply_retention(spec, settings, now=later)
    assert not result.dry_run
    assert {(d.area, d.item) for d in result.deleted} == {(a, i.format(**ids)) for a, i in EXPECTED_DELETED}
    assert {(k.area, k.item, k.why) for k in result.kept} == {
        (a, i.format(**ids), why) for a, i, why in EXPECTED_KEPT
    }
    assert dry.deleted == result.deleted  # the dry run listed exactly what went
    gone = {key for d in result.deleted if d.area != "model_versions" for key in d.keys}
    assert f"runs/{world.name}__monitor/m3/summary.json" in gone  # a run's folder goes whole
    assert world.keys() == before - gone
    assert world.versions() == versions - {world.v3}

    again = apply_retention(spec, settings, now=later)
    assert again.deleted == []  # what stayed is stable


def test_young_items_stay_under_an_age_rule_and_the_default_spec_deletes_nothing(tmp_path):
    settings = load_settings().model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'c.db'}", "storage_root": str(tmp_path / "s")}
    )
    world = World(settings)
    old, young = (f"snapshots/{world.name}/{c * 64}.parquet" for c in "oy")
    world.put(old)
    world.put(young)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(tmp_path / "s" / old, (ten_days_ago, ten_days_ago))

    assert apply_retention(_spec(world.name), settings).deleted == []
    result = apply_retention(_spec(world.name, snapshots={"max_age_days": 5}), settings)
    assert [(d.item, d.rule) for d in result.deleted] == [(old, "older than 5 days")]
    assert world.keys() == {young}


def test_staging_goes_by_age_only():
    with pytest.raises(ValidationError, match="by age only"):
        _spec("bad", staging={"max_age_days": 3, "keep_last": 2})
    assert _spec("ok", staging={"max_age_days": 3}).retention.staging.active


OPEN = "its batch's claim is open (reserved, neither committed nor released)"


def test_staging_leftovers_go_by_age_and_a_claim_still_open_keeps_its_own(settings):
    """Every state a claim's records can be in (ctloop.scoring.scored_batches), each with a part and a
    plan copy staged: only the released, never reserved, superseded and committed claims' leftovers go."""
    world = World(settings)
    n = world.name
    spec = _spec(n, staging={"max_age_days": 1})

    def claim(batch_id: str, content: str) -> tuple[dict[str, str | int], str]:
        sha = hashlib.sha256(content.encode()).hexdigest()
        folder = f"staging/{n}/{batch_id}/{sha[:16]}"
        world.put(f"{folder}/input/chunk-000000.parquet")
        world.put(f"{folder}/part-00000-of-00002.parquet")
        source = {
            "batch_id": batch_id,
            "key": f"{batch_id}.csv",
            "sha256": sha,
            "size": 1,
            "fingerprint": "1:1",
        }
        return source, folder

    def scored(batch_id: str) -> str:
        return world.put(partition_key(PREDICTIONS, n, batch_id))

    opened, open_folder = claim("b1", "open")
    released, released_folder = claim("b2", "released")
    _, never_folder = claim("b3", "never reserved")
    committed, committed_folder = claim("b4", "committed")
    superseded, superseded_folder = claim("b5", "first content")
    current, current_folder = claim("b5", "second content")
    for source in (opened, released, committed, superseded, current):
        assert scored_batches.reserve(settings, n, source) is None
    scored_batches.release(settings, n, released)
    scored_batches.commit(settings, n, committed, scored("b4"))
    staged = set(world.storage.list_keys("staging"))

    assert apply_retention(spec, settings).deleted == []  # all of it young
    later = datetime.now(UTC) + timedelta(days=10)
    dry = apply_retention(spec, settings, dry_run=True, now=later)
    assert set(world.storage.list_keys("staging")) == staged  # a dry run deletes nothing

    result = apply_retention(spec, settings, now=later)

    gone = {released_folder, never_folder, committed_folder, superseded_folder}
    assert {(d.area, d.item, d.rule) for d in result.deleted} == {
        ("staging", f, "older than 1 days") for f in gone
    }
    assert {(k.area, k.item, k.why) for k in result.kept} == {
        ("staging", open_folder, OPEN), ("staging", current_folder, OPEN)
    }  # fmt: skip
    assert dry.deleted == result.deleted  # the dry run listed exactly what went
    assert set(world.storage.list_keys("staging")) == {
        k for k in staged if not k.startswith(tuple(f"{f}/" for f in gone))
    }


def test_a_staging_leftover_is_judged_and_deleted_under_the_lock_a_claim_takes(tmp_path, monkeypatch):
    """reserve() takes the pipeline's ``scored`` lock: no claim can open between the look at the
    records and the delete."""
    settings = load_settings().model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'c.db'}", "storage_root": str(tmp_path / "s")}
    )
    world = World(settings)
    world.put(f"staging/{world.name}/b1/{'a' * 16}/part-00000-of-00002.parquet")
    events: list[str] = []

    @contextmanager
    def lock(_settings, name, purpose):
        events.append(f"lock {purpose}")
        yield
        events.append(f"unlock {purpose}")

    record, delete = scored_batches.batch_record, LocalStorage.delete
    monkeypatch.setattr(retention, "pipeline_lock", lock)
    monkeypatch.setattr(scored_batches, "batch_record", lambda *a: events.append("record") or record(*a))
    monkeypatch.setattr(LocalStorage, "delete", lambda *a: events.append("delete") or delete(*a))

    result = apply_retention(
        _spec(world.name, staging=OLD), settings, now=datetime.now(UTC) + timedelta(days=2)
    )

    assert [d.area for d in result.deleted] == ["staging"]
    assert events == ["lock scored", "record", "delete", "unlock scored"]
