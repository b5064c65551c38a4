"""The numbers the pipeline page shows for the champion and the challenger come from their model
versions (frozen and recent holdout, as trained) and from the monitor's latest measurement of that
very version on labeled production rows; a real MLflow registry holds the versions."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.ui.serving import Figure, Training, key_metrics, serving, trainings
from tests.helpers import example_spec
from tests.unit.ui.test_pages import _move


def _spec(name: str, primary: str | None = None, watched: str = "roc_auc") -> PipelineSpec:
    raw = example_spec(name, "data")
    raw["gates"]["primary_metric"] = primary
    quality = raw.setdefault("monitoring", {}).get("quality", {})
    raw["monitoring"]["quality"] = {k: v for k, v in quality.items() if k != "rules"} | {"metric": watched}
    return PipelineSpec.model_validate(raw)


@pytest.fixture
def registered(tmp_path: Path):
    """A registered model with v1 (rejected), v2 (the champion) and v3 (the challenger)."""
    client = registry.client(load_settings())
    name = f"s{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    for gate, frozen, recent in (("rejected", 0.61, 0.6), ("passed", 0.81, 0.78), ("passed", 0.84, 0.8)):
        version = client.create_model_version(name, source=str(tmp_path), run_id=None)
        for key, value in {
            tags.GATE: gate,
            tags.GATE_SUMMARY: f"gate {gate}: roc_auc {frozen}",
            f"{tags.VERSION_METRIC_PREFIX}{tags.HOLDOUT_METRIC_PREFIX}roc_auc": str(frozen),
            f"{tags.VERSION_METRIC_PREFIX}{tags.RECENT_METRIC_PREFIX}roc_auc": str(recent),
        }.items():
            client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, registry.CHALLENGER, "3")
    return client, name


def _comparison(versions: dict[str, str], values: dict[str, float] | None) -> dict:
    return {"versions": versions, "rows": 900, "metric": "roc_auc", "values": values, "verdict": "undecided"}


DECISIONS = [
    {"champion_version": "1", "quality": 0.55},
    {
        "champion_version": "2",
        "quality": 0.74,
        "challenger_vs_champion": _comparison(
            {"challenger": "3", "champion": "2"},
            {"challenger": 0.79, "champion": 0.75},
        ),
    },
    {"champion_version": "2", "quality": None},  # no labels in the newest window
]


def test_each_model_shows_its_holdouts_and_its_latest_production_measurement(registered) -> None:
    client, name = registered

    shown = serving(client, _spec(name), _move(2, "2", "1"), DECISIONS)

    assert [(s.role, s.version, s.gate) for s in shown] == [
        ("champion", "2", "passed"),
        ("challenger", "3", "passed"),
    ]
    assert shown[0].figures == [Figure("roc_auc", 0.81, 0.78, 0.74, None)]
    assert shown[1].figures == [Figure("roc_auc", 0.84, 0.8, 0.79, 900)]


def test_a_production_measurement_of_another_version_or_metric_is_not_shown(registered) -> None:
    client, name = registered
    older = [DECISIONS[0]]  # measured while v1 served

    (champion, challenger) = serving(client, _spec(name, primary="log_loss"), _move(2, "2", "1"), older)

    assert [f.metric for f in champion.figures] == ["log_loss", "roc_auc"]
    assert [f.served for f in champion.figures] == [None, None]
    assert champion.figures[0].frozen is None  # no log_loss was recorded on the version
    assert challenger.figures[1].served is None


def test_without_a_champion_or_a_challenger_nothing_is_invented(registered) -> None:
    client, name = registered
    client.delete_registered_model_alias(name, registry.CHALLENGER)

    assert serving(client, _spec(name), None, DECISIONS) == []
    gone = serving(client, _spec(name), _move(9, "9", "2"), DECISIONS)  # the ledger names a lost version
    assert gone == []


def test_retrainings_come_newest_first_with_the_gates_reason(registered) -> None:
    client, name = registered
    requests = [
        {"id": "a", "version": "1", "reasons": []},
        {"id": "b", "version": None, "reasons": []},  # failed before registering
        {"id": "c", "version": "2", "reasons": []},
    ]

    shown = trainings(client, name, requests)

    assert [(t.request["id"], t.gate_summary) for t in shown] == [
        ("c", "gate passed: roc_auc 0.81"),
        ("b", None),
        ("a", "gate rejected: roc_auc 0.61"),
    ]


def test_the_key_metrics_are_the_gates_primary_and_the_monitored_one_once_each() -> None:
    assert key_metrics(_spec("k")) == ["roc_auc"]
    assert key_metrics(_spec("k", primary="log_loss", watched="f1")) == ["log_loss", "f1"]
    assert key_metrics(_spec("k", primary="f1", watched="f1")) == ["f1"]


def test_who_asked_for_a_retraining_is_named_once_each() -> None:
    def asked(*reasons: dict) -> list[tuple[str, bool]]:
        return Training({"reasons": list(reasons)}, None).asked_by

    monitor = {"kind": "monitor", "text": "drift"}
    assert asked(monitor, {"kind": "asset", "user": "monitor"}) == [("monitor", False)]
    assert asked({"kind": "manual", "user": "bob"}, monitor) == [("bob", True), ("monitor", False)]
    assert asked({"kind": "schedule", "user": "schedule"}) == [("schedule", False)]
    assert asked({"kind": "alert", "user": "alert:PD-1"}) == [("alert:PD-1", False)]
    assert asked({"kind": "manual"}) == [("manual", False)]  # recorded before ctloop named people
