"""The retrain policy, guard by guard: each test moves one fact and checks the decision and its why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.monitoring.quality_rules import Measure, judge
from ctloop.monitoring.retrain_policy import (
    ATTACH,
    BREAKER_OPEN,
    HOLD,
    RETRAIN,
    ROLLBACK,
    Evidence,
    decide,
    triggers,
)
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MONITOR = "churn_p__monitor"


def _spec(monitoring: dict | None = None, **retrain) -> PipelineSpec:
    """The example spec (min_rows 2000, drift share 0.3 or tenure_months, quality rules roc_auc
    max_drop 0.05 first, then accuracy and brier, on >= 1000 labels, k_of_n 2 of 3, cooldown 360 min,
    breaker at 3), with ``retrain`` overrides; a quality override naming a metric or max_drop is
    the one-rule shape, in place of the example's rules."""
    raw = example_spec("p", "data")
    raw["retrain"] = {**raw["retrain"], **retrain}
    for section, values in (monitoring or {}).items():
        base = raw["monitoring"][section]
        if {"metric", "max_drop"} & set(values):
            base = {k: v for k, v in base.items() if k != "rules"}
        raw["monitoring"][section] = {**base, **values}
    return PipelineSpec.model_validate(raw)


JUDGED = ("quality", "champion_quality", "quality_why", "interval")


def _evidence(spec: PipelineSpec | None = None, **overrides) -> Evidence:
    """A calm window with enough rows and no labels; ``overrides`` move one fact. ``quality`` and
    ``champion_quality`` (``quality_why``: why the first is undefined) are the window's and the
    champion's value of the spec's first quality rule, judged (ctloop.monitoring.quality_rules) on
    ``labeled_rows`` as if there were so many that the interval is the point, or on ``interval``."""
    judged = {k: overrides.pop(k) for k in JUDGED if k in overrides}
    fields = {
        "window_key": "w-now",
        "current_rows": 5000,
        "drift_share": 0.0,
        "drifted_features": [],
        "labeled_rows": 0,
    } | overrides
    if judged:
        spec = spec or _spec()
        value = judged.get("quality")
        measure = Measure(
            labeled_rows=fields["labeled_rows"],
            value=value,
            reference=judged.get("champion_quality"),
            interval=judged.get("interval", None if value is None else (value, value)),
            why=judged.get("quality_why"),
        )
        fields["quality_rules"] = (judge(spec, spec.monitoring.quality.rules[0], measure),)
    return Evidence(**fields)


ALERTING = {"drift_share": 0.5, "drifted_features": ["age", "credit_score"]}


def _history(*alerts: bool) -> list[dict]:
    """Earlier monitor decisions, oldest first, shaped like monitor_run._record writes them."""
    return [
        {
            "run_key": f"{MONITOR}/run-{i}",
            "at": (NOW - timedelta(hours=len(alerts) - i)).isoformat(timespec="seconds"),
            "champion_version": "1",
            "window_key": f"w-{i}",
            "new_evidence": True,
            "alert": alert,
            "action": HOLD,
            "why": "earlier",
            "drift_share": 0.5 if alert else 0.0,
            "quality": None,
            "batches": [f"batch-{i}"],
            "report_uri": f"/r/{i}/report.html",
            "summary_uri": f"/r/{i}/summary.json",
        }
        for i, alert in enumerate(alerts)
    ]


def _request(
    state: str = "closed",
    *,
    closed_ago: timedelta | None = timedelta(days=30),
    outcome: str | None = "promoted",
    kinds: tuple[str, ...] = ("monitor",),
    rid: str | None = None,
) -> dict:
    """A retrain request shaped like ctloop.monitoring.retrain_requests._new makes it."""
    closed = state == "closed"
    closed_at = (NOW - closed_ago).isoformat(timespec="microseconds") if closed else None
    return {
        "id": rid or f"req-{state}-{outcome}-{closed_ago}",
        "pipeline": "p",
        "state": state,
        "opened_at": (NOW - timedelta(days=60)).isoformat(timespec="microseconds"),
        "reasons": [{"kind": kind, "text": f"asked by {kind}", "by": "someone"} for kind in kinds],
        "claimed_by": None if state == "open" else "churn_p__train/run-x",
        "claimed_at": None if state == "open" else (NOW - timedelta(days=60)).isoformat(),
        "closed_at": closed_at,
        "outcome": outcome if closed else None,
        "version": "2" if closed and outcome == "promoted" else None,
    }


