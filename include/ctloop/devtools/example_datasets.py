"""The example pipelines' other datasets: a regression and a multiclass stream, deterministic by seed.

``delivery`` (regression, LightGBM with a feature module): minutes from order to door, driven
by the route length, which only exists once ``include/features/delivery.py`` computes it from the
coordinates. ``tickets`` (multiclass, XGBoost with a training function): a support ticket's
priority, ``low``, ``normal`` or ``urgent``, with urgent the rare class. Concept drift changes
how the target follows from the features, which keep their distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

CITY_CENTRE = (52.52, 13.40)  # degrees; orders fall within about 12 km of it
RUSH_HOURS = (7, 8, 9, 17, 18, 19)
PRIORITIES = ("low", "normal", "urgent")


@dataclass(frozen=True)
class Dataset:
    """How one example dataset names its id, timestamp and target, and makes a batch of rows."""

    name: str
    id_column: str
    timestamp_column: str
    target: str
    features: Callable[[np.random.Generator, int], pd.DataFrame]
    label: Callable[[pd.DataFrame, np.random.Generator, bool], np.ndarray]

    def batch(
        self,
        n_rows: int,
        *,
        seed: int,
        batch_index: int = 0,
        start: datetime = datetime(2026, 1, 1),
        concept_drift: bool = False,
    ) -> pd.DataFrame:
        """One batch of ``n_rows`` observed on the batch's day; ``concept_drift`` changes the rule."""
        rng = np.random.default_rng([seed, batch_index, len(self.name)])
        frame = self.features(rng, n_rows)
        frame[self.target] = self.label(frame, rng, concept_drift)
        day = start + timedelta(days=batch_index)
        prefix = self.name[0]
        frame.insert(
            0, self.id_column, [f"{prefix}{seed:03d}{batch_index:04d}{i:06d}" for i in range(n_rows)]
        )
        frame.insert(
            1,
            self.timestamp_column,
            pd.to_datetime(day) + pd.to_timedelta(rng.integers(0, 86400, n_rows), "s"),
        )
        return frame


def _delivery_features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    lat, lon = CITY_CENTRE
    return pd.DataFrame(
        {
            "pickup_lat": (lat + rng.normal(0, 0.04, n)).round(5),
            "pickup_lon": (lon + rng.normal(0, 0.06, n)).round(5),
            "dropoff_lat": (lat + rng.normal(0, 0.05, n)).round(5),
            "dropoff_lon": (lon + rng.normal(0, 0.08, n)).round(5),
            "hour": rng.integers(0, 24, n).astype(float),
            "items": rng.integers(1, 11, n).astype(float),
            "prep_minutes": rng.gamma(4.0, 3.0, n).round(1),
            "courier_load": rng.uniform(0.0, 1.0, n).round(3),
            "weather": rng.choice(["clear", "rain", "snow"], n, p=[0.7, 0.25, 0.05]),
            "vehicle": rng.choice(["bike", "scooter", "car"], n, p=[0.45, 0.35, 0.2]),
        }
    )


def route_km(frame: pd.DataFrame) -> np.ndarray:
    """Great-circle distance between pickup and dropoff, in km (the haversine formula)."""
    lat1, lon1, lat2, lon2 = (
        np.radians(frame[c].to_numpy(float))
        for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
    )
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _delivery_minutes(frame: pd.DataFrame, rng: np.random.Generator, concept_drift: bool) -> np.ndarray:
    speed = frame["vehicle"].map({"bike": 15.0, "scooter": 22.0, "car": 25.0}).to_numpy()
    speed = speed * frame["weather"].map({"clear": 1.0, "rain": 0.8, "snow": 0.6}).to_numpy()
    rush = frame["hour"].isin(RUSH_HOURS).to_numpy(float)
    if concept_drift:  # road works: cars crawl, and a busy courier now costs much more
        speed = np.where(frame["vehicle"] == "car", speed * 0.45, speed)
        load_minutes = 25.0 * frame["courier_load"].to_numpy()
    else:
        load_minutes = 6.0 * frame["courier_load"].to_numpy()
    minutes = (
        frame["prep_minutes"].to_numpy()
        + route_km(frame) / speed * 60
        + 7.0 * rush
        + 0.8 * frame["items"].to_numpy()
        + load_minutes
        + rng.normal(0, 3.0, len(frame))
    )
    return np.asarray(minutes.clip(5, None).round(1))


def _ticket_features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message_words": rng.gamma(2.0, 40.0, n).round(0),
            "prior_tickets_30d": rng.poisson(1.0, n).astype(float),
            "account_age_days": rng.integers(1, 3000, n).astype(float),
            "sentiment": rng.uniform(-1.0, 1.0, n).round(3),
            "attachments": rng.poisson(0.4, n).astype(float),
            "outage_reported": rng.choice([0.0, 1.0], n, p=[0.9, 0.1]),
            "customer_tier": rng.choice(["free", "pro", "enterprise"], n, p=[0.5, 0.35, 0.15]),
            "channel": rng.choice(["email", "chat", "phone"], n, p=[0.5, 0.35, 0.15]),
            "product": rng.choice(["billing", "app", "api", "hardware"], n, p=[0.3, 0.35, 0.2, 0.15]),
        }
    )


def _priority(frame: pd.DataFrame, rng: np.random.Generator, concept_drift: bool) -> np.ndarray:
    tier = frame["customer_tier"]
    sentiment = frame["sentiment"].to_numpy()
    urgent = (
        -2.4
        + 2.6 * frame["outage_reported"].to_numpy()
        + 1.3 * (tier == "enterprise").to_numpy(float)
        - 1.4 * sentiment
        + 0.35 * frame["prior_tickets_30d"].to_numpy()
        + 0.8 * (frame["channel"] == "phone").to_numpy(float)
    )
    low = (
        0.2
        + 1.1 * (tier == "free").to_numpy(float)
        + 0.7 * (frame["channel"] == "email").to_numpy(float)
        + sentiment
    )
    if concept_drift:  # a new API release: api tickets turn urgent, and free users stop being low
        urgent = urgent + 2.2 * (frame["product"] == "api").to_numpy(float)
        low = (
            low
            - 1.1 * (tier == "free").to_numpy(float)
            + 1.0 * (frame["product"] == "billing").to_numpy(float)
        )
    scores = np.column_stack([low, np.zeros(len(frame)), urgent])
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    drawn = (rng.random(len(frame))[:, None] < probabilities.cumsum(axis=1)).argmax(axis=1)
    return np.asarray(PRIORITIES, dtype=object)[drawn]


DELIVERY = Dataset(
    "delivery", "order_id", "placed_at", "delivery_minutes", _delivery_features, _delivery_minutes
)
TICKETS = Dataset("tickets", "ticket_id", "opened_at", "priority", _ticket_features, _priority)
DATASETS = {d.name: d for d in (DELIVERY, TICKETS)}
