from __future__ import annotations

import pytest

from ctloop.errors import SpecError
from ctloop.replay.overrides import apply_overrides, parse_assignment
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


@pytest.fixture
def spec() -> PipelineSpec:
    return PipelineSpec.model_validate(example_spec("p", "data/p"))


def test_dotted_keys_set_policy_values_read_as_yaml(spec):
    changed = apply_overrides(
        spec,
        [
            "retrain.k_of_n.k=1",
            "monitoring.drift.share=0.5",
            "monitoring.drift.key_features=[tenure_months, age]",
            "retrain.data={window: batches, last: 2}",
            "gates.rules.2.min_improvement=0.01",
        ],
    )
    assert changed.retrain.k_of_n.k == 1
    assert changed.monitoring.drift.share == 0.5
    assert changed.monitoring.drift.key_features == ["tenure_months", "age"]
    assert (changed.retrain.data.window, changed.retrain.data.last) == ("batches", 2)
    assert changed.gates.rules[2].min_improvement == 0.01
    assert spec.retrain.k_of_n.k == 2  # the loaded spec is left as it was


def test_a_default_the_yaml_left_unset_stays_unset(spec):
    """An unset retrain.data is what lets an alert-triggered training choose its window."""
    unset = spec.model_copy(update={"retrain": spec.retrain.model_validate({"k_of_n": {"k": 2, "n": 3}})})
    assert "data" not in unset.retrain.model_fields_set
    changed = apply_overrides(unset, ["retrain.k_of_n.k=1"])
    assert changed.retrain.k_of_n.k == 1
    assert "data" not in changed.retrain.model_fields_set
    assert "data" in apply_overrides(unset, ["retrain.data={window: all}"]).retrain.model_fields_set


def test_no_overrides_keep_the_spec(spec):
    assert apply_overrides(spec, []) is spec


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("retrain.k_of_n.kk=1", "retrain.k_of_n.kk"),
        ("retrian.cooldown_minutes=0", "retrian"),
        ("monitoring.drift.share=2", "monitoring.drift.share"),
        ("monitoring.drift.share=lots", "monitoring.drift.share"),
        ("retrain.k_of_n.k=9", "k (9) cannot exceed n"),
        ("gates.rules.7.at_least=0.8", "gates.rules.7"),
        ("name.first=x", "name is a value"),
        ("retrain.k_of_n.k", "KEY=VALUE"),
    ],
)
def test_a_bad_key_or_value_fails_naming_it(spec, assignment, named):
    with pytest.raises(SpecError, match="--set") as raised:
        apply_overrides(spec, [assignment])
    assert named in str(raised.value)


def test_a_value_that_is_not_yaml_fails_naming_the_key():
    with pytest.raises(SpecError, match="retrain.k_of_n.k"):
        parse_assignment("retrain.k_of_n.k=[1")
