"""The frozen holdout: the rows on which a candidate and the champion are compared.

With the ``fraction`` strategy a row's side is decided by a seeded hash of its id, so a row
never moves between training and holdout as data accumulates: a champion trained on earlier
data has not seen the rows the next candidate is judged on. Holdouts (this one and the recent
holdout, :mod:`ctloop.data.training_window`) are stored under their digest and never rewritten.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pandas as pd

from ctloop.io.readers import to_parquet_bytes
from ctloop.io.storage import home_storage

if TYPE_CHECKING:
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

_BUCKETS = 10_000


def _hash_key(seed: int, purpose: str = "ctloop") -> str:
    return f"{purpose}{seed:010d}"[-16:]


def holdout_mask(frame: pd.DataFrame, spec: PipelineSpec) -> pd.Series:
    """True for the rows that belong to the holdout."""
    holdout = spec.holdout
    if holdout.strategy == "time":
        times = pd.to_datetime(frame[spec.columns.timestamp], format="mixed")
        return times >= times.quantile(1.0 - holdout.fraction)
    return id_share(frame, spec, holdout.fraction)


def id_share(frame: pd.DataFrame, spec: PipelineSpec, fraction: float, purpose: str = "ctloop") -> pd.Series:
    """True for about ``fraction`` of the rows, chosen by a seeded hash of each row's id (its
    features when there is none): the same row is always on the same side. Each ``purpose``
    draws its own share, independent of the others'."""
    keys = frame[spec.columns.id] if spec.columns.id else frame[spec.columns.features]
    hash_key = _hash_key(spec.holdout.seed, purpose)
    hashes = pd.util.hash_pandas_object(keys.astype(str), index=False, hash_key=hash_key)
    return pd.Series((hashes.to_numpy() % _BUCKETS) < fraction * _BUCKETS, index=frame.index)


def split(frame: pd.DataFrame, spec: PipelineSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, holdout rows)."""
    mask = holdout_mask(frame, spec)
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def digest(frame: pd.DataFrame) -> str:
    """sha256 of the holdout's contents, independent of file format."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    column_names = "\x1f".join(map(str, frame.columns)).encode()
    return hashlib.sha256(column_names + hashes.tobytes()).hexdigest()


def store(frame: pd.DataFrame, pipeline: str, settings: Settings) -> tuple[str, str]:
    """Write a holdout under its digest, once; returns (storage key, digest)."""
    sha256 = digest(frame)
    key = f"holdouts/{pipeline}/{sha256}.parquet"
    storage = home_storage(settings)
    if not storage.exists(key):
        storage.write_bytes(key, to_parquet_bytes(frame))
    return key, sha256
