"""Class labels as integer codes for estimators that accept nothing else (XGBoost, and others).

scikit-learn's classifiers take any labels; XGBoost's refuse anything but 0..K-1. A data
scientist's labels are whatever the data holds ("low", "urgent", 3, 7), so ctloop fits such an
estimator on codes and maps its output back: the registered model predicts and reports
``classes_`` in the data's own labels, like any scikit-learn classifier.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin, clone


class EncodedLabels(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """``estimator`` fitted on the codes of the labels; ``classes_`` holds the labels themselves."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: Any, y: Any, **fit_params: Any) -> EncodedLabels:
        import numpy as np

        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(x, codes, **fit_params)
        return self

    def predict(self, x: Any) -> Any:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]

    def predict_proba(self, x: Any) -> Any:
        return self.estimator_.predict_proba(x)


def needs_codes(estimator_class: type, y: Any) -> bool:
    """Whether to fit on codes: an estimator from outside scikit-learn and labels that are not
    already the integers 0..K-1 (scikit-learn's own classifiers take any labels)."""
    import numpy as np

    if estimator_class.__module__.split(".")[0] == "sklearn":
        return False
    labels = np.unique(np.asarray(y))
    is_integer = labels.dtype.kind in "iu" or (labels.dtype.kind == "b")
    return not (is_integer and np.array_equal(labels, np.arange(len(labels))))
