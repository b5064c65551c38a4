"""A churn dataset that looks like a subscription business, deterministic by seed.

It exists so that every later stage (validation, drift, retraining) can be shown and tested on
data with known faults and shifts: covariate shift moves chosen numeric features, concept drift
changes the label rule while the features stay as they were, and data-quality faults break a
batch the way real feeds break.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ctloop.devtools.example_datasets import DATASETS

Fault = Literal["missing_column", "extra_column", "nulls", "all_null", "wrong_type", "out_of_range", "empty"]
FAULTS: tuple[str, ...] = (
    "missing_column",
    "extra_column",
    "nulls",
    "all_null",
    "wrong_type",
    "out_of_range",
    "empty",
)

NUMERIC = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_tickets_90d",
    "avg_session_minutes",
    "logins_30d",
    "days_since_last_login",
    "late_payments_12m",
    "discount_pct",
    "data_usage_gb",
    "devices",
    "satisfaction_score",
    "age",
    "credit_score",
    "referrals",
]
CATEGORICAL = ["contract", "payment_method", "internet_service", "region", "plan_tier", "paperless_billing"]
# Engagement and billing features moved by 1.5 standard deviations: every value stays within the
# example expectation suite's ranges, so such batches are valid and only their distribution moves.
COVARIATE_SHIFT: dict[str, float] = {
    feature: 1.5
    for feature in (
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "avg_session_minutes",
        "logins_30d",
        "data_usage_gb",
        "days_since_last_login",
        "referrals",
    )
}
ID_COLUMN = "customer_id"
TIMESTAMP_COLUMN = "event_time"
TARGET = "churned"

_CATEGORIES = {
    "contract": (["month_to_month", "one_year", "two_year"], [0.55, 0.25, 0.20]),
    "payment_method": (["card", "bank_transfer", "electronic_check", "mailed_check"], [0.35, 0.25, 0.3, 0.1]),
    "internet_service": (["fiber", "dsl", "none"], [0.45, 0.4, 0.15]),
    "region": (["north", "south", "east", "west", "central"], [0.22, 0.2, 0.2, 0.18, 0.2]),
    "plan_tier": (["basic", "standard", "premium"], [0.4, 0.4, 0.2]),
    "paperless_billing": (["yes", "no"], [0.6, 0.4]),
}


def _features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    tenure = rng.integers(0, 73, n).astype(float)
    monthly = rng.normal(70, 25, n).clip(18, 150).round(2)
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": (tenure * monthly * rng.uniform(0.9, 1.1, n)).round(2),
            "support_tickets_90d": rng.poisson(1.2, n).astype(float),
            "avg_session_minutes": rng.gamma(4.0, 6.0, n).round(1),
            "logins_30d": rng.poisson(12, n).astype(float),
            "days_since_last_login": rng.exponential(6.0, n).round(0),
            "late_payments_12m": rng.poisson(0.6, n).astype(float),
            "discount_pct": rng.choice([0.0, 5.0, 10.0, 15.0, 20.0], n, p=[0.5, 0.2, 0.15, 0.1, 0.05]),
            "data_usage_gb": rng.lognormal(3.0, 0.7, n).round(2),
            "devices": rng.integers(1, 7, n).astype(float),
            "satisfaction_score": rng.integers(1, 6, n).astype(float),
            "age": rng.normal(45, 14, n).clip(18, 90).round(0),
            "credit_score": rng.normal(680, 70, n).clip(300, 850).round(0),
            "referrals": rng.poisson(0.5, n).astype(float),
        }
    )
    for column, (values, weights) in _CATEGORIES.items():
        frame[column] = rng.choice(values, n, p=weights)
    return frame


def _churn_logit(frame: pd.DataFrame, concept_drift: bool) -> np.ndarray:
    month_to_month = (frame["contract"] == "month_to_month").to_numpy(float)
    if concept_drift:
        # After the drift, price and engagement stop mattering; region and credit decide.
        return (
            -0.5
            + 1.6 * (frame["region"].isin(["south", "west"])).to_numpy(float)
            - 0.012 * (frame["credit_score"].to_numpy() - 680)
            + 0.9 * (frame["payment_method"] == "mailed_check").to_numpy(float)
            - 1.0 * month_to_month
        )
    return (
        -1.2
        + 1.3 * month_to_month
        - 0.045 * frame["tenure_months"].to_numpy()
        + 0.02 * (frame["monthly_charges"].to_numpy() - 70)
        + 0.35 * frame["support_tickets_90d"].to_numpy()
        - 0.45 * (frame["satisfaction_score"].to_numpy() - 3)
        + 0.06 * frame["days_since_last_login"].to_numpy()
        + 0.4 * frame["late_payments_12m"].to_numpy()
        + 0.5 * (frame["internet_service"] == "fiber").to_numpy(float)
    )


def generate_batch(
    n_rows: int,
    *,
    seed: int,
    batch_index: int = 0,
    start: datetime = datetime(2026, 1, 1),
    shift: dict[str, float] | None = None,
    concept_drift: bool = False,
    fault: Fault | None = None,
) -> pd.DataFrame:
    """One batch of ``n_rows`` customers observed on the batch's day.

    ``shift`` maps numeric features to a shift in units of their standard deviation.
    """
    rng = np.random.default_rng([seed, batch_index])
    frame = _features(rng, n_rows)
    for column, sds in (shift or {}).items():
        if column not in NUMERIC:
            raise ValueError(
                f"shift: {column!r} is not a numeric feature; choose one of {', '.join(NUMERIC)}"
            )
        frame[column] = frame[column] + sds * frame[column].std()
    logit = _churn_logit(frame, concept_drift)
    frame[TARGET] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    day = start + timedelta(days=batch_index)
    frame.insert(0, ID_COLUMN, [f"c{seed:03d}{batch_index:04d}{i:06d}" for i in range(n_rows)])
    frame.insert(
        1, TIMESTAMP_COLUMN, pd.to_datetime(day) + pd.to_timedelta(rng.integers(0, 86400, n_rows), "s")
    )
    return inject_fault(frame, fault) if fault else frame


def inject_fault(frame: pd.DataFrame, fault: Fault) -> pd.DataFrame:
    """A copy of ``frame`` broken the way ``fault`` says."""
    broken = frame.copy()
    if fault == "missing_column":
        return broken.drop(columns=["monthly_charges"])
    if fault == "extra_column":
        broken["unexpected_score"] = 1.0
    elif fault == "nulls":
        broken.loc[broken.index[::3], "tenure_months"] = np.nan
    elif fault == "all_null":
        # A feed that stopped sending a field; the example suite has no not-null check on it.
        broken["credit_score"] = np.nan
    elif fault == "wrong_type":
        broken["monthly_charges"] = broken["monthly_charges"].astype(str)
        broken.loc[broken.index[0], "monthly_charges"] = "seventy"
    elif fault == "out_of_range":
        broken.loc[broken.index[::10], "age"] = -5.0
    elif fault == "empty":
        return broken.head(0)
    else:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    return broken


def _batch(dataset: str, rows: int, seed: int, index: int, options: dict) -> tuple[pd.DataFrame, str, str]:
    """A batch of the named example dataset (``churn``, or one of :mod:`example_datasets`), with
    its id and target column names."""
    if dataset == "churn":
        return generate_batch(rows, seed=seed, batch_index=index, **options), ID_COLUMN, TARGET
    found = DATASETS.get(dataset)
    if found is None:
        raise ValueError(f"unknown dataset {dataset!r}; choose churn or one of {', '.join(DATASETS)}")
    return found.batch(rows, seed=seed, batch_index=index, **options), found.id_column, found.target


def write_batches(
    directory: str | Path,
    indices: range,
    *,
    rows: int,
    seed: int = 7,
    fmt: str = "csv",
    with_target: bool = True,
    dataset: str = "churn",
    **options,
) -> list[Path]:
    """Write one file per batch index into a local ``directory``; ``options`` go to
    :func:`generate_batch` (or the other ``dataset``'s generator). A fault of ``empty`` writes a
    zero-byte file, as a broken feed does. Production batches come ``with_target=False``: their
    labels arrive later (:func:`write_labels`)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in indices:
        frame, _, target_column = _batch(dataset, rows, seed, index, options)
        path = target / f"batch-{index:04d}.{fmt}"
        if not with_target:
            frame = frame.drop(columns=[target_column], errors="ignore")
        _write(frame, path, fmt, empty=options.get("fault") == "empty")
        paths.append(path)
    return paths


def write_labels(
    directory: str | Path, index: int, *, rows: int, seed: int = 7, dataset: str = "churn", **options
) -> Path:
    """The labels of batch ``index`` (its ids and target), as they would arrive later."""
    frame, id_column, target_column = _batch(dataset, rows, seed, index, options)
    frame = frame[[id_column, target_column]]
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"labels-{index:04d}.csv"
    _write(frame, path, "csv", empty=False)
    return path


def _write(frame: pd.DataFrame, path: Path, fmt: str, *, empty: bool) -> None:
    if empty:
        path.write_bytes(b"")
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
