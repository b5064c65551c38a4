"""Reading the prediction log by column, row group and sampled position: the same values and
types as reading the partitions whole, from files holding several row groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.scoring.prediction_log import (
    PREDICTIONS,
    file_columns,
    file_rows,
    iter_row_groups,
    local_partitions,
    partition_key,
    read_files,
    read_partitions,
    read_positions,
)
from ctloop.settings import load_settings


def _part(rows: int, seed: int) -> pd.DataFrame:
    """Ids, a float with NaN, an int column null only in some rows, text with nulls, a timestamp."""
    rng = np.random.default_rng(seed)
    codes = pd.array(rng.integers(0, 5, rows), dtype="Int64")
    codes[rng.random(rows) < 0.05] = pd.NA
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(rows)],
            "amount": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)),
            "code": codes,
            "plan": rng.choice(np.array(["a", "b", None], dtype=object), rows),
            "scored_at": pd.Timestamp("2026-03-01", tz="UTC"),
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for seed, rows in enumerate((700, 0, 1300)):
        path = tmp_path / f"p{seed}.parquet"
        _part(rows, seed).to_parquet(path, index=False, row_group_size=256)
        paths.append(path)
    return paths


def test_row_groups_read_back_the_files_whole(files: list[Path]) -> None:
    columns = ["plan", "customer_id", "code"]
    chunks = list(iter_row_groups(files, columns))

    assert len(chunks) > len(files)  # several row groups per file
    assert max(len(c) for c in chunks) == 256
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), read_files(files)[columns])
    assert file_rows(files) == [700, 0, 1300]
    assert file_columns(files[0]) == ["customer_id", "amount", "code", "plan", "scored_at"]


def test_a_column_a_file_lacks_comes_as_nulls(files: list[Path]) -> None:
    chunk = next(iter_row_groups(files, ["customer_id", "absent"]))
    assert list(chunk.columns) == ["customer_id", "absent"]
    assert chunk["absent"].isna().all()


@pytest.mark.parametrize("size", [1, 37, 1999])
def test_sampled_positions_are_the_rows_of_the_whole_frame(files: list[Path], size: int) -> None:
    whole = read_files(files)
    positions = np.sort(np.random.default_rng(size).choice(len(whole), size=size, replace=False))

    sampled = read_positions(files, ["amount", "code", "plan", "scored_at"], positions)

    expected = whole.iloc[positions][["amount", "code", "plan", "scored_at"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(sampled, expected)


def test_no_positions_means_every_row(files: list[Path]) -> None:
    pd.testing.assert_frame_equal(read_positions(files, ["plan"], None), read_files(files, ["plan"]))


def test_partitions_of_the_store_read_by_column() -> None:
    settings = load_settings()
    pipeline = f"plog{np.random.default_rng().integers(1 << 30)}"
    storage = home_storage(settings)
    for batch_id, seed in (("b1", 1), ("b2", 2)):
        storage.write_bytes(
            partition_key(PREDICTIONS, pipeline, batch_id), to_parquet_bytes(_part(300, seed))
        )

    whole = read_partitions(PREDICTIONS, pipeline, ["b1", "b2"], settings)
    some = read_partitions(PREDICTIONS, pipeline, ["b1", "b2"], settings, ["plan", "amount"])

    pd.testing.assert_frame_equal(some, whole[["plan", "amount"]])
    with local_partitions(PREDICTIONS, pipeline, ["b1", "b2"], settings) as paths:
        assert paths == [Path(storage.uri(partition_key(PREDICTIONS, pipeline, b))) for b in ("b1", "b2")]
    assert read_partitions(PREDICTIONS, pipeline, [], settings, ["plan"]).columns.tolist() == ["plan"]


def test_a_sample_holds_one_row_group_not_the_files(tmp_path: Path) -> None:
    """Sampling 500 rows of 200,000 peaks near one row group of the columns, far below the frame."""
    import tracemalloc

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200_000, 10)), columns=[f"x{i}" for i in range(10)])
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"p{i}.parquet")
        frame.iloc[i * 50_000 : (i + 1) * 50_000].to_parquet(paths[-1], index=False, row_group_size=10_000)
    whole, group = frame.memory_usage().sum(), frame.iloc[:10_000].memory_usage().sum()
    positions = np.sort(rng.choice(len(frame), size=500, replace=False))
    expected = frame.iloc[positions].reset_index(drop=True)
    del frame

    tracemalloc.start()
    try:
        sampled = read_positions(paths, [f"x{i}" for i in range(10)], positions)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    pd.testing.assert_frame_equal(sampled, expected)
    assert peak < 4 * group < whole / 4
