"""Checking a production batch chunk by chunk with the spec's schema and the champion's suite, with
one verdict per batch.

Most checks hold row by row, so a batch passes them when every chunk does: a row-level ("map")
expectation without ``mostly``, and the table's columns (the same in every chunk). These run on
each chunk, and a failure names the chunk's rows (``rows 250000-499999: ...``). The others need
the whole batch and would pass or fail by chance on a chunk: uniqueness, order (increasing), a
``mostly`` share, and every aggregate (a mean, a row count, distinct values). They run once on
the whole batch, reading only the columns each names (:func:`split_suite`), so a task holds one
column of the batch at a time, never the batch. A column's uniqueness, the one such check the
shipped suites hold, costs less still: 8 bytes a row (:func:`duplicates`). The schema's "no value
in any row" counts over the whole batch too (:class:`ChunkVerdict` keeps which columns had a value).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

from ctloop.scoring.value_hashes import value_hashes
from ctloop.validation import row_checks
from ctloop.validation.data_validation import load_suite_config, run_expectations
from ctloop.validation.schema import Failure, check_schema, failure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from numpy.typing import NDArray

    from ctloop.io.chunks import Chunk
    from ctloop.spec.models import PipelineSpec

ACROSS_ROWS = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_multicolumn_values_to_be_unique",
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_decreasing",
    }
)
"""Row-level in GX's terms, but a row's verdict depends on the batch's other rows."""

SAME_IN_EVERY_CHUNK = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
"""Table-level, but about the columns, which every chunk of a file shares."""


def chunk_local(expectation: dict[str, Any]) -> bool:
    """Whether ``expectation`` passes on a batch exactly when it passes on each of its chunks."""
    kind = str(expectation.get("type"))
    if kind in SAME_IN_EVERY_CHUNK or row_checks.handles(expectation):  # the latter: without GX's import
        return True
    mostly = (expectation.get("kwargs") or {}).get("mostly")
    if kind in ACROSS_ROWS or mostly not in (None, 1, 1.0):  # a share of the batch, not of a chunk
        return False
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        implementation = get_expectation_impl(kind)
    except Exception:  # noqa: BLE001 - unknown to GX: building the suite names it
        return False
    return issubclass(
        implementation, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
    )


def named_columns(expectation: dict[str, Any]) -> tuple[str, ...]:
    """The columns an expectation reads (none for a table-level one such as the row count)."""
    kwargs = expectation.get("kwargs") or {}
    names = [
        kwargs.get("column"),
        kwargs.get("column_A"),
        kwargs.get("column_B"),
        *kwargs.get("column_list", []),
    ]
    return tuple(dict.fromkeys(str(n) for n in names if n))


UNIQUE = "expect_column_values_to_be_unique"


class SplitSuite(NamedTuple):
    """The suite at ``path`` as the chunk-local suite file, the columns whose values must be unique
    (:func:`duplicates`), and the other whole-batch groups (by the columns they read)."""

    chunk_suite: Path
    unique: list[str]
    whole: dict[tuple[str, ...], Path]


def _plain_unique(expectation: dict[str, Any]) -> bool:
    """Uniqueness of one column with no other option (``mostly``, a row condition) than its column."""
    return expectation.get("type") == UNIQUE and set(expectation.get("kwargs") or {}) == {"column"}