def _confirmed(requests: list[dict], spec: PipelineSpec | None = None) -> dict:
    """The decision for an alert that k-of-n confirms (one earlier alerting window)."""
    return decide(spec or _spec(), _evidence(**ALERTING), _history(True), requests, NOW)


# --- triggers: drift ---------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [0, 1999])
def test_below_min_rows_nothing_is_decided_on_drift(rows):
    crossed, undecided = triggers(
        _spec(), _evidence(current_rows=rows, drift_share=1.0, drifted_features=["tenure_months"])
    )
    assert crossed == []
    assert any(f"drift: {rows} rows < monitoring.min_rows 2000" in u for u in undecided)


def test_below_min_rows_decide_holds_and_says_why():
    decision = decide(_spec(), _evidence(current_rows=10, drift_share=1.0), _history(True, True), [], NOW)
    assert decision["action"] == HOLD
    assert decision["alert"] is False
    assert decision["why"].startswith("no trigger crossed")
    assert "monitoring.min_rows" in decision["why"]


def test_at_min_rows_drift_is_decided():
    crossed, undecided = triggers(_spec(), _evidence(current_rows=2000, drift_share=0.5))
    assert crossed == ["drift share 0.50 >= 0.30"]
    assert not any(u.startswith("drift") for u in undecided)


@pytest.mark.parametrize(("share", "crosses"), [(0.29, False), (0.3, True), (0.31, True), (1.0, True)])
def test_drift_share_crosses_at_or_above_the_threshold(share, crosses):
    crossed, _ = triggers(_spec(), _evidence(drift_share=share, drifted_features=["age"]))
    assert bool(crossed) is crosses
    if crosses:
        assert crossed == [f"drift share {share:.2f} >= 0.30"]


def test_a_key_feature_drifting_crosses_alone():
    crossed, _ = triggers(_spec(), _evidence(drift_share=0.05, drifted_features=["age", "tenure_months"]))
    assert crossed == ["key feature(s) drifted: tenure_months"]


def test_a_non_key_feature_drifting_alone_does_not_cross():
    crossed, _ = triggers(_spec(), _evidence(drift_share=0.05, drifted_features=["age"]))
    assert crossed == []


def test_share_and_key_feature_both_reported():
    crossed, _ = triggers(_spec(), _evidence(drift_share=0.4, drifted_features=["tenure_months"]))
    assert len(crossed) == 2
    assert crossed[0].startswith("drift share 0.40")
    assert crossed[1] == "key feature(s) drifted: tenure_months"


# --- triggers: quality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "crosses"),
    [(0.70, True), (0.74, True), (0.76, False), (0.80, False), (0.95, False)],
)
def test_roc_auc_drop_crosses_when_lower_by_more_than_max_drop(current, crosses):
    assert higher_is_better("classification", "roc_auc")
    crossed, undecided = triggers(
        _spec(), _evidence(labeled_rows=1000, quality=current, champion_quality=0.80)
    )
    assert bool(crossed) is crosses
    assert not any(u.startswith("quality") for u in undecided)
    if crosses:
        assert crossed[0].startswith(
            f"quality roc_auc: {current:.4f} on 1,000 labeled rows is {0.80 - current:.4f} worse"
            " than the champion's holdout 0.8000"
        )
        assert "max_drop 0.05" in crossed[0]


@pytest.mark.parametrize(
    ("current", "crosses"),
    # log_loss is lower-is-better: a rise is the drop; a fall of the same size is an improvement.
    [(0.50, True), (0.46, True), (0.44, False), (0.40, False), (0.30, False), (0.10, False)],
)
def test_log_loss_drop_crosses_when_higher_by_more_than_max_drop(current, crosses):
    assert not higher_is_better("classification", "log_loss")
    spec = _spec({"quality": {"metric": "log_loss", "max_drop": 0.05}})
    crossed, _ = triggers(spec, _evidence(spec, labeled_rows=5000, quality=current, champion_quality=0.40))
    assert bool(crossed) is crosses
    if crosses:
        assert crossed[0].startswith(
            f"quality log_loss: {current:.4f} on 5,000 labeled rows is {current - 0.40:.4f} worse"
        )


