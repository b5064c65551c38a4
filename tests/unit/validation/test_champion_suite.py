"""The expectation suite a model was trained with is kept, by content, and read back for scoring."""

from __future__ import annotations

import json
import shutil

from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from ctloop.validation.champion_suite import store_suite, suite_dir
from tests.helpers import REPO, example_spec


def _settings_with_suite(tmp_path, expectations: list[dict]):
    directory = tmp_path / "expectations"
    directory.mkdir(exist_ok=True)
    (directory / "churn.json").write_text(json.dumps({"name": "churn", "expectations": expectations}))
    return load_settings().model_copy(update={"expectations_dir": directory})


def test_each_suite_version_is_stored_once_by_content_and_read_back(tmp_path):
    spec = PipelineSpec.model_validate(example_spec("suites", "data"))
    strict = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]
    lenient = strict + [{"type": "expect_column_to_exist", "kwargs": {"column": "age"}}]
    first = store_suite(spec, _settings_with_suite(tmp_path, strict))
    again = store_suite(spec, _settings_with_suite(tmp_path, strict))
    edited_settings = _settings_with_suite(tmp_path, lenient)
    second = store_suite(spec, edited_settings)
    assert first == again != second
    # the committed file now holds the edit; the first model's checks are still the first suite
    stored = suite_dir(spec, edited_settings, first) / "churn.json"
    assert json.loads(stored.read_text())["expectations"] == strict
    assert (
        json.loads((suite_dir(spec, edited_settings, second) / "churn.json").read_text())["expectations"]
        == lenient
    )


def test_a_version_without_a_stored_suite_uses_the_committed_one(tmp_path):
    spec = PipelineSpec.model_validate(example_spec("suites", "data"))
    settings = load_settings().model_copy(update={"expectations_dir": tmp_path})
    shutil.copy(REPO / "include" / "expectations" / "churn.json", tmp_path)
    assert suite_dir(spec, settings, None) == tmp_path
