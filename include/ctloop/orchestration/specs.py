"""The pipeline specs a DAG file builds from, read once per parse of a DAG file.

The directory is the one setting a parse needs, so it is read from the environment here rather
than through :class:`ctloop.settings.Settings`: importing pydantic-settings would cost about 8 ms
of every parse of every DAG file (tests check both agree).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from ctloop.errors import SpecError
from ctloop.spec.loading import load_specs
from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)

PIPELINES_DIR_VARIABLE = "CTLOOP_PIPELINES_DIR"


def pipelines_dir() -> Path:
    """``Settings.pipelines_dir``: ``CTLOOP_PIPELINES_DIR`` if set and not empty, else include/pipelines."""
    return Path(os.environ.get(PIPELINES_DIR_VARIABLE) or Path(__file__).resolve().parents[2] / "pipelines")


def valid_specs() -> list[PipelineSpec]:
    """Every valid spec; each invalid one is logged and warned about, never breaking the others."""
    specs, errors = load_specs(pipelines_dir())
    for error in errors.values():
        log.error("Skipping invalid pipeline spec: %s", error)
        warnings.warn(str(error), stacklevel=2)
    return list(specs.values())


def raise_for_invalid_specs() -> None:
    """Raise one error naming every invalid spec file and field, for Airflow's import errors view."""
    _, errors = load_specs(pipelines_dir())
    if errors:
        raise SpecError("invalid pipeline specs:\n" + "\n".join(str(e) for e in errors.values()))
