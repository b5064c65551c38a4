from __future__ import annotations

import gc
import io
import json
import threading
import tracemalloc

import pandas as pd
import pytest

from ctloop.devtools.example_data import generate_batch, inject_fault
from ctloop.errors import DataValidationFailed, SpecError, ValidationCheckError
from ctloop.spec.loading import load_spec
from ctloop.validation import data_validation
from ctloop.validation.data_validation import raise_if_failed, render_html, run_expectations, validate_frame
from ctloop.validation.schema import check_schema
from tests.helpers import REPO

SPEC = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
EXPECTATIONS = REPO / "include" / "expectations"


@pytest.fixture(scope="module")
def frame():
    return generate_batch(3000, seed=11)


def test_clean_data_passes(frame):
    report = validate_frame(frame, SPEC, EXPECTATIONS)
    assert report["success"], report["expectation_failures"]
    assert report["statistics"]["evaluated_expectations"] == len(
        json.loads((EXPECTATIONS / "churn.json").read_text())["expectations"]
    )


@pytest.mark.parametrize(
    ("fault", "check", "column"),
    [
        ("missing_column", "column_present", "monthly_charges"),
        ("extra_column", "no_unexpected_columns", "unexpected_score"),
        ("nulls", "expect_column_values_to_not_be_null", "tenure_months"),
        ("wrong_type", "numeric_dtype", "monthly_charges"),
        ("out_of_range", "expect_column_values_to_be_between", "age"),
        ("empty", "has_rows", None),
        ("all_null", "not_all_null", "credit_score"),
    ],
)
def test_each_fault_is_named(frame, fault, check, column):
    report = validate_frame(inject_fault(frame, fault), SPEC, EXPECTATIONS)
    assert not report["success"]
    failures = report["schema_failures"] + report["expectation_failures"]
    assert (check, column) in [(f["check"], f["column"]) for f in failures]
    with pytest.raises(DataValidationFailed) as raised:
        raise_if_failed(report, "batch.csv")
    assert "batch.csv" in str(raised.value)
    assert check in str(raised.value)
    if column:
        assert column in str(raised.value)


def test_a_header_without_rows_fails_only_for_having_no_rows(frame):
    """Every column of a file without rows reads as text; that is no finding about its kinds."""
    header_only = pd.read_csv(io.StringIO(frame.head(0).to_csv(index=False)))
    report = validate_frame(header_only, SPEC, EXPECTATIONS)
    assert [(f["check"], f["column"]) for f in report["schema_failures"]] == [("has_rows", None)]


def test_unlabeled_rows_fail(frame):
    broken = frame.copy()
    broken.loc[:9, "churned"] = None
    report = validate_frame(broken, SPEC, EXPECTATIONS)
    assert ("target_labeled", "churned") in [(f["check"], f["column"]) for f in report["schema_failures"]]


def test_bad_timestamp_is_named(frame):
    broken = frame.copy()
    broken["event_time"] = broken["event_time"].astype(str)
    broken.loc[3, "event_time"] = "yesterday-ish"
    report = validate_frame(broken, SPEC, EXPECTATIONS)
    assert "'yesterday-ish' is not a timestamp" in json.dumps(report["schema_failures"])


def _suite(tmp_path, expectations):
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"name": "custom", "expectations": expectations}))
    return SPEC.model_copy(update={"expectation_suite": "custom"})


def test_unknown_expectation_type_is_a_spec_error_not_a_silent_pass(tmp_path, frame):
    spec = _suite(tmp_path, [{"type": "expect_column_values_to_be_purple", "kwargs": {"column": "age"}}])
    with pytest.raises(SpecError, match="custom.json"):
        validate_frame(frame, spec, tmp_path)


def test_crashing_expectation_is_a_check_error(tmp_path, frame):
    spec = _suite(
        tmp_path,
        [{"type": "expect_column_values_to_match_regex", "kwargs": {"column": "age", "regex": "("}}],
    )
    with pytest.raises(ValidationCheckError, match="expect_column_values_to_match_regex"):
        validate_frame(frame, spec, tmp_path)


def test_missing_suite_file_names_it(tmp_path, frame):
    spec = SPEC.model_copy(update={"expectation_suite": "absent"})
    with pytest.raises(SpecError, match="absent.json: expectation suite file not found"):
        validate_frame(frame, spec, tmp_path)


def test_html_escapes_data_values(frame):
    broken = frame.copy()
    broken["<script>alert(1)</script>"] = 1
    report = validate_frame(broken, SPEC, EXPECTATIONS)
    page = render_html(report, "t")
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_expectation_on_a_column_the_data_lacks_is_a_check_error(tmp_path, frame):
    spec = _suite(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "ghost"}}])
    with pytest.raises(ValidationCheckError, match="column 'ghost'"):
        validate_frame(frame, spec, tmp_path)


def test_table_level_expectations_see_the_whole_frame(tmp_path, frame):
    spec = _suite(
        tmp_path,
        [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 5000}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
        ],
    )
    report = validate_frame(frame, spec, tmp_path)
    assert [f["check"] for f in report["expectation_failures"]] == ["expect_table_row_count_to_be_between"]
    assert report["statistics"]["evaluated_expectations"] == 2


