from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ctloop.errors import SpecError
from ctloop.spec.loading import load_spec, load_specs
from tests.helpers import REPO, example_spec


def test_example_spec_is_valid():
    spec = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
    assert spec.name == "churn"
    assert "customer_id" not in spec.columns.features
    assert spec.columns.target not in spec.columns.features
    assert len(spec.columns.features) == 21


def _write(tmp_path: Path, name: str, spec: dict | str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda s: s.update(unknown_field=1), "unknown_field", "Extra inputs are not permitted"),
        (lambda s: s["data"].update(format="xlsx"), "data.format", "'csv' or 'parquet'"),
        (lambda s: s["holdout"].update(fraction=1.5), "holdout.fraction", "less than 1"),
        (
            lambda s: s["gates"]["rules"].append({"metric": "auc", "at_least": 0.5}),
            "gates.rules.3.metric",
            "'auc' is not a metric",
        ),
        (
            lambda s: s["gates"]["rules"].append({"metric": "roc_auc", "at_least": 0.5, "at_most": 0.9}),
            "gates.rules.3",
            "exactly one of",
        ),
        (lambda s: s["columns"]["numeric"].append("region"), "columns", "more than once: region"),
        (lambda s: s["estimator"].update(class_path="not a path"), "estimator.class_path", "dotted import"),
        (lambda s: s["columns"].pop("target"), "columns.target", "Field required"),
        (
            lambda s: (s["holdout"].update(strategy="time"), s["columns"].pop("timestamp")),
            "holdout.strategy",
            "needs columns.timestamp",
        ),
        (
            lambda s: s["monitoring"]["quality"].update(severe_multiple=1),
            "monitoring.quality.severe_multiple",
            "greater than 1",
        ),
        (
            lambda s: s["monitoring"]["quality"].update(severe_multiple=0.5),
            "monitoring.quality.severe_multiple",
            "greater than 1",
        ),
        (
            lambda s: s["monitoring"]["quality"].update(metric="roc_auc", max_drop=0.05),
            "monitoring.quality",
            "set metric and max_drop (one rule) or rules (several), not both",
        ),
        (
            lambda s: s["monitoring"]["quality"]["rules"].append({"metric": "accuracy", "max_drop": 0.1}),
            "monitoring.quality",
            "each metric at most once (accuracy repeated)",
        ),
        (
            lambda s: s["monitoring"]["quality"]["rules"].append({"metric": "rmse", "max_drop": 0.1}),
            "monitoring.quality.rules.3.metric",
            "'rmse' is not a classification metric",
        ),
        (
            lambda s: s["monitoring"].update(quality={"metric": "mae", "max_drop": 0.1}),
            "monitoring.quality.metric",
            "'mae' is not a classification metric",
        ),
        (
            lambda s: s["monitoring"]["quality"]["rules"][0].update(max_drop=-0.01),
            "monitoring.quality.rules.0.max_drop",
            "greater than or equal to 0",
        ),
        (
            lambda s: s["monitoring"]["quality"].update(rules=[]),
            "monitoring.quality.rules",
            "at least 1 item",
        ),
        (
            lambda s: s["monitoring"]["quality"].update(confidence=1.0),
            "monitoring.quality.confidence",
            "less than 1",
        ),
        (lambda s: s["monitoring"]["quality"].update(resamples=10), "monitoring.quality.resamples", "100"),
        (
            lambda s: s["monitoring"]["quality"].update(reference="latest"),
            "monitoring.quality.reference",
            "'holdout' or 'recent'",
        ),
        (lambda s: s["data"].update(min_rows=1), "data.min_rows", "greater than or equal to 2"),
        (lambda s: s["columns"].update(na_values="NA"), "columns.na_values", "valid list"),
        (lambda s: s["columns"].update(na_values=[None]), "columns.na_values.0", "valid string"),
    ],
)
def test_invalid_spec_names_file_and_field(tmp_path, change, field, message):
    spec = example_spec("bad", "data")
    change(spec)
    path = _write(tmp_path, "bad", spec)
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert str(path) in str(raised.value)
    assert field in str(raised.value)
    assert message in str(raised.value)


