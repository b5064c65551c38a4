"""The pipeline specs a DAG file builds from, read once per parse of a DAG file."""

from __future__ import annotations

import logging
import warnings

from ctloop.errors import SpecError
from ctloop.settings import load_settings
from ctloop.spec.loading import load_specs
from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)


def valid_specs() -> list[PipelineSpec]:
    """Every valid spec; each invalid one is logged and warned about, never breaking the others."""
    specs, errors = load_specs(load_settings().pipelines_dir)
    for error in errors.values():
        log.error("Skipping invalid pipeline spec: %s", error)
        warnings.warn(str(error), stacklevel=2)
    return list(specs.values())


def raise_for_invalid_specs() -> None:
    """Raise one error naming every invalid spec file and field, for Airflow's import errors view."""
    _, errors = load_specs(load_settings().pipelines_dir)
    if errors:
        raise SpecError("invalid pipeline specs:\n" + "\n".join(str(e) for e in errors.values()))