@pytest.mark.parametrize(("champion", "current"), [(0.75, 0.5), (0.80, 0.75), (0.9, 0.85)])
def test_quality_at_exactly_max_drop_does_not_cross(champion, current):
    """0.80 - 0.75 is 0.05000000000000004 in floating point: still exactly max_drop, not more."""
    spec = _spec({"quality": {"max_drop": round(champion - current, 2)}})
    crossed, _ = triggers(
        spec, _evidence(spec, labeled_rows=1000, quality=current, champion_quality=champion)
    )
    assert crossed == []


def test_quality_below_min_labels_is_undecided():
    crossed, undecided = triggers(_spec(), _evidence(labeled_rows=999, quality=0.10, champion_quality=0.90))
    assert crossed == []
    assert "quality: 999 labeled rows < monitoring.quality.min_labels 1000" in undecided


@pytest.mark.parametrize(
    ("current", "champion", "side"),
    [(None, 0.8, "the labeled rows"), (0.5, None, "the champion's holdout")],
)
def test_quality_that_cannot_be_computed_is_undecided(current, champion, side):
    crossed, undecided = triggers(
        _spec(), _evidence(labeled_rows=1000, quality=current, champion_quality=champion)
    )
    assert crossed == []
    assert [u for u in undecided if u.startswith(f"quality roc_auc: cannot be computed on {side}")]


def test_quality_undefined_on_the_labeled_rows_says_why():
    why = "roc_auc of a multiclass model needs every class's probability"
    evidence = _evidence(labeled_rows=1000, quality=None, champion_quality=0.8, quality_why=why)
    assert triggers(_spec(), evidence)[1] == [
        f"quality roc_auc: cannot be computed on the labeled rows: {why}"
    ]
    holdout_side = _evidence(labeled_rows=1000, quality=0.7, champion_quality=None, quality_why=why)
    assert triggers(_spec(), holdout_side)[1] == [
        "quality roc_auc: cannot be computed on the champion's holdout: its run has no holdout_roc_auc"
        " (a version trained before ctloop computed it, or registered without a run)"
    ]


def _rules(spec: PipelineSpec, labeled_rows: int, **measures: tuple) -> Evidence:
    """A window whose rules are judged on ``measures``: metric=(value, reference, interval)."""
    rules = {r.metric: r for r in spec.monitoring.quality.rules}
    judged = tuple(
        judge(spec, rules[metric], Measure(labeled_rows, value, reference, "holdout", interval))
        for metric, (value, reference, interval) in measures.items()
    )
    return _evidence(labeled_rows=labeled_rows, quality_rules=judged)


def test_every_rule_is_judged_and_only_the_one_that_fires_is_a_trigger():
    """The example's rules: roc_auc within max_drop, accuracy significantly down, brier down on its
    face but not significantly."""
    evidence = _rules(
        _spec(),
        1500,
        roc_auc=(0.84, 0.87, (0.82, 0.86)),
        accuracy=(0.79, 0.89, (0.77, 0.81)),
        brier=(0.15, 0.11, (0.12, 0.18)),
    )
    crossed, undecided = triggers(_spec(), evidence)
    assert crossed == [
        "quality accuracy: 0.7900 on 1,500 labeled rows is 0.1000 worse than the champion's holdout"
        " 0.8900 (max_drop 0.04); its 95% interval [0.7700, 0.8100] lies wholly below 0.8500"
    ]
    assert undecided == [
        "quality brier: 0.1500 on 1,500 labeled rows is 0.0400 worse than the champion's holdout 0.1100"
        " (max_drop 0.03), but not significantly: its 95% interval [0.1200, 0.1800] is not wholly"
        " above 0.1400"
    ]
    decision = decide(_spec(), evidence, _history(True), [], NOW)
    assert (decision["action"], decision["severe"]) == (RETRAIN, False)


def test_a_drop_past_max_drop_that_is_not_significant_holds_and_says_why():
    evidence = _rules(_spec(), 1200, accuracy=(0.83, 0.89, (0.79, 0.87)))
    decision = decide(_spec(), evidence, _history(True, True), [], NOW)
    assert (decision["alert"], decision["action"]) == (False, HOLD)
    assert decision["why"].startswith("no trigger crossed (quality accuracy: 0.8300 on 1,200 labeled rows")
    assert "not significantly" in decision["why"]


