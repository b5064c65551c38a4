"""Typed errors whose messages name the file, column, field or rule at fault."""

from __future__ import annotations


class CtloopError(Exception):
    """Base class of every error ctloop raises on purpose."""


class SpecError(CtloopError):
    """A pipeline spec is not valid; the message names the file and the field."""


class DataReadError(CtloopError):
    """A data file could not be read; the message names the file."""


class DataValidationFailed(CtloopError):
    """The data failed its schema or expectation checks; the message names checks and columns."""


class ValidationCheckError(CtloopError):
    """An expectation crashed: the check itself is broken, which says nothing about the data."""


class EstimatorError(CtloopError):
    """The estimator named in a spec cannot be imported or is not a scikit-learn estimator."""


class PromotionRejected(CtloopError):
    """A candidate did not pass its promotion gates; the message lists the failing rules."""


class StorageError(CtloopError):
    """A storage location is malformed, or an object is missing or cannot be read or written; the
    message names the path or URI."""


class ModelIntegrityError(StorageError):
    """A model may not be loaded: its files differ from the digest recorded when it was logged, no
    digest was recorded, or it is not a skops model of trusted types; the message names the model."""


class BatchQuarantined(CtloopError):
    """A production batch failed its checks and was moved to quarantine; the message says why."""


class BatchConflict(CtloopError):
    """A batch id already scored arrived again with other content; the new file was set aside."""


class NoChampion(CtloopError):
    """Nothing can be scored before a model has been promoted to ``champion``."""


class LabelError(CtloopError):
    """A label file cannot be joined; the message names the file and column."""


class DriftInputError(CtloopError):
    """A frame cannot be compared for drift; the message names the column."""


class AlertRefused(CtloopError):
    """An external alert is not accepted: its id is malformed or another run already received it."""


class RunSuperseded(CtloopError):
    """A task of an earlier attempt of a training run ran after a re-run replaced that attempt."""


class RollbackRefused(CtloopError):
    """A rollback target cannot become champion; the message names the version and why."""


class SettingsError(CtloopError):
    """The environment holds a ``CTLOOP_*`` variable ctloop does not know; the message names it."""
