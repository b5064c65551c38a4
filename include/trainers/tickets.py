"""Training function of the tickets pipeline: class-balanced weights, which ``fit()`` alone cannot say.

``include/pipelines/tickets.yaml`` names :func:`balanced_fit` as ``estimator.train_function``.
Urgent tickets are rare; weighting each row by the inverse frequency of its class keeps the model
from settling for "never urgent". ctloop calls it with the training rows' features and target, the
estimator params, and a context whose ``build_model`` gives ctloop's own pipeline (preprocessing
and the spec's estimator) to fit; the rest of the loop does not change.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.utils.class_weight import compute_sample_weight


def balanced_fit(features: pd.DataFrame, target: pd.Series, params: dict[str, Any], context: Any) -> Any:
    """ctloop's model for this spec, fitted with class-balanced sample weights."""
    model = context.build_model(None)
    weights = compute_sample_weight("balanced", target)
    return model.fit(features, target, estimator__sample_weight=weights)