def test_severe_names_the_rules_that_are_severe_only():
    """accuracy fell 0.15 (>= 3 x 0.04) and roc_auc 0.06 (an alert short of 3 x 0.05)."""
    evidence = _rules(_spec(), 2000, roc_auc=(0.81, 0.87, (0.80, 0.815)), accuracy=(0.74, 0.89, (0.72, 0.76)))
    decision = decide(_spec(), evidence, [], [], NOW)
    assert (decision["action"], decision["severe"]) == (RETRAIN, True)
    assert len(decision["triggers"]) == 2
    assert decision["why"] == (
        "severe quality drop: accuracy 0.7400 vs the champion's holdout 0.8900 on 2,000 labels"
        " (a drop of 0.1500 >= 3 x max_drop 0.04); k-of-n and cooldown bypassed"
    )


# --- decide: new evidence and k-of-n ------------------------------------------------------------


def test_a_window_already_decided_holds_without_new_evidence():
    history = _history(True, True)
    history[-1]["window_key"] = "w-now"
    decision = decide(_spec(), _evidence(**ALERTING), history, [], NOW)
    assert decision["action"] == HOLD
    assert decision["new_evidence"] is False
    assert f"{MONITOR}/run-1" in decision["why"]
    assert "nothing new to decide" in decision["why"]
    assert "k_of_n" not in decision


def test_no_trigger_holds_even_after_alerting_windows():
    decision = decide(_spec(), _evidence(), _history(True, True), [], NOW)
    assert decision["action"] == HOLD
    assert decision["alert"] is False
    assert decision["new_evidence"] is True
    assert decision["why"].startswith("no trigger crossed")
    assert "min_labels" in decision["why"]  # the undecided quality trigger is named


def test_first_alert_is_held_by_k_of_n():
    decision = decide(_spec(), _evidence(**ALERTING), [], [], NOW)
    assert decision["action"] == HOLD
    assert decision["alert"] is True
    assert decision["new_evidence"] is True
    assert decision["k_of_n"] == {"k": 2, "n": 3, "alerts": 1}
    assert "retrain.k_of_n" in decision["why"]
    assert decision["why"] == "1 of the last 1 windows alerted; retrain.k_of_n needs 2 of 3"


def test_second_confirmed_alert_retrains():
    decision = decide(_spec(), _evidence(**ALERTING), _history(True), [], NOW)
    assert decision["action"] == RETRAIN
    assert decision["k_of_n"]["alerts"] == 2
    assert decision["triggers"] == ["drift share 0.50 >= 0.30"]
    assert decision["why"] == "confirmed alert: retraining"


def test_history_without_alert_does_not_count():
    decision = decide(_spec(), _evidence(**ALERTING), _history(False, False), [], NOW)
    assert decision["action"] == HOLD
    assert decision["k_of_n"]["alerts"] == 1
    assert "1 of the last 3 windows" in decision["why"]


def test_only_the_last_n_minus_1_history_entries_count():
    stale = decide(_spec(), _evidence(**ALERTING), _history(True, True, False, False), [], NOW)
    assert stale["action"] == HOLD
    assert stale["k_of_n"]["alerts"] == 1
    recent = decide(_spec(), _evidence(**ALERTING), _history(False, False, True, False), [], NOW)
    assert recent["action"] == RETRAIN
    assert recent["k_of_n"]["alerts"] == 2


def test_k_of_n_1_of_1_retrains_on_the_first_alert():
    decision = decide(_spec(k_of_n={"k": 1, "n": 1}), _evidence(**ALERTING), _history(False), [], NOW)
    assert decision["action"] == RETRAIN
    assert decision["k_of_n"] == {"k": 1, "n": 1, "alerts": 1}


# --- guards: coalescing, circuit breaker, cooldown -----------------------------------------------


@pytest.mark.parametrize("state", ["open", "running"])
def test_an_active_request_is_joined(state):
    active = _request(state, rid="req-active")
    decision = _confirmed([_request(closed_ago=timedelta(days=3)), active])
    assert decision["action"] == ATTACH
    assert decision["request_id"] == "req-active"
    assert f"retrain request req-active is {state}" in decision["why"]


