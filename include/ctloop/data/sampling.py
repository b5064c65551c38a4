"""The ``data.max_rows`` sample: a deterministic share of the training rows, stratified by class.

Each row gets a seeded hash of its values as its key; the sample is, in each stratum (a class of
the target for classification, all rows for regression), the rows with the smallest keys. The
same rows and seed give the same sample, in whatever files or order they arrive, so a re-run
snapshots the same bytes (the same sha256). Batches are read one at a time: each keeps only the
rows that could still be among the smallest ``max_rows`` keys of their stratum, so memory holds
one batch plus at most ``max_rows`` rows per stratum, never the whole data. Each stratum's size in
the sample is its share of ``max_rows`` (largest remainder, so within one row of it), except that
a rare class keeps ``min(its rows, RARE_CLASS_ROWS)``: a class is never sampled away.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

    import pandas as pd

    from ctloop.data.training_window import Batches
    from ctloop.spec.models import PipelineSpec

RARE_CLASS_ROWS = 10  # a class keeps at least this many rows (all of them when it has fewer)
SAMPLE_PURPOSE = "sample"  # the hash purpose of the sample's keys: independent of the holdouts'
_KEY, _BATCH, _ROW = "__ctloop_sample_key", "__ctloop_sample_batch", "__ctloop_sample_row"
_ORDER = [_KEY, _BATCH, _ROW]  # ties (identical rows) are broken by where the row was read


class DataSample(BaseModel):
    """What ``data.max_rows`` did: rows before and after, the seed, and per stratum (class, as
    text) its rows before and after; ``stratified_by`` is the target for classification."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows_before: int
    rows_after: int
    max_rows: int
    seed: int
    stratified_by: str | None
    strata: dict[str, tuple[int, int]] = {}

    def note(self) -> str:
        """One line for the run, the version and the model card."""
        if self.rows_after == self.rows_before:
            return f"all {self.rows_before} rows (data.max_rows {self.max_rows} not exceeded)"
        line = (
            f"seeded sample of {self.rows_after} of {self.rows_before} rows"
            f" (data.max_rows {self.max_rows}, data.sample_seed {self.seed})"
        )
        if self.stratified_by is None:
            return line
        shares = "; ".join(f"{k} {after} of {before}" for k, (before, after) in self.strata.items())
        return f"{line}, stratified by {self.stratified_by}: {shares}"


def sample_batches(
    batches: Iterable[tuple[str, pd.DataFrame]], spec: PipelineSpec
) -> tuple[Batches, DataSample]:
    """The rows of ``batches`` (read lazily, one at a time) the ``data.max_rows`` sample keeps, per
    batch in their order (a batch may keep none), and what the sample did."""
    import pandas as pd

    max_rows = spec.data.max_rows
    if max_rows is None:
        raise ValueError("sample_batches needs data.max_rows")
    target = spec.columns.target if spec.task == "classification" else None
    uris: list[str] = []
    counts: Counter[Hashable] = Counter()
    pool: pd.DataFrame | None = None
    for index, (uri, frame) in enumerate(batches):
        uris.append(uri)
        if target is not None:
            counts.update(_stratum(v) for v in frame[target].tolist())
        else:
            counts[None] += len(frame)
        candidates = _smallest(_keyed(frame, spec, index), target, lambda _: max_rows)
        pool = (
            candidates
            if pool is None
            else _smallest(pd.concat([pool, candidates]), target, lambda _: max_rows)
        )
    if pool is None:
        raise ValueError("sample_batches needs at least one batch")
    quotas = _quotas(counts, max_rows)
    chosen = _smallest(pool, target, lambda key: quotas[_stratum(key)]).sort_values([_BATCH, _ROW])
    kept = Counter(_stratum(v) for v in chosen[target].tolist()) if target is not None else Counter()
    by_batch = dict(iter(chosen.groupby(_BATCH, sort=False)))
    empty = chosen.iloc[:0]
    sampled = [
        (uri, by_batch.get(index, empty).drop(columns=[_KEY, _BATCH, _ROW]).reset_index(drop=True))
        for index, uri in enumerate(uris)
    ]
    record = DataSample(
        rows_before=sum(counts.values()),
        rows_after=len(chosen),
        max_rows=max_rows,
        seed=spec.data.sample_seed,
        stratified_by=target,
        strata={str(k): (n, kept[k]) for k, n in sorted(counts.items(), key=lambda kv: str(kv[0]))}
        if target is not None
        else {},
    )
    return sampled, record


def _stratum(value: object) -> Hashable:
    """A class as a dict key: a missing label is one stratum (None), 1 and 1.0 are the same."""
    import pandas as pd

    return None if pd.isna(value) else value


def _keyed(frame: pd.DataFrame, spec: PipelineSpec, index: int) -> pd.DataFrame:
    """``frame`` with each row's seeded key and where it was read (batch and row)."""
    import numpy as np
    import pandas as pd

    from ctloop.data.holdout import _hash_key

    seeded = _hash_key(spec.data.sample_seed, SAMPLE_PURPOSE)
    keys = pd.util.hash_pandas_object(frame, index=False, hash_key=seeded)
    return frame.assign(**{_KEY: keys.to_numpy(), _BATCH: index, _ROW: np.arange(len(frame))})


def _smallest(frame: pd.DataFrame, target: str | None, quota: Callable[[Hashable], int]) -> pd.DataFrame:
    """The rows of ``frame`` with the smallest keys: ``quota(class)`` per class, or ``quota(None)``."""
    import pandas as pd

    ordered = frame.sort_values(_ORDER, kind="stable")
    if target is None:
        return ordered.head(quota(None))
    parts = [
        group.head(quota(key))
        for key, group in ordered.groupby(target, dropna=False, sort=False, observed=True)
    ]
    return pd.concat(parts) if parts else ordered


def _quotas(counts: Counter[Hashable], max_rows: int) -> dict[Hashable, int]:
    """Each stratum's rows in the sample: its share of ``max_rows`` by largest remainder, but at
    least ``min(its rows, RARE_CLASS_ROWS)`` (the rare classes' floors come out of the others' shares)."""
    if sum(counts.values()) <= max_rows:
        return dict(counts)
    fixed: dict[Hashable, int] = {}
    while True:
        free = {k: n for k, n in counts.items() if k not in fixed}
        if not free:
            return fixed
        budget = max_rows - sum(fixed.values())
        shares = {k: budget * n / sum(free.values()) for k, n in free.items()}
        rare = [k for k, share in shares.items() if share < min(free[k], RARE_CLASS_ROWS)]
        if not rare:
            break
        fixed |= {k: min(counts[k], RARE_CLASS_ROWS) for k in rare}
    quotas = {k: int(share) for k, share in shares.items()}
    by_remainder = sorted(shares, key=lambda k: (quotas[k] - shares[k], str(k)))
    for k in by_remainder[: budget - sum(quotas.values())]:
        quotas[k] += 1
    return fixed | quotas
