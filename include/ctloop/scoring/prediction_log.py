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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    import pandas as pd

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


def read_partitions(
    area: str, pipeline: str, ids: list[str], settings: Settings, columns: list[str] | None = None
) -> pd.DataFrame:
    """The partitions of ``ids`` in ``area`` as one frame (``columns`` only, when given)."""
    import pandas as pd

    storage = home_storage(settings)
    frames = [from_parquet_bytes(storage.read_bytes(partition_key(area, pipeline, i))) for i in ids]
    if columns is not None:
        frames = [f[columns] for f in frames]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns or [])
