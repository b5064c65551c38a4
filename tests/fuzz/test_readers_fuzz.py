"""Reading data files (io/readers.parse_frame): any bytes give a frame or a DataReadError naming the
file, and a frame written in the expected shape reads back exactly, whatever its text values."""

from __future__ import annotations

import io
import string

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from ctloop.errors import DataReadError
from ctloop.io.readers import parse_frame, to_parquet_bytes
from tests.fuzz.common import FUZZ, assert_names

NAME = "s3://bucket/batches/batch-0042.csv"
NAMES = (
    st.text(string.ascii_letters + string.digits + "_ .-", min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)
NA_TOKENS = st.lists(st.sampled_from(["", "NA", "null", "n/a", "-", "?"]), max_size=3, unique=True)
# Text a CSV can hold: any printable character, commas, quotes and line breaks included (NUL is
# not text, and a lone carriage return is a line end to every CSV reader).
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r"), max_size=12)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _read(data: bytes, fmt: str, text: list[str], numeric: list[str], na: list[str]) -> pd.DataFrame | None:
    """The frame, or None after checking that the error is typed and names the file."""
    try:
        return parse_frame(data, fmt, NAME, text, numeric_columns=numeric, na_values=na)
    except DataReadError as error:
        assert_names(error, NAME)
        return None


def _check_frame(frame: pd.DataFrame, text: list[str], numeric: list[str]) -> None:
    """What any frame the reader returns promises: unique columns, text as text, no infinity."""
    assert frame.columns.is_unique
    for column in [c for c in text if c in frame.columns]:
        assert all(isinstance(v, str) for v in frame[column].dropna())
    for column in [c for c in numeric if c in frame.columns]:
        if pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            assert not np.isinf(frame[column].to_numpy(dtype="float64", na_value=np.nan)).any()


@FUZZ
@given(
    data=st.binary(max_size=400),
    fmt=st.sampled_from(["csv", "parquet"]),
    text=st.lists(NAMES, max_size=3),
    numeric=st.lists(NAMES, max_size=3),
    na=NA_TOKENS,
)
def test_any_bytes_read_as_a_frame_or_a_named_error(data, fmt, text, numeric, na):
    frame = _read(data, fmt, text, numeric, na)
    if frame is not None:
        _check_frame(frame, text, numeric)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[str], list[str]]:
    """A CSV made from text, digit, inf and NA cells, in any column order, encoding and delimiter."""
    columns = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    rows = draw(st.integers(0, 6))
    cells = st.one_of(TEXT, FINITE.map(repr), st.sampled_from(["inf", "-Infinity", "NA", "null", "nan", ""]))
    frame = pd.DataFrame({c: draw(st.lists(cells, min_size=rows, max_size=rows)) for c in columns})
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    text = draw(st.lists(st.sampled_from(columns), unique=True))
    numeric = [c for c in columns if c not in text and draw(st.booleans())]
    try:
        data = frame.to_csv(index=False, sep=sep).encode(encoding)
    except UnicodeEncodeError:
        data = frame.to_csv(index=False, sep=sep).encode("utf-8")
    return data, text, numeric


@FUZZ
@given(file=csv_files(), na=NA_TOKENS)
def test_csv_in_any_encoding_delimiter_and_order_reads_or_names_the_file(file, na):
    data, text, numeric = file
    frame = _read(data, "csv", text, numeric, na)
    if frame is not None:
        _check_frame(frame, text, numeric)


@st.composite
def declared_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A frame as a pipeline declares it: text columns and finite numeric ones, in any order."""
    columns = draw(st.lists(NAMES, min_size=2, max_size=6, unique=True))
    rows = draw(st.integers(1, 8))
    text = [c for c in columns if draw(st.booleans())]
    numeric = [c for c in columns if c not in text]
    values = {c: draw(st.lists(TEXT if c in text else FINITE, min_size=rows, max_size=rows)) for c in columns}
    return pd.DataFrame(values, columns=columns), text, numeric


@FUZZ
@given(declared=declared_frames(), na=NA_TOKENS)
def test_a_declared_csv_reads_back_exactly_with_only_the_na_tokens_as_null(declared, na):
    written, text, numeric = declared
    frame = _read(written.to_csv(index=False).encode(), "csv", text, numeric, na)
    assert frame is not None
    assert list(frame.columns) == list(written.columns)
    for column in text:
        expected = written[column].where(~written[column].isin(na), None)
        assert frame[column].where(frame[column].notna(), None).tolist() == expected.tolist()
    for column in numeric:  # pandas' fast float parser may differ from the written value in the last bit
        np.testing.assert_allclose(frame[column].astype("float64"), written[column], rtol=1e-15, atol=0)


@FUZZ
@given(declared=declared_frames(), na=NA_TOKENS, codes=st.booleans())
def test_a_declared_parquet_file_reads_back_with_the_csv_rules(declared, na, codes):
    written, text, numeric = declared
    if codes and text:  # an integer-coded categorical reads as the text a CSV would hold
        written[text[0]] = list(range(len(written)))
    frame = _read(to_parquet_bytes(written), "parquet", text, numeric, na)
    assert frame is not None
    for column in text:
        as_text = written[column].astype(str)
        expected = as_text.where(~as_text.isin(na), None)
        assert frame[column].where(frame[column].notna(), None).tolist() == expected.tolist()
    for column in numeric:
        assert frame[column].tolist() == written[column].tolist()


@FUZZ
@given(
    names=st.lists(st.text(max_size=6), min_size=1, max_size=5),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_any_header_reads_or_names_the_file_and_column(names, fmt):
    """Repeated, empty or odd column names: a repeated one is named, never silently renamed."""
    if fmt == "csv":
        data = pd.DataFrame([range(len(names))], columns=names).to_csv(index=False).encode()
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.table([pa.array([i]) for i in range(len(names))], names=names), buffer)
        data = buffer.getvalue()
    try:
        frame = parse_frame(data, fmt, NAME, [])
    except DataReadError as error:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            assert_names(error, NAME, repr(repeated[0]))
        else:
            assert_names(error, NAME)
        return
    assert frame.columns.is_unique
