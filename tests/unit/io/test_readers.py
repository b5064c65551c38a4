from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.errors import DataReadError
from ctloop.io.readers import list_source, parse_frame, read_source, to_parquet_bytes
from ctloop.settings import load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


def _spec(uri: str, fmt: str = "csv") -> PipelineSpec:
    spec = example_spec("t", uri)
    spec["data"]["format"] = fmt
    return PipelineSpec.model_validate(spec)


def test_reads_a_folder_of_batches_in_order(tmp_path):
    write_batches(tmp_path, range(3), rows=50)
    frame, uris = read_source(_spec(str(tmp_path)), load_settings())
    assert len(frame) == 150
    assert [u.rsplit("/", 1)[1] for u in uris] == ["batch-0000.csv", "batch-0001.csv", "batch-0002.csv"]
    assert frame["customer_id"].dtype == object  # ids keep their text form


def test_reads_a_single_parquet_file(tmp_path):
    (path,) = write_batches(tmp_path, range(1), rows=20, fmt="parquet")
    frame, uris = read_source(_spec(str(path), "parquet"), load_settings())
    assert len(frame) == 20
    assert uris == [str(path)]


def test_empty_file_is_named(tmp_path):
    write_batches(tmp_path, range(1), rows=20)
    write_batches(tmp_path, range(1, 2), rows=20, fault="empty")
    with pytest.raises(DataReadError, match=r"batch-0001\.csv: file is empty"):
        read_source(_spec(str(tmp_path)), load_settings())


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "batch-0000.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataReadError, match=r"batch-0000\.parquet: cannot read as parquet"):
        read_source(_spec(str(tmp_path), "parquet"), load_settings())


def test_undecodable_csv_is_named():
    with pytest.raises(DataReadError, match="x.csv: cannot read as csv"):
        parse_frame(b"a,b\n\xff\xfe\x00,1\n", "csv", "x.csv", [])


def test_batches_with_different_columns_are_named(tmp_path):
    write_batches(tmp_path, range(1), rows=20)
    write_batches(tmp_path, range(1, 2), rows=20, fault="missing_column")
    with pytest.raises(
        DataReadError, match=r"batch-0001\.csv: columns differ .* missing \['monthly_charges'\]"
    ):
        read_source(_spec(str(tmp_path)), load_settings())


def test_no_files_is_an_error(tmp_path):
    with pytest.raises(DataReadError, match="no csv files found"):
        list_source(str(tmp_path), "csv", load_settings())


def test_training_files_are_found_whatever_the_case_of_their_suffix(tmp_path):
    (first,) = write_batches(tmp_path, range(1), rows=20)
    (second,) = write_batches(tmp_path, range(1, 2), rows=20)
    second.rename(second.with_suffix(".CSV"))
    (tmp_path / "notes.txt").write_text("not data")
    _, keys = list_source(str(tmp_path), "csv", load_settings())
    assert keys == [first.name, "batch-0001.CSV"]
    frame, sources = read_source(_spec(str(tmp_path)), load_settings())
    assert len(frame) == 40
    assert [Path(uri).name for uri in sources] == [first.name, "batch-0001.CSV"]


def test_batch_whose_column_kind_differs_is_named(tmp_path):
    write_batches(tmp_path, range(1), rows=20)
    write_batches(tmp_path, range(1, 2), rows=20, fault="wrong_type")
    with pytest.raises(
        DataReadError, match=r"batch-0001\.csv: column 'monthly_charges' is object here but float64"
    ):
        read_source(_spec(str(tmp_path)), load_settings())


def test_na_strings_in_a_categorical_stay_values_and_only_an_empty_cell_is_null():
    data = b"id,plan,x\n1,NA,1.5\n2,n/a,\n3,null,2.0\n4,,3.0\n"
    frame = parse_frame(data, "csv", "x.csv", ["id", "plan"], numeric_columns=["x"])
    assert frame["plan"].tolist()[:3] == ["NA", "n/a", "null"]
    assert frame["plan"].isna().tolist() == [False, False, False, True]
    assert frame["x"].isna().tolist() == [False, True, False, False]
    assert frame["id"].tolist() == ["1", "2", "3", "4"]


