"""Data validation: the spec's schema checks, then the pipeline's Great Expectations suite.

The suite is data (include/expectations/<name>.json, GX 1.x's own suite format) and runs in an
ephemeral GX context: nothing is written to a GX project, results come back as JSON that ctloop
stores and logs itself.

Scoring checks a batch chunk by chunk, so one process runs the same suite many times. Building a
context, its suites and validation definitions costs far more than checking a chunk of a few
thousand rows, and a validation definition's ``run`` keeps every result in the context's
in-memory results store. So each thread builds one context with one pandas batch definition
(:func:`_batch_definition`), a suite file's expectations are built into suites once per content
(:func:`_prepared`, :func:`_gx_suite`), and each run validates through GX's ``Validator``
directly, the step of ``ValidationDefinition.run`` that computes the results, without storing
them. Every run gets a fresh execution engine, so nothing one frame computed (GX caches metrics
by a batch id that is the same for every frame) can stand in for another's, and no frame is held
after its run.

A column whose expectations are all of the kinds :mod:`ctloop.validation.row_checks` computes
(nulls, bounds, value sets, patterns) is checked there instead, with GX's conditions and figures,
without GX's per-expectation overhead; GX is imported only for a suite that needs it.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from ctloop.errors import DataValidationFailed, SpecError, ValidationCheckError
from ctloop.rendering import render
from ctloop.validation import row_checks
from ctloop.validation.schema import Failure, check_schema, failure

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from great_expectations import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    from ctloop.spec.models import PipelineSpec

# BASIC keeps a short sample of unexpected values; SUMMARY and COMPLETE build per-value counts
# that cost several times the check itself on large frames.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 5}


class ExpectationOutcome(TypedDict):
    """What one suite run found: its failures, GX's statistics and GX's results as JSON."""

    failures: list[Failure]
    statistics: dict[str, float]
    gx_result: dict[str, Any]


def suite_path(spec: PipelineSpec, expectations_dir: Path) -> Path:
    return expectations_dir / f"{spec.expectation_suite}.json"


def load_suite_config(path: Path) -> dict[str, Any]:
    """The suite file's JSON; a missing or malformed file is an error of the spec, not of the data."""
    return _parse_suite(path, _read_suite(path))


