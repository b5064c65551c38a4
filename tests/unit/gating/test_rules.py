from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ctloop.errors import SpecError
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.decision import GateVerdict, RelativeComparison
from ctloop.gating.paired_bootstrap import paired_bootstrap
from ctloop.gating.rules import describe, evaluate_gates, relative_comparison
from ctloop.spec.models import BootstrapRule, Gates, RecentHoldout
from ctloop.training.contracts import Evaluation, HoldoutRef, HoldoutScores

CANDIDATE = {"roc_auc": 0.80, "log_loss": 0.45, "accuracy": 0.7, "f1": 0.6, "precision": 0.6, "recall": 0.6}


def _gates(*rules, mode="enabled") -> Gates:
    return Gates.model_validate({"mode": mode, "rules": list(rules)})


@pytest.mark.parametrize(
    ("rule", "passed"),
    [
        ({"metric": "roc_auc", "at_least": 0.79}, True),
        ({"metric": "roc_auc", "at_least": 0.81}, False),
        ({"metric": "log_loss", "at_most": 0.5}, True),
        ({"metric": "log_loss", "at_most": 0.4}, False),
    ],
)
def test_absolute_rules(rule, passed):
    decision = evaluate_gates(_gates(rule), "classification", CANDIDATE, None)
    assert decision.passed is passed
    assert decision.promote is passed
    verdict = decision.rules[0]
    assert verdict.rule == "threshold"
    assert verdict.value == CANDIDATE[rule["metric"]]
    assert verdict.note.endswith("passed" if passed else "failed")


def test_relative_rules_are_skipped_without_a_champion_and_say_so():
    decision = evaluate_gates(
        _gates({"metric": "roc_auc", "min_improvement": 0.01}), "classification", CANDIDATE, None
    )
    assert decision.passed
    assert decision.rules[0].passed is None
    assert "no champion" in decision.rules[0].note


@pytest.mark.parametrize(
    ("rule", "champion", "passed"),
    [
        ({"metric": "roc_auc", "min_improvement": 0.01}, {"roc_auc": 0.78}, True),
        ({"metric": "roc_auc", "min_improvement": 0.03}, {"roc_auc": 0.78}, False),
        ({"metric": "roc_auc", "max_regression": 0.02}, {"roc_auc": 0.81}, True),
        ({"metric": "roc_auc", "max_regression": 0.005}, {"roc_auc": 0.81}, False),
        # lower is better: a smaller log loss is an improvement
        ({"metric": "log_loss", "min_improvement": 0.04}, {"log_loss": 0.50}, True),
        ({"metric": "log_loss", "min_improvement": 0.0}, {"log_loss": 0.40}, False),
        ({"metric": "log_loss", "max_regression": 0.06}, {"log_loss": 0.40}, True),
    ],
)
def test_relative_rules(rule, champion, passed):
    decision = evaluate_gates(_gates(rule), "classification", CANDIDATE, {**CANDIDATE, **champion}, "3")
    assert decision.passed is passed
    assert decision.rules[0].rule == "relative"
    assert decision.rules[0].champion == champion[rule["metric"]]
    assert ("rejected" in describe(decision)) is (not passed)
    assert "v3" in describe(decision)


def test_dry_run_never_promotes():
    decision = evaluate_gates(
        _gates({"metric": "roc_auc", "at_least": 0.5}, mode="dry_run"), "classification", CANDIDATE, None
    )
    assert decision.passed
    assert not decision.promote
    assert "dry run" in describe(decision)


def test_every_failed_rule_is_listed():
    decision = evaluate_gates(
        _gates(
            {"metric": "roc_auc", "at_least": 0.9},
            {"metric": "log_loss", "at_most": 0.1},
            {"metric": "f1", "at_least": 0.1},
        ),
        "classification",
        CANDIDATE,
        None,
    )
    assert len(decision.failed) == 2
    assert [r.passed for r in decision.rules] == [False, False, True]


def test_metric_the_task_does_not_produce_is_named():
    with pytest.raises(SpecError, match=r"gates.rules.0.metric: 'rmse' is not a metric a classification"):
        evaluate_gates(_gates({"metric": "rmse", "at_most": 1.0}), "classification", CANDIDATE, None)


def _fields(passed, rule="latency", metric="single_p95_ms", note="12.00 ms must be <= 10.00 ms") -> dict:
    return {
        "rule": rule,
        "metric": metric,
        "kind": "at_most",
        "value": 12.0,
        "bound": 10.0,
        "passed": passed,
        "note": note,
    }


def _verdict(passed, **fields) -> GateVerdict:
    return GateVerdict.model_validate(_fields(passed, **fields))