def test_severe_multiple_defaults_to_three_and_may_be_set(tmp_path):
    plain = load_spec(_write(tmp_path, "plain", example_spec("plain", "data")))
    assert plain.monitoring.quality.severe_multiple == 3
    spec = example_spec("tuned", "data")
    spec["monitoring"]["quality"]["severe_multiple"] = 1.5
    assert load_spec(_write(tmp_path, "tuned", spec)).monitoring.quality.severe_multiple == 1.5


def test_quality_rules_default_and_the_one_rule_shape_of_earlier_specs(tmp_path):
    example = load_spec(_write(tmp_path, "example", example_spec("example", "data"))).monitoring.quality
    assert [(r.metric, r.max_drop) for r in example.rules] == [
        ("roc_auc", 0.05),
        ("accuracy", 0.04),
        ("brier", 0.03),
    ]
    assert (example.metric, example.max_drop) == ("roc_auc", 0.05)  # the first rule: the watch compares on it
    assert (example.confidence, example.resamples, example.seed, example.reference) == (
        0.95,
        500,
        0,
        "holdout",
    )
    spec = example_spec("old", "data")
    spec["monitoring"]["quality"] = {
        "metric": "log_loss",
        "max_drop": 0.1,
        "min_labels": 300,
        "severe_multiple": 2,
    }
    old = load_spec(_write(tmp_path, "old", spec)).monitoring.quality
    assert [(r.metric, r.max_drop) for r in old.rules] == [("log_loss", 0.1)]
    assert (old.metric, old.max_drop, old.min_labels, old.severe_multiple) == ("log_loss", 0.1, 300, 2)
    spec["monitoring"]["quality"] = {"max_drop": 0.02}
    assert load_spec(_write(tmp_path, "old", spec)).monitoring.quality.rules[0].metric == "roc_auc"
    spec["monitoring"].pop("quality")
    assert [
        (r.metric, r.max_drop) for r in load_spec(_write(tmp_path, "old", spec)).monitoring.quality.rules
    ] == [("roc_auc", 0.05)]


def test_only_an_empty_cell_is_missing_unless_the_spec_lists_more(tmp_path):
    plain = load_spec(_write(tmp_path, "plain", example_spec("plain", "data")))
    assert (plain.columns.na_values, plain.data.min_rows) == ([""], 50)
    spec = example_spec("tokens", "data")
    spec["columns"]["na_values"] = ["", "NA", "null"]
    assert load_spec(_write(tmp_path, "tokens", spec)).columns.na_values == ["", "NA", "null"]


def test_unparseable_yaml_names_file(tmp_path):
    path = _write(tmp_path, "broken", "name: broken\ncolumns: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML"):
        load_spec(path)


def test_a_file_that_is_not_utf8_names_file(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin\.yaml: not UTF-8 text"):
        load_spec(path)


def test_name_must_match_file(tmp_path):
    path = _write(tmp_path, "other", example_spec("churn_two", "data"))
    with pytest.raises(SpecError, match="must match the file name 'other'"):
        load_spec(path)


def test_one_invalid_spec_does_not_hide_the_others(tmp_path):
    _write(tmp_path, "good", example_spec("good", "data"))
    _write(tmp_path, "bad", {"name": "bad"})
    specs, errors = load_specs(tmp_path)
    assert list(specs) == ["good"]
    assert [p.name for p in errors] == ["bad.yaml"]
    assert "data: Field required" in str(errors[tmp_path / "bad.yaml"])


@pytest.mark.parametrize(
    ("recent", "message"),
    [
        ({"judge_relative": "sometimes"}, "'alert', 'always' or 'never'"),
        ({"batches": 0}, "greater than or equal to 1"),
        ({"min_rows": 0}, "greater than or equal to 1"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_the_recent_holdout_policy_is_strict(tmp_path, recent, message):
    spec = example_spec("rh", "data")
    spec["gates"]["recent_holdout"] = recent
    with pytest.raises(SpecError) as raised:
        load_spec(_write(tmp_path, "rh", spec))
    assert "gates.recent_holdout." in str(raised.value)
    assert message in str(raised.value)


def test_the_recent_holdout_defaults_to_one_batch_of_200_rows_judged_for_alerts():
    policy = load_spec(REPO / "include" / "pipelines" / "churn.yaml").gates.recent_holdout
    assert (policy.batches, policy.min_rows, policy.judge_relative) == (1, 200, "alert")
