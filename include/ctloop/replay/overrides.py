"""``--set KEY=VALUE``: a what-if change of a pipeline's policy for one replay.

A key is a dotted path into the spec, as in the YAML file (``retrain.k_of_n.k``,
``monitoring.drift.share``, ``gates.rules.0.at_least``); a value is read as YAML (``1``, ``0.5``,
``null``, ``[a, b]``, ``{window: batches, last: 2}``). The changed spec is validated by the same
strict model as the file, so a misspelt key or a bad value fails, naming it, before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ctloop.errors import SpecError
from ctloop.spec.loading import SAFE_LOADER, format_validation_error
from ctloop.spec.models import PipelineSpec

if TYPE_CHECKING:
    from collections.abc import Iterable


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` as (the key's parts, the value read as YAML)."""
    key, separator, raw = text.partition("=")
    parts = key.strip().split(".")
    if not separator or not all(parts):
        raise SpecError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. retrain.k_of_n.k=1")
    try:
        value = yaml.load(raw, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {key.strip()}: {raw!r} is not a YAML value: {exc}") from exc
    return parts, value


def _assign(data: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    """Set ``value`` at ``parts`` in the spec's data; a missing section is created for the model
    to judge, a list is indexed by number."""
    node: Any = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {text}: {where}: the list has items 0 to {len(node) - 1}")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise SpecError(f"--set {text}: {'.'.join(parts[:depth])} is a value, not a section")


def apply_overrides(spec: PipelineSpec, assignments: Iterable[str]) -> PipelineSpec:
    """``spec`` with every ``KEY=VALUE`` of ``assignments`` applied, validated by the spec model."""
    assignments = list(assignments)
    if not assignments:
        return spec
    # Only what the YAML set: a default must stay a default (an unset retrain.data lets an
    # alert-triggered training choose its window; a dump of every field would pin it).
    data = spec.model_dump(exclude_unset=True)
    for text in assignments:
        parts, value = parse_assignment(text)
        _assign(data, parts, value, text)
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:  # named as a spec file's errors are, by field
        raise SpecError(f"--set {' '.join(assignments)}: {format_validation_error(exc)}") from exc
