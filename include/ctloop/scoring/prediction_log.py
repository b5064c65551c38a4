"""The prediction log and its labeled twin: one Parquet partition per production batch.

``predictions/<pipeline>/batch_id=<id>/part-0.parquet`` holds what the champion predicted, and
what two other models predicted on the same rows without serving it: the previous champion while
the new one is watched (``shadow_*``) and the candidate waiting for approval (``challenger_*``),
null otherwise. Each model's output is its predicted label (or value) and ``score`` (the positive
class's probability, the top class's for a multiclass model, the value for regression); a
multiclass model's rows also hold every class's probability, one ``<score column>__<class>`` column
per class (``score__low``, ``shadow_score__low``...: ``Predictions.columns`` and
``Predictions.from_frame`` in ctloop.evaluation.weighted_metrics write and read them); binary and
regression rows have no such columns. ``labeled/<pipeline>/batch_id=<id>/part-0.parquet`` holds
the rows of that batch whose labels have arrived. Batch ids sort in arrival order, so name
incoming files by date or sequence.

Readers of a batch of any size open the partitions as local files (:func:`local_partitions`) and
take what they need: some columns (:func:`read_files`), a row group at a time
(:func:`iter_row_groups`, :func:`iter_column`), or the rows at sampled positions (:func:`read_positions`).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, NamedTuple

from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

    from ctloop.settings import Settings

PREDICTIONS = "predictions"
LABELED = "labeled"
PART = "part-0.parquet"


class ModelColumns(NamedTuple):
    """The columns holding one model's outputs on a logged row, and which version it was."""

    prediction: str
    score: str
    version: str


SERVED = ModelColumns("prediction", "score", "model_version")  # the champion, whose output was served
PREVIOUS = ModelColumns(
    "shadow_prediction", "shadow_score", "shadow_version"
)  # the watched one's predecessor
CHALLENGER = ModelColumns("challenger_prediction", "challenger_score", "challenger_version")


def partition_key(area: str, pipeline: str, batch_id: str) -> str:
    return f"{area}/{pipeline}/batch_id={batch_id}/{PART}"


def batch_ids(area: str, pipeline: str, settings: Settings) -> list[str]:
    """The batches that have a partition in ``area``, oldest first."""
    keys = home_storage(settings).list_keys(f"{area}/{pipeline}")
    found = {k.split("/")[-2].removeprefix("batch_id=") for k in keys if k.endswith(f"/{PART}")}
    return sorted(found)


@contextmanager
def local_partitions(area: str, pipeline: str, ids: list[str], settings: Settings) -> Iterator[list[Path]]:
    """Local files holding the partitions of ``ids`` while the context lasts (a local store's own
    files; an S3 object downloaded once to a temporary file), so a reader can then take one column
    or one row group at a time without fetching the object again."""
    storage = home_storage(settings)
    with ExitStack() as stack:
        yield [stack.enter_context(storage.local_file(partition_key(area, pipeline, i))) for i in ids]


def read_partitions(
    area: str, pipeline: str, ids: list[str], settings: Settings, columns: list[str] | None = None
) -> pd.DataFrame:
    """The partitions of ``ids`` in ``area`` as one frame (``columns`` only, when given: the other
    columns are never decoded)."""
    with local_partitions(area, pipeline, ids, settings) as paths:
        return read_files(paths, columns)


def read_files(paths: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Partition files as one frame, ``columns`` only when given (each file's other columns are
    never decoded); the values and types ``pandas.read_parquet`` gives, files concatenated."""
    import pandas as pd

    frames = [pd.read_parquet(path, columns=columns) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns or [])


def file_rows(paths: list[Path]) -> list[int]:
    """Each partition file's row count, from its footer."""
    import pyarrow.parquet as pq

    return [pq.read_metadata(path).num_rows for path in paths]


def file_columns(path: Path) -> list[str]:
    """A partition file's column names, in its order, from its footer."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def iter_row_groups(paths: list[Path], columns: list[str]) -> Iterator[pd.DataFrame]:
    """``columns`` of the partition files, one row group at a time, in order, converted as
    :func:`read_files` converts them (a file's missing column comes as nulls): a reader that keeps
    only some rows holds one row group of those columns."""
    import pyarrow.parquet as pq

    for path in paths:
        with pq.ParquetFile(path) as partition:
            present = [c for c in columns if c in partition.schema_arrow.names]
            for group in range(partition.num_row_groups):
                frame = partition.read_row_group(group, columns=present, use_pandas_metadata=True).to_pandas()
                yield frame.reindex(columns=columns)


def iter_column(paths: list[Path], column: str) -> Iterator[pd.Series]:
    """One column of the partition files, a row group at a time (:func:`iter_row_groups`): a
    reader that reduces it as it goes (counts, distinct values) holds one row group of it."""
    return (chunk[column] for chunk in iter_row_groups(paths, [column]))


def read_positions(
    paths: list[Path], columns: list[str], positions: NDArray[np.int64] | None
) -> pd.DataFrame:
    """The rows at sorted ``positions`` (every row when None) of the files read as one frame, as
    ``read_files(paths, columns).iloc[positions]`` gives them, reading a row group at a time: what
    is held is the rows taken and one row group of ``columns``."""
    import numpy as np
    import pandas as pd

    if positions is None:
        return read_files(paths, columns)
    taken, start = [], 0
    for chunk in iter_row_groups(paths, columns):
        stop = start + len(chunk)
        low, high = np.searchsorted(positions, [start, stop])
        # an empty selection still carries the row group's types into the concatenation, as a full read does
        taken.append(chunk.iloc[positions[low:high] - start])
        start = stop
    return pd.concat(taken, ignore_index=True) if taken else pd.DataFrame(columns=columns)
