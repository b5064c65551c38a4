"""Alert ids: plain ones pass, hostile ones are refused without being echoed; one run per alert id
in a real ctloop database, a retry of the same run included, a second run refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctloop.errors import AlertRefused
from ctloop.monitoring import alerts
from ctloop.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


@pytest.mark.parametrize("alert_id", ["PD-4711", "drift.2026-11-30T08:00:00", "a", "x" * 128, "A_b:c-9.d"])
def test_plain_alert_ids_pass(alert_id: str) -> None:
    assert alerts.check_alert_id(alert_id) == alert_id


@pytest.mark.parametrize(
    ("alert_id", "why"),
    [
        ("<script>alert(1)</script>" + "x" * 4975, "5,000 characters, more than 128"),
        ("x" * 129, "129 characters, more than 128"),
        ("<b>PD-1</b>", "must start with a letter or digit"),
        ("PD 1", "hold only letters, digits"),
        ("", "must start with a letter or digit"),
        ("-PD1", "must start with a letter or digit"),
        ("PD/../1", "hold only letters, digits"),
        ("PD-1\n", "hold only letters, digits"),
    ],
)
def test_hostile_alert_ids_are_refused_without_echoing_them(alert_id: str, why: str) -> None:
    with pytest.raises(AlertRefused) as refused:
        alerts.check_alert_id(alert_id)
    assert why in str(refused.value)
    assert "<" not in str(refused.value)


def test_one_run_per_alert_id_whatever_the_run_id(settings: Settings) -> None:
    first = alerts.claim(settings, "churn", "PD-1", "churn__train/alert__PD-1")
    assert alerts.claim(settings, "churn", "PD-1", "churn__train/alert__PD-1") == first  # a retried task

    with pytest.raises(AlertRefused) as refused:
        alerts.claim(settings, "churn", "PD-1", "churn__train/manual__2026-11-30")
    assert str(refused.value).startswith(
        f"alert 'PD-1' was already received by churn__train/alert__PD-1 at {first.at};"
    )
    assert alerts.claim(settings, "other", "PD-1", "other__train/alert__PD-1").pipeline == "other"
    assert alerts.claimed(settings, "churn", "PD-1") == first


def test_a_released_claim_lets_the_alert_be_delivered_again(settings: Settings) -> None:
    alerts.claim(settings, "churn", "PD-2", "churn__train/alert__PD-2")
    alerts.release(settings, "churn", "PD-2", "churn__train/someone-else")  # not its claim: kept
    assert alerts.claimed(settings, "churn", "PD-2") is not None
    alerts.release(settings, "churn", "PD-2", "churn__train/alert__PD-2")
    assert alerts.claimed(settings, "churn", "PD-2") is None
    assert (
        alerts.claim(settings, "churn", "PD-2", "churn__train/manual__x").run_key == "churn__train/manual__x"
    )


def test_a_malformed_id_is_never_recorded(settings: Settings) -> None:
    with pytest.raises(AlertRefused):
        alerts.claim(settings, "churn", "<x>", "churn__train/alert__x")
    assert alerts.claimed(settings, "churn", "<x>") is None