def test_extra_verdicts_are_folded_into_the_decision():
    gates = _gates({"metric": "roc_auc", "at_least": 0.5})
    extra = [_verdict(True), _verdict(None, rule="bootstrap", metric="roc_auc", note="skipped: no champion")]
    decision = evaluate_gates(gates, "classification", CANDIDATE, None, extra_verdicts=extra)
    assert decision.passed
    assert decision.promote
    assert [r.rule for r in decision.rules] == ["threshold", "latency", "bootstrap"]

    failing = [
        *extra,
        _verdict(False, rule="slice_regression", metric="roc_auc", note="contract=two_year: -0.03"),
    ]
    decision = evaluate_gates(gates, "classification", CANDIDATE, None, extra_verdicts=failing)
    assert not decision.passed
    assert not decision.promote
    assert decision.failed == ["roc_auc at_most: contract=two_year: -0.03"]
    assert "rejected: roc_auc at_most: contract=two_year" in describe(decision)


def test_dry_run_reports_failing_extra_verdicts_and_still_never_promotes():
    gates = _gates({"metric": "roc_auc", "at_least": 0.5}, mode="dry_run")
    passing = evaluate_gates(gates, "classification", CANDIDATE, None, extra_verdicts=[_verdict(True)])
    assert passing.passed
    assert not passing.promote
    failing = evaluate_gates(gates, "classification", CANDIDATE, None, extra_verdicts=[_verdict(False)])
    assert not failing.passed
    assert not failing.promote
    assert "dry run" in describe(failing)


def test_a_malformed_extra_verdict_is_refused():
    broken = _fields(True)
    del broken["note"]
    with pytest.raises(ValidationError, match=r"note\n  Field required"):
        GateVerdict.model_validate(broken)
    with pytest.raises(ValidationError, match=r"passed\n  Input should be a valid boolean"):
        GateVerdict.model_validate(_fields("yes"))


def test_describe_stays_one_line_whatever_the_notes_hold():
    decision = evaluate_gates(
        _gates(),
        "classification",
        CANDIDATE,
        None,
        "4",
        extra_verdicts=[_verdict(False, note="load failed:\n  trace")],
    )
    line = describe(decision)
    assert "\n" not in line
    assert "load failed: trace" in line
    assert line.endswith("(against champion v4)")


def test_the_verdicts_of_the_new_rules_fold_in_as_they_are():
    y = (np.random.default_rng(0).random(2000) < 0.3).astype(int)
    noise = np.random.default_rng(1).random(2000)
    champion = Predictions((noise > 0.5).astype(int), noise)  # no skill
    candidate = Predictions(y, np.clip(0.5 * y + 0.5 * noise, 0, 1))
    verdict = paired_bootstrap(
        BootstrapRule(metric="roc_auc", margin=0.01), "classification", y, candidate, champion
    )
    decision = evaluate_gates(_gates(), "classification", CANDIDATE, None, extra_verdicts=[verdict])
    assert decision.passed
    assert decision.rules == [verdict]
    backwards = paired_bootstrap(BootstrapRule(metric="roc_auc"), "classification", y, champion, candidate)
    decision = evaluate_gates(_gates(), "classification", CANDIDATE, None, extra_verdicts=[backwards])
    assert decision.failed[0].startswith("roc_auc ci_lower_bound: 95% interval")


FROZEN_CHAMPION = {**CANDIDATE, "roc_auc": 0.70}  # the candidate is 0.10 better on the frozen holdout
RECENT = HoldoutScores(
    holdout=HoldoutRef(key="holdouts/p/r.parquet", digest="r", rows=1200),
    candidate={**CANDIDATE, "roc_auc": 0.60},
    champion={**CANDIDATE, "roc_auc": 0.90},  # ... and 0.30 worse on the recent one
    predictions_key="runs/p/r/recent_predictions.parquet",
)


def _evaluation(trigger: str, recent: HoldoutScores | None = RECENT) -> Evaluation:
    return Evaluation(
        mlflow_run_id="run",
        candidate=CANDIDATE,
        champion=FROZEN_CHAMPION,
        champion_version="3",
        holdout_digest="d",
        holdout_key="holdouts/p/d.parquet",
        predictions_key="runs/p/r/holdout_predictions.parquet",
        recent=recent,
        recent_note="not used: the last 1 labeled batch(es) hold 80 rows < gates.recent_holdout.min_rows 200"
        if recent is None
        else "the last 1 labeled batch(es) hold 1200 rows",
        trigger=trigger,
    )


@pytest.mark.parametrize(
    ("judge", "trigger", "on"),
    [
        ("alert", "asset", "recent_holdout"),  # the monitor's retrain request
        ("alert", "alert", "recent_holdout"),  # an external alert
        ("alert", "manual", "frozen_holdout"),
        ("alert", "schedule", "frozen_holdout"),
        ("always", "schedule", "recent_holdout"),
        ("always", "manual", "recent_holdout"),
        ("never", "asset", "frozen_holdout"),
        ("never", "alert", "frozen_holdout"),
    ],
)
def test_the_relative_comparison_follows_the_trigger_and_the_setting(judge, trigger, on):
    comparison = relative_comparison(RecentHoldout(judge_relative=judge), _evaluation(trigger))
    assert comparison.on == on
    expected = RECENT if on == "recent_holdout" else None
    assert comparison.candidate == (expected.candidate if expected else CANDIDATE)
    assert comparison.champion == (expected.champion if expected else FROZEN_CHAMPION)
    assert f"judge_relative is {judge!r}" in comparison.why
    if judge == "alert" and on == "frozen_holdout":
        assert f"trigger is {trigger!r}, not an alert" in comparison.why