def test_coalescing_comes_before_breaker_and_cooldown():
    rejected = [_request(closed_ago=timedelta(minutes=m), outcome="rejected") for m in (30, 20, 10)]
    decision = _confirmed([*rejected, _request("running", rid="req-active")])
    assert decision["action"] == ATTACH
    assert decision["request_id"] == "req-active"


def test_breaker_opens_at_max_consecutive_rejections():
    rejected = [_request(closed_ago=timedelta(days=d), outcome="rejected") for d in (3, 2, 1)]
    decision = _confirmed(rejected)
    assert decision["action"] == BREAKER_OPEN
    assert "rejected the last 3 candidates" in decision["why"]
    assert "retrain.max_consecutive_rejections 3" in decision["why"]


def test_breaker_stays_closed_below_the_limit():
    rejected = [_request(closed_ago=timedelta(days=d), outcome="rejected") for d in (2, 1)]
    assert _confirmed(rejected)["action"] == RETRAIN
    assert _confirmed(rejected, _spec(max_consecutive_rejections=2))["action"] == BREAKER_OPEN


def test_a_promotion_in_between_resets_the_breaker():
    outcomes = ["rejected", "rejected", "promoted", "rejected", "rejected"]
    requests = [_request(closed_ago=timedelta(days=9 - i), outcome=o) for i, o in enumerate(outcomes)]
    assert _confirmed(requests)["action"] == RETRAIN


def test_breaker_orders_by_closing_time_not_list_order():
    requests = [
        _request(closed_ago=timedelta(days=1), outcome="promoted"),
        *[_request(closed_ago=timedelta(days=d), outcome="rejected") for d in (5, 4, 3)],
    ]
    assert _confirmed(requests)["action"] == RETRAIN


def test_failed_runs_are_skipped_by_the_breaker():
    outcomes = ["rejected", "failed", "rejected", "failed", "rejected"]
    requests = [_request(closed_ago=timedelta(days=9 - i), outcome=o) for i, o in enumerate(outcomes)]
    decision = _confirmed(requests)
    assert decision["action"] == BREAKER_OPEN
    assert "last 3 candidates" in decision["why"]


def test_a_retrain_closed_within_cooldown_holds():
    decision = _confirmed([_request(closed_ago=timedelta(hours=1))])
    assert decision["action"] == HOLD
    assert decision["why"].startswith("in cooldown")
    assert "retrain.cooldown_minutes 360" in decision["why"]
    assert "2026-03-01 11:00:00 UTC" in decision["why"]
    assert "ends 17:00:00" in decision["why"]


@pytest.mark.parametrize("ago", [timedelta(minutes=360), timedelta(hours=7)])
def test_after_cooldown_retrains(ago):
    assert _confirmed([_request(closed_ago=ago)])["action"] == RETRAIN


def test_cooldown_counts_the_latest_closed_request():
    requests = [_request(closed_ago=timedelta(minutes=10)), _request(closed_ago=timedelta(days=2))]
    assert _confirmed(requests)["action"] == HOLD
    assert _confirmed(requests, _spec(cooldown_minutes=5))["action"] == RETRAIN


def test_zero_cooldown_never_holds():
    assert _confirmed([_request(closed_ago=timedelta(0))], _spec(cooldown_minutes=0))["action"] == RETRAIN


@pytest.mark.parametrize("kind", ["manual", "schedule", "asset", "alert"])
def test_a_training_no_monitor_alert_asked_for_starts_no_cooldown(kind):
    """A first training (no champion to monitor yet, so never asked by a monitor alert), a scheduled
    or manual one, or an external alert's: none of them holds back the monitor's next alert."""
    assert _confirmed([_request(closed_ago=timedelta(minutes=5), kinds=(kind,))])["action"] == RETRAIN


def test_a_monitor_request_served_by_a_scheduled_run_starts_a_cooldown():
    served = _request(closed_ago=timedelta(minutes=5), kinds=("monitor", "schedule"))
    assert _confirmed([served])["action"] == HOLD


def test_a_rejected_alert_retrain_starts_a_cooldown_too():
    decision = _confirmed([_request(closed_ago=timedelta(minutes=5), outcome="rejected")])
    assert decision["action"] == HOLD
    assert decision["why"].startswith("in cooldown")