def split_suite(path: Path, directory: Path) -> SplitSuite:
    """Write the chunk-local expectations, and each group of whole-batch ones sharing their columns,
    as suite files in ``directory``."""
    config = load_suite_config(path)
    local = [e for e in config["expectations"] if chunk_local(e)]
    unique = [e["kwargs"]["column"] for e in config["expectations"] if _plain_unique(e)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for expectation in config["expectations"]:
        if not chunk_local(expectation) and not _plain_unique(expectation):
            groups.setdefault(named_columns(expectation), []).append(expectation)
    name = config.get("name") or path.stem

    def write(file_name: str, expectations: list[dict[str, Any]]) -> Path:
        target = directory / file_name
        target.write_text(json.dumps({"name": name, "expectations": expectations}), encoding="utf-8")
        return target

    return SplitSuite(
        write("chunk.json", local),
        list(dict.fromkeys(unique)),
        {columns: write(f"whole-{i}.json", group) for i, (columns, group) in enumerate(groups.items())},
    )


class ChunkVerdict(NamedTuple):
    """What one chunk's checks found; ``with_values``: the input columns with a value in it."""

    failures: list[Failure]
    with_values: set[str]


def inputs(spec: PipelineSpec) -> list[str]:
    columns = spec.columns
    return [*columns.id, *([columns.timestamp] if columns.timestamp else []), *columns.features]


def check_chunk(chunk: Chunk, spec: PipelineSpec, suite: Path) -> ChunkVerdict:
    """The schema and the chunk-local suite on one chunk; failures name its rows. Whether a column
    has no value at all is decided per batch (:func:`never_valued`)."""
    frame = chunk.frame
    failures = check_schema(frame, spec, require_target=False, valued_per_column=False)
    if not failures:
        failures = run_suite(frame, spec, suite, chunk.table)
    with_values = {c for c in inputs(spec) if c in frame.columns and _has_value(frame[c])}
    return ChunkVerdict([{**f, "detail": f"{f['detail']} (in {chunk.rows})"} for f in failures], with_values)


def _has_value(values: pd.Series) -> bool:
    """Whether any value is not null; its first rows decide it for most columns, without a pass
    over every row (pandas' null test is slow on text)."""
    return bool(values.iloc[:64].notna().any() or values.notna().any())


def never_valued(spec: PipelineSpec, with_values: set[str], rows: int) -> list[Failure]:
    """The schema's ``not_all_null`` over the whole batch, from what each chunk saw."""
    return [
        failure("not_all_null", c, f"column {c!r} has no value in any of its {rows} rows")
        for c in inputs(spec)
        if c not in with_values
    ]


def run_suite(
    frame: pd.DataFrame, spec: PipelineSpec, suite: Path, table: pa.Table | None = None
) -> list[Failure]:
    """``suite``'s failures on ``frame`` (``table``: its values as Arrow, if the caller has them);
    without a label column its expectations on the label are not run."""
    unlabeled = frozenset() if spec.columns.target in frame.columns else frozenset({spec.columns.target})
    text = frozenset([*spec.columns.id, *spec.columns.categorical])
    return run_expectations(frame, suite, skip_columns=unlabeled, text_columns=text, table=table)["failures"]


def duplicates(
    column: str, read: Callable[[], Iterator[pd.Series | pa.Array | pa.ChunkedArray]]
) -> list[Failure]:
    """GX's ``expect_column_values_to_be_unique`` over a whole column read in pieces by ``read()``
    (called twice; pieces as pandas or, faster for text, as Arrow): a 64-bit hash of each value
    first (:mod:`ctloop.scoring.value_hashes`), 8 bytes a row; then the values whose hash repeats,
    compared themselves, so a hash collision never fails a batch. Nulls are not values."""
    import numpy as np
    import pandas as pd

    pieces = [value_hashes(values) for values in read()]
    hashes = np.concatenate(pieces or [np.empty(0, dtype=np.uint64)])
    del pieces  # at most 16 bytes a row while both exist, 8 after
    counted = len(hashes)
    hashes.sort()  # in place: no copy, unlike np.unique's counts
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])  # a 1-byte mask a row, then few values
    del hashes
    if not len(repeated):
        return []
    candidates = pd.concat([_values_hashed_as(values, repeated) for values in read()], ignore_index=True)
    duplicated = candidates[candidates.duplicated(keep=False)]
    if duplicated.empty:
        return []
    share = 100.0 * len(duplicated) / counted
    sample = duplicated.head(3).tolist()
    return [failure(UNIQUE, column, f"{len(duplicated)} unexpected values ({share:.2f}%), e.g. {sample}")]


def _values_hashed_as(
    values: pd.Series | pa.Array | pa.ChunkedArray, wanted: NDArray[np.uint64]
) -> pd.Series:
    """The non-null values of a piece whose hash is one of ``wanted``, as Python values."""
    import numpy as np
    import pandas as pd

    chosen = np.isin(value_hashes(values), wanted)
    if isinstance(values, pd.Series):
        return values.dropna()[chosen]
    return pd.Series(values.drop_null().filter(chosen).to_pylist(), dtype=object)
