"""Which expectations hold chunk by chunk, and the ones that need the whole batch run on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ctloop.scoring.batch_checks import UNIQUE, chunk_local, duplicates, run_suite, split_suite
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


def _expectation(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": {"column": "tenure_months", **kwargs}}


@pytest.mark.parametrize(
    ("expectation", "local"),
    [
        (_expectation("expect_column_values_to_not_be_null"), True),
        (_expectation("expect_column_values_to_be_between", min_value=0, max_value=9), True),
        (_expectation("expect_column_values_to_be_between", min_value=0, max_value=9, mostly=1.0), True),
        (_expectation("expect_column_values_to_be_between", min_value=0, max_value=9, mostly=0.9), False),
        (_expectation("expect_column_values_to_be_unique"), False),
        (_expectation("expect_column_values_to_be_increasing"), False),
        (_expectation("expect_column_mean_to_be_between", min_value=0, max_value=9), False),
        (_expectation("expect_column_distinct_values_to_be_in_set", value_set=[1]), False),
        ({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}, False),
        ({"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a"]}}, True),
        ({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"]}}, False),
    ],
)
def test_only_row_by_row_expectations_are_checked_chunk_by_chunk(expectation, local):
    assert chunk_local(expectation) is local


def test_every_shipped_suite_splits_into_chunk_checks_and_the_ids_uniqueness(tmp_path):
    suites = sorted(load_settings().expectations_dir.glob("*.json"))
    assert suites
    for path in suites:
        directory = tmp_path / path.stem
        directory.mkdir()
        config = json.loads(path.read_text())
        (unique,) = [e["kwargs"]["column"] for e in config["expectations"] if e["type"] == UNIQUE]

        split = split_suite(path, directory)

        assert (split.unique, split.whole) == ([unique], {})
        local = json.loads(split.chunk_suite.read_text())["expectations"]
        assert len(local) + 1 == len(config["expectations"])


def test_uniqueness_over_pieces_counts_every_repeated_row_and_ignores_nulls():
    pieces = [pd.Series(["a", "b", None]), pd.Series(["c", None]), pd.Series(["a", "d", "a"])]

    (found,) = duplicates("id", lambda: iter(pieces))

    assert (found["check"], found["column"]) == (UNIQUE, "id")
    assert found["detail"] == "3 unexpected values (50.00%), e.g. ['a', 'a', 'a']"
    assert duplicates("id", lambda: iter(pieces[:2])) == []
    assert duplicates("id", lambda: iter([])) == []


def test_a_hash_collision_is_not_a_duplicate(monkeypatch):
    import numpy as np

    monkeypatch.setattr(
        pd.util, "hash_pandas_object", lambda values, index=False: pd.Series(np.zeros(len(values), np.uint64))
    )

    assert duplicates("id", lambda: iter([pd.Series(["a", "b"]), pd.Series(["c"])])) == []


def test_whole_batch_expectations_are_decided_on_the_whole_column(tmp_path):
    spec = PipelineSpec.model_validate(example_spec("checks", "data"))
    suite = tmp_path / "suite.json"
    suite.write_text(
        json.dumps(
            {
                "name": "s",
                "expectations": [
                    _expectation("expect_column_mean_to_be_between", min_value=4, max_value=6),
                    _expectation("expect_column_values_to_be_between", min_value=0, max_value=5, mostly=0.5),
                    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10}},
                ],
            }
        )
    )
    split = split_suite(suite, tmp_path)
    batch = pd.DataFrame({"tenure_months": [0.0] * 5 + [10.0] * 5})  # mean 5; half within 0-5
    chunks = [batch.head(5), batch.tail(5)]  # means 0 and 10; none or all within 0-5; 5 rows each

    assert split.chunk_suite.exists()
    groups = list(split.whole.values())
    assert [run_suite(batch, spec, g) for g in groups[:1]] == [[]]
    assert run_suite(pd.DataFrame(index=pd.RangeIndex(10)), spec, groups[1]) == []
    assert all(run_suite(c, spec, groups[0]) for c in chunks)  # each chunk alone would fail


def test_text_read_as_arrow_is_hashed_on_its_bytes_and_checked_like_pandas():
    """Equal text gets equal hashes whatever piece, slice or length it is in (long values too);
    the verdict is the pandas path's."""
    import numpy as np
    import pyarrow as pa

    from ctloop.scoring import value_hashes

    long = "x" * (value_hashes.WIDE + 5)
    words = ["a", "a\0", "", "é", "ab" * 9, long, long + "y", None]
    pieces = [pa.array(words[:5]), pa.chunked_array([pa.array(words[3:])]), pa.array(["ab" * 9, None, "a"])]
    hashes = np.concatenate([value_hashes.value_hashes(p) for p in pieces])
    as_python = [w for p in pieces for w in p.to_pylist() if w is not None]
    assert len(hashes) == len(as_python)
    first_of = {w: hashes[as_python.index(w)] for w in as_python}
    assert all(hashes[i] == first_of[w] for i, w in enumerate(as_python))
    assert len(set(first_of.values())) == len(first_of)  # these distinct values do not collide

    found = duplicates("id", lambda: iter(pieces))
    expected = duplicates("id", lambda: iter([pd.Series(p.to_pylist(), dtype=object) for p in pieces]))
    assert found == expected
    assert found[0]["detail"].startswith("7 unexpected values")


def test_an_arrow_hash_collision_is_not_a_duplicate(monkeypatch):
    import numpy as np
    import pyarrow as pa

    from ctloop.scoring import value_hashes

    monkeypatch.setattr(value_hashes, "text_hashes", lambda values: np.zeros(len(values), np.uint64))

    assert duplicates("id", lambda: iter([pa.array(["a", "b"]), pa.array(["c", None])])) == []
    assert duplicates("id", lambda: iter([pa.array(["a", "b"]), pa.array(["b"])]))[0]["detail"] == (
        "2 unexpected values (66.67%), e.g. ['b', 'b']"
    )