# --- severe quality drop: confirms at once ------------------------------------------------------

SEVERE = {"labeled_rows": 5000, "quality": 0.48, "champion_quality": 0.95}
SEVERE_WHY = (
    "severe quality drop: accuracy 0.4800 vs the champion's holdout 0.9500 on 5,000 labels"
    " (a drop of 0.4700 >= 3 x max_drop 0.05); k-of-n and cooldown bypassed"
)


def _accuracy(severe_multiple: float | None = None, **retrain) -> PipelineSpec:
    """The example spec judging accuracy (max_drop 0.05 on >= 1000 labels, severe at the default 3x)."""
    quality = {"metric": "accuracy"} | ({"severe_multiple": severe_multiple} if severe_multiple else {})
    return _spec({"quality": quality}, **retrain)


@pytest.mark.parametrize(
    ("champion", "current", "severe"),
    # 3 x max_drop 0.05 = 0.15: 0.95 - 0.80 is 0.15 in floating point too, and severe
    [(0.95, 0.80, True), (0.95, 0.801, False), (0.95, 0.48, True), (0.95, 0.88, False)],
)
def test_a_drop_of_at_least_severe_multiple_times_max_drop_is_severe(champion, current, severe):
    decision = decide(
        _accuracy(),
        _evidence(_accuracy(), labeled_rows=1000, quality=current, champion_quality=champion),
        [],
        [],
        NOW,
    )
    assert decision["alert"] is True
    assert decision["severe"] is severe
    assert decision["action"] == (RETRAIN if severe else HOLD)


def test_a_severe_drop_on_too_few_labels_is_not_even_an_alert():
    decision = decide(_accuracy(), _evidence(_accuracy(), **(SEVERE | {"labeled_rows": 999})), [], [], NOW)
    assert (decision["alert"], decision["severe"], decision["action"]) == (False, False, HOLD)
    assert "monitoring.quality.min_labels 1000" in decision["why"]


def test_severe_follows_the_metric_direction():
    spec = _spec({"quality": {"metric": "log_loss", "max_drop": 0.05}})
    worse = decide(spec, _evidence(spec, labeled_rows=5000, quality=0.60, champion_quality=0.40), [], [], NOW)
    assert (worse["severe"], worse["action"]) == (True, RETRAIN)
    assert "log_loss 0.6000 vs the champion's holdout 0.4000" in worse["why"]
    better = decide(
        spec, _evidence(spec, labeled_rows=5000, quality=0.20, champion_quality=0.40), [], [], NOW
    )
    assert (better["alert"], better["severe"], better["action"]) == (False, False, HOLD)


def test_a_severe_drop_bypasses_k_of_n():
    decision = decide(_accuracy(), _evidence(_accuracy(), **SEVERE), [], [], NOW)
    assert decision["action"] == RETRAIN
    assert decision["severe"] is True
    assert decision["k_of_n"] == {"k": 2, "n": 3, "alerts": 1}  # what k-of-n alone would have said
    assert decision["why"] == SEVERE_WHY


def test_a_severe_drop_bypasses_the_cooldown():
    decision = decide(
        _accuracy(), _evidence(_accuracy(), **SEVERE), [], [_request(closed_ago=timedelta(minutes=5))], NOW
    )
    assert decision["action"] == RETRAIN
    assert decision["why"] == SEVERE_WHY


def test_severe_multiple_comes_from_the_spec():
    """0.47 is 9.4 x max_drop: severe at 9, not at 10, where k-of-n holds the first window again."""
    assert decide(_accuracy(9), _evidence(_accuracy(9), **SEVERE), [], [], NOW)["action"] == RETRAIN
    held = decide(_accuracy(10), _evidence(_accuracy(10), **SEVERE), [], [], NOW)
    assert (held["severe"], held["action"]) == (False, HOLD)
    assert held["why"] == "1 of the last 1 windows alerted; retrain.k_of_n needs 2 of 3"


