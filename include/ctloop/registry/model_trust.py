"""Which types a saved model may hold: what skops will construct when it loads one.

Models are saved with skops, never pickle: loading builds only the types it is told to trust.
ctloop trusts the scientific stack, a reviewed list of gradient-boosting types whose state is the
library's own model format (XGBoost's raw booster bytes, LightGBM's model text), the types of the
user's own feature and training modules the committed spec names, and the exact types the spec
lists in ``estimator.trusted_types``. The list is read from the spec, never from the model's
MLmodel file, which a crafted model could widen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ctloop.spec.models import PipelineSpec

SCIENTIFIC_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
# Reviewed: their skops state is the library's model format (bytes or text), read by its loader.
REVIEWED = frozenset(
    {
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "ctloop.training.label_codes.EncodedLabels",
    }
)


class TrustPolicy(BaseModel):
    """The exact type names and the user modules (every type defined in one) a model may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    types: frozenset[str] = REVIEWED
    modules: frozenset[str] = frozenset()

    def refused(self, found: list[str]) -> list[str]:
        """The types in ``found`` this policy does not trust."""
        return [t for t in found if not self.trusts(t)]

    def trusts(self, type_name: str) -> bool:
        return (
            type_name.startswith(SCIENTIFIC_PREFIXES)
            or type_name in self.types
            or type_name.rpartition(".")[0] in self.modules
        )


DEFAULT = TrustPolicy()


def policy(spec: PipelineSpec) -> TrustPolicy:
    """What a model of ``spec`` may hold: the defaults, the spec's ``estimator.trusted_types``, and
    the modules of its ``features.factory`` and ``estimator.train_function``."""
    user_code = [spec.features.factory if spec.features else None, spec.estimator.train_function]
    return TrustPolicy(
        types=REVIEWED | set(spec.estimator.trusted_types),
        modules=frozenset(path.rpartition(".")[0] for path in user_code if path),
    )
