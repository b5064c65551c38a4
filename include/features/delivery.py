"""Features of the delivery pipeline: the route's length and the rush hour, from raw columns.

``include/pipelines/delivery.yaml`` names :func:`build` as its ``features.factory``. ctloop runs
the transformer before its own preprocessing, in training and in scoring alike, and records the
sha256 of this file with every model version, so editing it is a visible change of lineage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

EARTH_RADIUS_KM = 6371.0


class RouteFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Adds ``route_km`` (haversine distance, pickup to dropoff) and ``rush_hour`` (1 in
    ``rush_hours``) to the raw columns; a tree model cannot learn a distance from four coordinates."""

    def __init__(self, rush_hours: tuple[int, ...] = (7, 8, 9, 17, 18, 19)) -> None:
        self.rush_hours = rush_hours

    def fit(self, x: pd.DataFrame, y: Any = None) -> RouteFeatures:
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        lat1, lon1, lat2, lon2 = (
            np.radians(x[c].to_numpy(float))
            for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
        )
        a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        out = x.copy()
        out["route_km"] = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))
        out["rush_hour"] = x["hour"].isin(self.rush_hours).astype(float)
        return out


def build(rush_hours: list[int] | None = None) -> RouteFeatures:
    """The factory the spec names; its keyword arguments come from ``features.params``."""
    return RouteFeatures(tuple(rush_hours) if rush_hours else (7, 8, 9, 17, 18, 19))