def test_without_a_recent_holdout_an_alert_run_is_judged_on_the_frozen_one_and_says_why():
    comparison = relative_comparison(RecentHoldout(), _evaluation("asset", recent=None))
    assert comparison.on == "frozen_holdout"
    assert comparison.candidate == CANDIDATE
    assert "no recent holdout (not used: the last 1 labeled batch(es) hold 80 rows" in comparison.why


def test_relative_rules_judge_the_comparison_and_absolute_rules_the_frozen_holdout():
    gates = _gates({"metric": "roc_auc", "at_least": 0.75}, {"metric": "roc_auc", "min_improvement": 0.002})
    frozen = evaluate_gates(gates, "classification", CANDIDATE, FROZEN_CHAMPION, "3")
    assert frozen.passed
    assert frozen.relative_on == "frozen_holdout"
    assert "recent" not in frozen.summary

    comparison = relative_comparison(RecentHoldout(), _evaluation("asset"))
    recent = evaluate_gates(gates, "classification", CANDIDATE, FROZEN_CHAMPION, "3", relative=comparison)
    assert not recent.passed
    threshold, relative = recent.rules
    assert (threshold.rule, threshold.value, threshold.passed) == ("threshold", 0.80, True)  # the frozen 0.80
    assert (relative.candidate, relative.champion) == (0.60, 0.90)
    assert relative.value == pytest.approx(-0.30)
    assert relative.passed is False
    assert recent.relative_on == "recent_holdout"
    assert recent.relative_on_why == comparison.why
    assert recent.summary.endswith("(against champion v3; relative rules on the recent holdout)")


def test_a_relative_rule_whose_metric_the_comparison_lacks_is_named():
    comparison = RelativeComparison(
        on="recent_holdout", why="test", candidate={"accuracy": 0.7}, champion=None
    )
    gates = _gates({"metric": "roc_auc", "min_improvement": 0.0})
    with pytest.raises(SpecError, match="roc_auc"):
        evaluate_gates(gates, "classification", CANDIDATE, None, relative=comparison)


def _present(candidate_log_loss: float, champion_log_loss: float) -> RelativeComparison:
    """Both models on the recent holdout, where the relative rules were judged."""
    return RelativeComparison(
        on="recent_holdout",
        why="an alert started this run",
        candidate={**CANDIDATE, "log_loss": candidate_log_loss},
        champion={**CANDIDATE, "log_loss": champion_log_loss},
    )


@pytest.mark.parametrize(
    ("candidate_now", "champion_now", "passed", "says"),
    [
        (
            0.70,
            1.00,
            True,
            "the champion misses it too (1.0000) and the candidate does better (0.7000): passed",
        ),
        (1.10, 1.00, False, "the champion misses it too (1.0000) and the candidate does not do better"),
    ],
)
def test_an_absolute_rule_the_champion_fails_now_is_passed_by_doing_better_than_it(
    candidate_now, champion_now, passed, says
):
    """The candidate misses log_loss <= 0.40 on the frozen holdout (0.45); so does the champion
    on the recent holdout, by far: refusing the candidate would keep a model that misses it too."""
    gates = _gates({"metric": "log_loss", "at_most": 0.4})
    champion = {**CANDIDATE, "log_loss": 0.3}

    decision = evaluate_gates(
        gates, "classification", CANDIDATE, champion, "1", relative=_present(candidate_now, champion_now)
    )

    assert decision.passed is passed
    (verdict,) = decision.rules
    assert verdict.note.startswith("0.4500 must be <= 0.4000 on the frozen holdout; on the recent holdout")
    assert says in verdict.note


def test_an_absolute_rule_stays_absolute_when_the_champion_meets_it_now_or_it_is_switched_off():
    gates = _gates({"metric": "log_loss", "at_most": 0.4})
    champion = {**CANDIDATE, "log_loss": 0.3}
    meets_now = evaluate_gates(
        gates, "classification", CANDIDATE, champion, "1", relative=_present(0.2, 0.35)
    )
    strict = Gates.model_validate({**gates.model_dump(), "recent_holdout": {"relax_absolute": False}})
    switched_off = evaluate_gates(
        strict, "classification", CANDIDATE, champion, "1", relative=_present(0.2, 1.0)
    )
    frozen = RelativeComparison(on="frozen_holdout", why="", candidate=CANDIDATE, champion=champion)
    on_frozen = evaluate_gates(gates, "classification", CANDIDATE, champion, "1", relative=frozen)

    for decision in (meets_now, switched_off, on_frozen):
        assert decision.passed is False
        assert decision.rules[0].note == "0.4500 must be <= 0.4000: failed"