def test_too_few_training_rows_fail_before_training(frame):
    report = validate_frame(frame.head(SPEC.data.min_rows - 1), SPEC, EXPECTATIONS)
    assert ("min_rows", None) in [(f["check"], f["column"]) for f in report["schema_failures"]]
    assert validate_frame(frame.head(SPEC.data.min_rows), SPEC, EXPECTATIONS)["success"]


def test_a_single_class_training_set_is_named(frame):
    one_class = frame.assign(churned=1)
    report = validate_frame(one_class, SPEC, EXPECTATIONS)
    assert [(f["check"], f["column"]) for f in report["schema_failures"]] == [("target_classes", "churned")]
    with pytest.raises(
        DataValidationFailed, match=r"target_classes\[churned\]: every labeled row has the class 1"
    ):
        raise_if_failed(report, "data/churn/training")


def test_an_infinite_label_is_named(frame):
    spec = SPEC.model_copy(update={"task": "regression"})
    broken = frame.assign(churned=frame["churned"].astype(float))
    broken.loc[[3, 5], "churned"] = float("inf")
    failures = check_schema(broken, spec)
    assert [(f["check"], f["column"], f["detail"]) for f in failures] == [
        ("target_finite", "churned", "2 rows have an infinite label")
    ]


def test_a_production_batch_needs_neither_rows_nor_classes(frame):
    batch = frame.head(3).drop(columns=["churned"])
    assert validate_frame(batch, SPEC, EXPECTATIONS, require_target=False)["schema_failures"] == []


def test_a_suite_listing_numbers_for_a_text_column_is_refused(tmp_path, frame):
    spec = _suite(
        tmp_path,
        [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "region", "value_set": [1, "2"]},
            }
        ],
    )
    with pytest.raises(
        SpecError, match=r"custom.json: .*column 'region' lists \[1\].* write its values as strings"
    ):
        validate_frame(frame, spec, tmp_path)


def test_a_suite_listing_numbers_for_a_numeric_column_runs(tmp_path, frame):
    spec = _suite(
        tmp_path,
        [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "devices", "value_set": [-1]}}],
    )
    report = validate_frame(frame, spec, tmp_path)
    assert [f["column"] for f in report["expectation_failures"]] == ["devices"]


def _outcome(frame, path):
    outcome = run_expectations(frame, path)
    return outcome["statistics"], [(f["check"], f["column"], f["detail"]) for f in outcome["failures"]]


def test_repeated_runs_reuse_one_context_and_keep_no_results(tmp_path):
    """A batch is checked chunk by chunk: the second and later runs in a thread use the first run's
    context and suites, the context's results store stays empty, and memory does not grow by what
    a run allocates (one run with a context of its own left about 100 KiB behind)."""
    path = EXPECTATIONS / "churn.json"
    chunk = generate_batch(500, seed=3)
    run_expectations(chunk, path)
    definition = data_validation._batch_definition()
    context = definition.data_asset.datasource.data_context
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(8):
            run_expectations(chunk, path)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert data_validation._batch_definition() is definition
    assert definition.data_asset.datasource.data_context is context
    assert context.validation_results_store.list_keys() == []
    assert grown < 8 * 16 * 1024, f"{grown / 8 / 1024:.1f} KiB left behind per run"


def test_a_reused_context_judges_each_frame_on_its_own(tmp_path, frame):
    """GX caches metrics by a batch id that every frame shares: a run never sees another frame's
    values (a bad chunk after a good one fails, a good one after a bad one passes, with its own
    figures)."""
    path = EXPECTATIONS / "churn.json"
    good, bad = frame.head(1000), inject_fault(frame.head(1000), "out_of_range")
    alone = {name: _outcome(data, path) for name, data in (("good", good), ("bad", bad))}
    for name in ("good", "bad", "bad", "good", "bad"):
        assert _outcome(good if name == "good" else bad, path) == alone[name]
    assert alone["bad"][1]
    assert not alone["good"][1]


def test_each_thread_has_its_own_context(frame):
    """GX's objects are not made to be shared between threads: every thread builds its own."""
    path = EXPECTATIONS / "churn.json"
    run_expectations(frame.head(200), path)
    mine = data_validation._batch_definition()
    theirs = []
    worker = threading.Thread(
        target=lambda: (
            run_expectations(frame.head(200), path),
            theirs.append(data_validation._batch_definition()),
        )
    )
    worker.start()
    worker.join()
    assert theirs
    assert theirs[0] is not mine
    assert data_validation._batch_definition() is mine


def test_an_edited_suite_file_is_read_again(tmp_path, frame):
    """Suites are built once per content, not per path: a changed file is what the next run checks."""
    path = tmp_path / "custom.json"
    between = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age"}}
    path.write_text(
        json.dumps(
            {"name": "custom", "expectations": [{**between, "kwargs": {"column": "age", "max_value": 200}}]}
        )
    )
    assert run_expectations(frame, path)["failures"] == []
    path.write_text(
        json.dumps(
            {"name": "custom", "expectations": [{**between, "kwargs": {"column": "age", "max_value": 30}}]}
        )
    )
    assert [f["column"] for f in run_expectations(frame, path)["failures"]] == ["age"]