def test_a_quality_drop_short_of_severe_keeps_k_of_n_and_the_cooldown():
    evidence = _evidence(_accuracy(), labeled_rows=5000, quality=0.85, champion_quality=0.95)  # 0.10 < 0.15
    first = decide(_accuracy(), evidence, [], [], NOW)
    assert (first["alert"], first["severe"], first["action"]) == (True, False, HOLD)
    assert "retrain.k_of_n needs 2 of 3" in first["why"]
    confirmed = decide(_accuracy(), evidence, _history(True), [_request(closed_ago=timedelta(hours=1))], NOW)
    assert confirmed["action"] == HOLD
    assert confirmed["why"].startswith("in cooldown")


def test_drift_alone_keeps_every_guard_however_large():
    everything = {"drift_share": 1.0, "drifted_features": ["age", "credit_score", "tenure_months"]}
    first = decide(_spec(), _evidence(**everything), [], [], NOW)
    assert (first["severe"], first["action"]) == (False, HOLD)
    assert "retrain.k_of_n needs 2 of 3" in first["why"]
    cooling = decide(
        _spec(), _evidence(**everything), _history(True), [_request(closed_ago=timedelta(hours=1))], NOW
    )
    assert (cooling["severe"], cooling["action"]) == (False, HOLD)
    assert cooling["why"].startswith("in cooldown")


def test_an_open_breaker_holds_even_a_severe_drop():
    rejected = [_request(closed_ago=timedelta(days=d), outcome="rejected") for d in (3, 2, 1)]
    decision = decide(_accuracy(), _evidence(_accuracy(), **SEVERE), [], rejected, NOW)
    assert decision["action"] == BREAKER_OPEN
    assert decision["severe"] is True
    assert decision["why"].startswith("severe quality drop: accuracy 0.4800")
    assert "circuit breaker open: the gate rejected the last 3 candidates" in decision["why"]
    assert "bypassed" not in decision["why"]


@pytest.mark.parametrize("state", ["open", "running"])
def test_a_severe_drop_attaches_to_a_retrain_already_queued_or_running(state):
    requests = [_request(closed_ago=timedelta(minutes=5)), _request(state, rid="req-active")]
    decision = decide(_accuracy(), _evidence(_accuracy(), **SEVERE), [], requests, NOW)
    assert decision["action"] == ATTACH
    assert decision["request_id"] == "req-active"
    assert decision["why"].startswith("severe quality drop: accuracy 0.4800")
    assert f"retrain request req-active is {state}; this alert's reason is attached to it" in decision["why"]


def test_a_severe_window_already_decided_is_not_decided_again():
    history = _history(False)
    history[-1]["window_key"] = "w-now"
    decision = decide(_accuracy(), _evidence(_accuracy(), **SEVERE), history, [], NOW)
    assert (decision["action"], decision["new_evidence"]) == (HOLD, False)


# --- a new champion worse than the one it replaced: rollback ---------------------------------

REGRESSION = "regression: v2 serves roc_auc 0.6100 against v1's 0.8700 on the same 2,400 labeled rows"


def test_a_regression_rolls_back_at_once_and_retrains():
    decision = decide(_spec(), _evidence(regression=REGRESSION), [], [], NOW)
    assert (decision["action"], decision["retrain"], decision["alert"]) == (ROLLBACK, True, True)
    assert decision["triggers"] == [REGRESSION]
    assert decision["why"] == f"{REGRESSION}; rolling back and retraining"


def test_a_regression_bypasses_k_of_n_the_cooldown_and_a_window_already_decided():
    history = _history(False)
    history[-1]["window_key"] = "w-now"
    cooling = [_request(closed_ago=timedelta(minutes=5))]
    decision = decide(_spec(), _evidence(regression=REGRESSION), history, cooling, NOW)
    assert (decision["action"], decision["retrain"], decision["new_evidence"]) == (ROLLBACK, True, True)


def test_an_open_breaker_stops_the_retrain_after_a_rollback_not_the_rollback():
    rejected = [_request(closed_ago=timedelta(days=d), outcome="rejected") for d in (3, 2, 1)]
    decision = decide(_spec(), _evidence(**ALERTING, regression=REGRESSION), [], rejected, NOW)
    assert (decision["action"], decision["retrain"]) == (ROLLBACK, False)
    assert decision["triggers"][0] == REGRESSION
    assert len(decision["triggers"]) == 2  # the drift trigger is still named
    assert decision["why"].startswith(f"{REGRESSION}; rolling back; circuit breaker open")
    assert decision["why"].endswith("no retrain is requested")