def test_listed_na_tokens_are_null_and_nothing_else():
    data = b"plan,x\nNA,1\nnull,NA\n,2\n"
    frame = parse_frame(data, "csv", "x.csv", ["plan"], numeric_columns=["x"], na_values=["NA"])
    assert frame["plan"].tolist()[1:] == ["null", ""]
    assert frame["plan"].isna().tolist() == [True, False, False]
    assert frame["x"].isna().tolist() == [False, True, False]


def test_a_nan_word_in_a_numeric_column_is_not_read_as_missing():
    """ "nan" is not a listed NA token, so the column stays text and its schema check names the value."""
    frame = parse_frame(b"x\n1.5\nnan\n", "csv", "x.csv", [], numeric_columns=["x"])
    assert frame["x"].tolist() == ["1.5", "nan"]


def test_integer_codes_of_a_categorical_are_read_as_text():
    frame = parse_frame(b"plan,x\n1,1.0\n02,2.0\n", "csv", "x.csv", ["plan"])
    assert frame["plan"].tolist() == ["1", "02"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_repeated_column_names_are_named(fmt):
    if fmt == "csv":
        data = b"a,b,a\n1,2,3\n"
    else:
        buffer = io.BytesIO()
        pq.write_table(pa.table([pa.array([1]), pa.array([2]), pa.array([3])], names=["a", "b", "a"]), buffer)
        data = buffer.getvalue()
    with pytest.raises(DataReadError, match=rf"x\.{fmt}: column 'a' appears more than once"):
        parse_frame(data, fmt, f"x.{fmt}", [])


@pytest.mark.parametrize("value", ["inf", "-Infinity", "INF"])
def test_infinite_values_in_a_numeric_column_are_named(value):
    data = f"a,x\nq,1\nr,{value}\n".encode()
    with pytest.raises(
        DataReadError, match=r"x\.csv: numeric column 'x' has 1 infinite values \(first in data row 2\)"
    ):
        parse_frame(data, "csv", "x.csv", ["a"], numeric_columns=["x"])


def test_infinite_values_in_a_parquet_file_are_named():
    data = to_parquet_bytes(pd.DataFrame({"x": [1.0, float("-inf")]}))
    with pytest.raises(DataReadError, match=r"x\.pq: numeric column 'x' has 1 infinite values"):
        parse_frame(data, "parquet", "x.pq", [], numeric_columns=["x"])


def test_parquet_text_columns_follow_the_csv_rules():
    frame = pd.DataFrame(
        {
            "id": pd.array([7, None], dtype="Int64"),
            "plan": ["NA", ""],
            "tier": pd.Categorical(["gold", None]),
        }
    )
    read = parse_frame(to_parquet_bytes(frame), "parquet", "x.pq", ["id", "plan", "tier"])
    assert read["id"].tolist()[0] == "7"
    assert read["id"].isna().tolist() == [False, True]
    assert read["plan"].tolist()[0] == "NA"
    assert read["plan"].isna().tolist() == [False, True]
    assert read["tier"].tolist()[0] == "gold"
    assert read["tier"].dtype == object


def test_a_parquet_categorical_stored_as_floats_is_refused():
    data = to_parquet_bytes(pd.DataFrame({"plan": [1.0, 2.0]}))
    with pytest.raises(DataReadError, match=r"x\.pq: column 'plan' is read as text .* stored as float64"):
        parse_frame(data, "parquet", "x.pq", ["plan"])


def test_the_spec_says_how_files_are_read(tmp_path):
    write_batches(tmp_path, range(1), rows=20)
    path = tmp_path / "batch-0000.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "contract"] = "NA"
    frame.loc[1, "contract"] = "missing"
    frame.to_csv(path, index=False)
    spec = example_spec("t", str(tmp_path))
    spec["columns"]["na_values"] = ["", "missing"]
    read, _ = read_source(PipelineSpec.model_validate(spec), load_settings())
    assert read.loc[0, "contract"] == "NA"
    assert pd.isna(read.loc[1, "contract"])
