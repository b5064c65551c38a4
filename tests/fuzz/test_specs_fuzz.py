"""Loading specs (spec/loading.load_spec): any file gives a valid spec or a SpecError naming the file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ctloop.errors import SpecError
from ctloop.spec.loading import load_spec
from ctloop.spec.models import PipelineSpec
from tests.fuzz.common import FUZZ, assert_names
from tests.helpers import example_spec

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["", "~", "NA"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _load(data: bytes) -> PipelineSpec | None:
    """The spec, or None after checking that the error is a SpecError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(data)
        try:
            return load_spec(path)
        except SpecError as error:
            assert_names(error, str(path))
            return None


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_load_or_name_the_file(data):
    assert _load(data) is None  # no byte string this short is a whole pipeline


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_loads_or_names_the_file(text):
    assert _load(text.encode("utf-8", "surrogatepass")) is None


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every mapping key's path in the example spec, so a mutation can land anywhere in it."""
    if not isinstance(value, dict):
        return []
    return [p for k, v in value.items() for p in [(*prefix, k), *_paths(v, (*prefix, k))]]


PATHS = _paths(example_spec("fuzzed", "data"))


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_a_spec_with_fields_replaced_by_anything_loads_or_names_the_file(changes):
    spec = example_spec("fuzzed", "data")
    for path, value in changes:
        target = spec
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = value
    loaded = _load(yaml.safe_dump(spec, allow_unicode=True).encode())
    if loaded is not None:  # what loads is what was written: no field silently changed or dropped
        assert loaded.name == "fuzzed"
        assert PipelineSpec.model_validate(loaded.model_dump()) == loaded
