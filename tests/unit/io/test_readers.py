from __future__ import annotations

import pytest

from ctloop.devtools.example_data import write_batches
from ctloop.errors import DataReadError
from ctloop.io.readers import list_source, parse_frame, read_source
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


def test_batch_whose_column_kind_differs_is_named(tmp_path):
    write_batches(tmp_path, range(1), rows=20)
    write_batches(tmp_path, range(1, 2), rows=20, fault="wrong_type")
    with pytest.raises(
        DataReadError, match=r"batch-0001\.csv: column 'monthly_charges' is object here but float64"
    ):
        read_source(_spec(str(tmp_path)), load_settings())