def _read_suite(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: expectation suite file not found") from exc


def _parse_suite(path: Path, text: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("expectations"), list):
        raise SpecError(f"{path}: an expectation suite is an object with a list of 'expectations'")
    return config


def _build_suite(name: str, expectations: list[dict[str, Any]], path: Path) -> ExpectationSuite:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    # GX logs and drops an expectation it cannot build; a silently shorter suite would pass bad data.
    if len(suite.expectations) != len(expectations):
        built = {e.expectation_type for e in suite.expectations}
        dropped = [e.get("type") for e in expectations if e.get("type") not in built]
        raise SpecError(f"{path}: expectations could not be built: {dropped or 'see log'}")
    return suite


def _by_column(expectations: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """Column expectations grouped by their column; table-level ones under None."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for expectation in expectations:
        groups.setdefault((expectation.get("kwargs") or {}).get("column"), []).append(expectation)
    return groups


def _check_text_values(expectations: list[dict[str, Any]], text_columns: frozenset[str], path: Path) -> None:
    """Ids and categoricals are read as text, so "1" never equals a suite's 1: a suite that lists a
    number for one of them would fail every row; refuse it, naming the column."""
    for expectation in expectations:
        kwargs = expectation.get("kwargs") or {}
        column, values = kwargs.get("column"), kwargs.get("value_set")
        if column in text_columns and isinstance(values, list):
            numbers = [v for v in values if not isinstance(v, str)]
            if numbers:
                raise SpecError(
                    f"{path}: {expectation.get('type')} on column {column!r} lists {numbers[:3]!r}, but"
                    f" {column!r} is read as text: write its values as strings, e.g. {str(numbers[0])!r}"
                )


class _Group(NamedTuple):
    """The expectations of one column (``None``: the table-level ones), in the file's order; the
    suite name GX gets for them if GX has to run them."""

    column: str | None
    name: str
    expectations: list[dict[str, Any]]


class _Prepared(NamedTuple):
    """A suite file's expectations checked for :func:`run_expectations`: its name and its groups."""

    name: str
    groups: list[_Group]


@functools.lru_cache(maxsize=32)
def _prepared(path: Path, text: str, skip_columns: frozenset[str], text_columns: frozenset[str]) -> _Prepared:
    """Checked once per suite content (``text``, the file as read) and arguments. A suite GX must
    run is built here once, so a malformed expectation is refused before any data is read; one
    that :mod:`ctloop.validation.row_checks` handles whole never needs GX (nor its import)."""
    config = _parse_suite(path, text)
    name = config.get("name") or path.stem
    _check_text_values(config["expectations"], text_columns, path)
    if not all(row_checks.handles(e) for e in config["expectations"]):
        _build_suite(name, config["expectations"], path)
    groups = [(c, e) for c, e in _by_column(config["expectations"]).items() if c not in skip_columns]
    return _Prepared(name, [_Group(c, f"{name}.{index}", e) for index, (c, e) in enumerate(groups)])


@functools.lru_cache(maxsize=256)
def _gx_suite(name: str, expectations: str, path: Path) -> ExpectationSuite:
    """A group's GX suite (``expectations`` as JSON), built the first time GX runs it; GX only
    reads a suite while it validates, so it can be shared."""
    return _build_suite(name, json.loads(expectations), path)


_local = threading.local()


def _batch_definition() -> BatchDefinition[Any]:
    """This thread's pandas batch definition for a whole frame, in its own ephemeral context (GX's
    objects are not made to be shared between threads)."""
    definition: BatchDefinition[Any] | None = getattr(_local, "definition", None)
    if definition is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        definition = (
            context.data_sources.add_pandas("ctloop")
            .add_dataframe_asset("frame")
            .add_batch_definition_whole_dataframe("whole")
        )
        _local.definition = definition
    return definition


def _validate(
    definition: BatchDefinition[Any], suite: ExpectationSuite, data: pd.DataFrame
) -> ExpectationSuiteValidationResult:
    """``suite`` on ``data`` with a fresh execution engine, which is dropped afterwards."""
    from great_expectations.validator.v1_validator import Validator

    datasource = definition.data_asset.datasource
    datasource._execution_engine = None  # noqa: SLF001 -- the only way GX offers to start a new engine
    try:
        validator = Validator(definition, RESULT_FORMAT, batch_parameters={"dataframe": data})
        return validator.validate_expectation_suite(suite)
    finally:
        datasource._execution_engine = None  # noqa: SLF001


def run_expectations(
    frame: pd.DataFrame,
    path: Path,
    skip_columns: frozenset[str] = frozenset(),
    text_columns: frozenset[str] = frozenset(),
    table: pa.Table | None = None,
) -> ExpectationOutcome:
    """Run the suite at ``path`` on ``frame``; returns the failures and GX's results as JSON.

    Each column's expectations run on a one-column frame: GX copies the whole batch frame for
    every column condition it evaluates, which on wide frames costs several times the checks.
    Table-level expectations still see the whole frame. Expectations on ``skip_columns`` are not
    run (a production batch has no label yet). A value set of one of ``text_columns`` must list text.
    ``table``: the frame's values as Arrow where the caller has them (a CSV chunk's), whose text
    columns the row checks read nulls and set membership from.
    """
    prepared = _prepared(path, _read_suite(path), skip_columns, text_columns)
    failures: list[Failure] = []
    crashed: list[str] = []
    results: list[dict[str, Any]] = []
    statistics: dict[str, float] = {
        "evaluated_expectations": 0,
        "successful_expectations": 0,
        "unsuccessful_expectations": 0,
    }
    for group in prepared.groups:
        column = group.column
        if column is not None and column not in frame.columns:
            raise ValidationCheckError(
                f"{path}: expectations refer to column {column!r}, which the data lacks"
            )
        if column is not None and all(
            row_checks.handles(e) and row_checks.applies_to(e, frame[column]) for e in group.expectations
        ):
            text = table.column(column) if table is not None and column in table.column_names else None
            text = text if column in text_columns else None
            missing = row_checks.missing_values(frame[column], text)
            for expectation in group.expectations:
                outcome = row_checks.check(expectation, frame[column], missing, text)
                _count(statistics, outcome.success)
                results.append(_row_check_json(expectation, outcome))
                if not outcome.success:
                    failures.append(failure(expectation["type"], column, _describe(outcome.as_gx_result())))
            continue
        suite = _gx_suite(group.name, json.dumps(group.expectations), path)
        result = _validate(_batch_definition(), suite, frame if column is None else frame[[column]])
        for key in statistics:
            statistics[key] += result.statistics[key]
        # GX 1.24 leaves ExpectationSuiteValidationResult.to_json_dict unannotated
        results.extend(result.to_json_dict()["results"])  # type: ignore[no-untyped-call]
        for item in result.results:
            if item.expectation_config is None:  # typed optional; GX sets it on every result it returns
                raise ValidationCheckError(f"{path}: GX returned a result without its expectation")
            check = item.expectation_config.type
            crash = _crash_message(item.exception_info)
            if crash:
                crashed.append(f"{check}({column}): {crash}")
            elif not item.success:
                failures.append(failure(check, column, _describe(item.result)))
    if crashed:
        raise ValidationCheckError(f"{path}: expectations crashed: {'; '.join(crashed)}")
    evaluated = statistics["evaluated_expectations"]
    statistics["success_percent"] = (
        100.0 * statistics["successful_expectations"] / evaluated if evaluated else 100.0
    )
    return {
        "failures": failures,
        "statistics": statistics,
        "gx_result": {"suite": prepared.name, "results": results},
    }


def _count(statistics: dict[str, float], success: bool) -> None:
    statistics["evaluated_expectations"] += 1
    statistics["successful_expectations" if success else "unsuccessful_expectations"] += 1


def _row_check_json(expectation: dict[str, Any], outcome: row_checks.RowCheckResult) -> dict[str, Any]:
    """A row check's result in GX's JSON shape, marked as computed by ctloop."""
    result = outcome.as_gx_result()
    result["partial_unexpected_list"] = [_json_value(v) for v in outcome.partial_unexpected_list]
    return {
        "success": outcome.success,
        "expectation_config": {"type": expectation["type"], "kwargs": expectation.get("kwargs") or {}},
        "result": result,
        "meta": {"computed_by": "ctloop.validation.row_checks"},
        "exception_info": {"raised_exception": False, "exception_message": None, "exception_traceback": None},
    }


def _json_value(value: Any) -> Any:
    """A value as GX's JSON result writes it: NaN as null, anything but a JSON scalar as text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _crash_message(info: dict[str, Any] | None) -> str | None:
    """GX reports a crash either flat or keyed by metric; either way, the first message."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in entries if e.get("raised_exception")]
    return messages[0] if messages else None


def _describe(result: dict[str, Any]) -> str:
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list") or []
        percent = result.get("unexpected_percent") or 0.0
        return f"{result['unexpected_count']} unexpected values ({percent:.2f}%), e.g. {sample[:3]}"
    observed: Any = result.get("observed_value")
    return f"observed {observed.item() if hasattr(observed, 'item') else observed!r}"  # numpy's as Python's


def validate_frame(
    frame: pd.DataFrame, spec: PipelineSpec, expectations_dir: Path, *, require_target: bool = True
) -> dict[str, Any]:
    """Schema first, then the suite (skipped when the schema fails, as GX would crash on it).

    Without ``require_target`` (a production batch) the label may be absent, and then the
    suite's expectations on it are not run.
    """
    path = suite_path(spec, expectations_dir)
    schema_failures = check_schema(frame, spec, require_target=require_target)
    report: dict[str, Any] = {
        "suite": spec.expectation_suite,
        "suite_path": str(path),
        "rows": len(frame),
        "schema_failures": schema_failures,
        "expectation_failures": [],
        "statistics": {},
        "gx_result": None,
    }
    if not schema_failures:
        unlabeled = frozenset() if spec.columns.target in frame.columns else frozenset({spec.columns.target})
        text = frozenset([*spec.columns.id, *spec.columns.categorical])
        outcome = run_expectations(frame, path, skip_columns=unlabeled, text_columns=text)
        report["expectation_failures"] = outcome["failures"]
        report["statistics"] = outcome["statistics"]
        report["gx_result"] = outcome["gx_result"]
    report["success"] = not schema_failures and not report["expectation_failures"]
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The small part of a report that travels through XCom."""
    return {k: v for k, v in report.items() if k != "gx_result"}


def raise_if_failed(report: dict[str, Any], data_name: str) -> None:
    """Raise :class:`DataValidationFailed` naming every failed check and column."""
    failures = report["schema_failures"] + report["expectation_failures"]
    if failures:
        listed = "; ".join(f"{f['check']}[{f['column'] or 'table'}]: {f['detail']}" for f in failures)
        raise DataValidationFailed(f"{data_name} failed validation ({len(failures)} checks): {listed}")


def render_html(report: dict[str, Any], title: str) -> str:
    """A readable one-page summary; the template escapes every value, since data values are untrusted."""
    return render("validation.html", report=report, title=title)
