from __future__ import annotations

import pytest

from ctloop.errors import SpecError
from ctloop.gates import describe, evaluate_gates
from ctloop.spec import Gates

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
    assert decision["passed"] is passed and decision["promote"] is passed
    assert decision["rules"][0]["value"] == CANDIDATE[rule["metric"]]


def test_relative_rules_are_skipped_without_a_champion_and_say_so():
    decision = evaluate_gates(
        _gates({"metric": "roc_auc", "min_improvement": 0.01}), "classification", CANDIDATE, None
    )
    assert decision["passed"]
    assert decision["rules"][0]["passed"] is None
    assert "no champion" in decision["rules"][0]["note"]


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
    assert decision["passed"] is passed
    assert decision["rules"][0]["champion"] == champion[rule["metric"]]
    assert ("rejected" in describe(decision)) is (not passed)
    assert "v3" in describe(decision)


def test_dry_run_never_promotes():
    decision = evaluate_gates(
        _gates({"metric": "roc_auc", "at_least": 0.5}, mode="dry_run"), "classification", CANDIDATE, None
    )
    assert decision["passed"] and not decision["promote"]
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
    assert len(decision["failed"]) == 2
    assert [r["passed"] for r in decision["rules"]] == [False, False, True]


def test_metric_the_task_does_not_produce_is_named():
    with pytest.raises(SpecError, match=r"gates.rules.0.metric: 'rmse' is not a metric a classification"):
        evaluate_gates(_gates({"metric": "rmse", "at_most": 1.0}), "classification", CANDIDATE, None)
