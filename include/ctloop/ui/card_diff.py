"""What changed between a model version and the champion, from their two MLflow runs.

A reviewer opening a card asks first how this model differs from the one serving: its metrics,
the data it saw, its params, the feature and training code it was built with, the features it
relies on. The card itself compares the candidate with the champion of its own training run,
which may no longer serve; this diff is against the champion now. Each run's holdout metrics
were measured on that run's holdout, so the metric rows compare like with like only when the
holdout digest (in the data rows) is the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.registry import tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

DATA_TAGS = {
    "snapshot sha256": tags.DATA_SHA256,
    "snapshot": tags.DATA_URI,
    "window trained on": tags.DATA_WINDOW,
    "holdout digest": tags.HOLDOUT_DIGEST,
    "data sample": tags.DATA_SAMPLE,
}
DATA_PARAMS = (tags.TRAIN_ROWS, tags.HOLDOUT_ROWS, tags.RECENT_HOLDOUT_ROWS)
CODE_TAGS = {
    "feature code": tags.FEATURES_CODE,
    "feature code sha256": tags.FEATURES_SHA256,
    "training function": tags.TRAIN_FUNCTION,
    "training function sha256": tags.TRAIN_FUNCTION_SHA256,
    "code version": tags.CODE_VERSION,
    "spec sha256": tags.SPEC_SHA256,
}
METRIC_PREFIXES = (tags.HOLDOUT_METRIC_PREFIX, tags.RECENT_METRIC_PREFIX)  # the run's own model only
DEFAULT_SHIFT = 0.15  # a share move that counts as a change, when the artifact names none


@dataclass(frozen=True)
class RunFacts:
    """What one version's training run recorded, as far as the diff reads it."""

    version: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    importance: Mapping[str, Any] | None  # the run's explanations/importance.json


@dataclass(frozen=True)
class DiffRow:
    """One fact of both versions, as shown; ``change`` says how it moved ("" when it did not)."""

    name: str
    value: str | None
    champion: str | None
    change: str

    @property
    def changed(self) -> bool:
        return bool(self.change)


@dataclass(frozen=True)
class DiffSection:
    title: str
    rows: list[DiffRow]
    note: str = ""

    @property
    def changes(self) -> int:
        return sum(row.changed for row in self.rows)


def _number(value: float | None, digits: int = 4) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _text_row(name: str, value: str | None, champion: str | None) -> DiffRow:
    value, champion = value or None, champion or None
    if value == champion:
        return DiffRow(name, value, champion, "")
    if champion is None:
        return DiffRow(name, value, champion, "only this version")
    return DiffRow(name, value, champion, "only the champion" if value is None else "changed")


def _numeric_row(name: str, value: float | None, champion: float | None, digits: int = 4) -> DiffRow:
    if value is None or champion is None:
        return _text_row(name, _number(value, digits), _number(champion, digits))
    moved = value - champion
    change = "" if math.isclose(moved, 0.0, abs_tol=10 ** -(digits + 2)) else f"{moved:+.{digits}f}"
    return DiffRow(name, _number(value, digits), _number(champion, digits), change)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _tuned(recorded: Mapping[str, str]) -> dict[str, Any]:
    """The tuned params of the run's tuning summary; none when it tuned nothing (or the tag is unreadable)."""
    try:
        found = json.loads(recorded.get(tags.TUNING) or "{}").get("tuned_params")
    except (ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def _union(*names: Any) -> list[str]:
    """Every name in order of first appearance."""
    return list(dict.fromkeys(name for group in names for name in group))


def _shares(importance: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Each feature's mean importance for the run's own model and its share of the total positive
    importance, most important first."""
    means = {
        name: float(values["mean"])
        for name, values in ((importance or {}).get("candidate") or {}).items()
        if isinstance(values, Mapping) and isinstance(values.get("mean"), int | float)
    }
    total = sum(mean for mean in means.values() if mean > 0)
    ordered = sorted(means.items(), key=lambda item: -item[1])
    return {name: (mean, max(mean, 0.0) / total if total else 0.0) for name, mean in ordered}


def _importance(this: RunFacts, champion: RunFacts) -> DiffSection:
    """Feature by feature, the mean importance and its share; a share that moved by more than the
    explanations' shift threshold is a change, a small wobble between two fits is not."""
    title = "Feature importance"
    if this.importance is None or champion.importance is None:
        missing = [f"v{f.version}" for f in (this, champion) if f.importance is None]
        return DiffSection(title, [], f"not recorded for {' and '.join(missing)}")
    threshold = float(this.importance.get("shift_threshold") or DEFAULT_SHIFT)
    ours, theirs = _shares(this.importance), _shares(champion.importance)
    rows = []
    for name in _union(ours, theirs):
        if name not in ours or name not in theirs:
            value, reference = ours.get(name), theirs.get(name)
            rows.append(_text_row(name, _shown_share(value), _shown_share(reference)))
            continue
        moved = ours[name][1] - theirs[name][1]
        change = f"share {moved:+.1%}" if abs(moved) > threshold else ""
        rows.append(DiffRow(name, _shown_share(ours[name]), _shown_share(theirs[name]), change))
    note = (
        f"permutation importance ({this.importance.get('metric')}) of each run's own model on its holdout;"
        f" a share moved by more than {threshold:.0%} counts as a change"
    )
    return DiffSection(title, rows, note)


def _shown_share(found: tuple[float, float] | None) -> str | None:
    return None if found is None else f"{found[0]:.4f} ({found[1]:.0%})"


def card_diff(
    this: RunFacts, champion: RunFacts, shown: Callable[[str], str] = lambda uri: uri
) -> list[DiffSection]:
    """The sections of the diff of ``this`` against ``champion``; ``shown`` turns a storage URI
    into what people may read (see :func:`ctloop.io.storage.storage_relative`)."""
    metric_names = sorted(n for n in _union(this.metrics, champion.metrics) if n.startswith(METRIC_PREFIXES))
    metrics = [_numeric_row(n, this.metrics.get(n), champion.metrics.get(n)) for n in metric_names]

    def data_tag(facts: RunFacts, tag: str) -> str | None:
        value = facts.tags.get(tag)
        return shown(value) if value and tag == tags.DATA_URI else value

    data = [
        _text_row(label, data_tag(this, tag), data_tag(champion, tag)) for label, tag in DATA_TAGS.items()
    ]
    data += [
        _numeric_row(name, _float(this.params.get(name)), _float(champion.params.get(name)), 0)
        for name in DATA_PARAMS
    ]
    param_names = sorted(n for n in _union(this.params, champion.params) if n not in DATA_PARAMS)
    params = [_text_row(n, this.params.get(n), champion.params.get(n)) for n in param_names]
    ours, theirs = _tuned(this.tags), _tuned(champion.tags)
    params += [
        _text_row(f"tuned {n}", _json(ours.get(n)), _json(theirs.get(n)))
        for n in sorted(_union(ours, theirs))
    ]
    code = [_text_row(label, this.tags.get(tag), champion.tags.get(tag)) for label, tag in CODE_TAGS.items()]
    return [
        DiffSection(
            "Metrics",
            metrics,
            "each run's own model on that run's holdouts: they compare like with like when the"
            " holdout digest is the same",
        ),
        DiffSection("Data", data),
        DiffSection("Params", params, "the estimator's params as the spec set them, and those tuning chose"),
        DiffSection("Feature and training code", code),
        _importance(this, champion),
    ]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def run_facts(mlflow_client: MlflowClient, pipeline: str, version: str) -> RunFacts:
    """The facts of ``version``'s training run; raises MlflowException for a version (or run) that
    does not exist. A run without the importance artifact has ``importance`` None."""
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from ctloop.evaluation.importance import ARTIFACT_PATH

    registered = mlflow_client.get_model_version(pipeline, version)
    if registered.run_id is None:
        raise MlflowException(f"version {version} of {pipeline} has no run")
    run = mlflow_client.get_run(registered.run_id)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(mlflow_client.download_artifacts(run.info.run_id, ARTIFACT_PATH, tmp))
            found = json.loads(path.read_text())
    except (MlflowException, OSError, ValueError):
        found = None  # explanations off, or a run from before they existed
    importance = found if isinstance(found, dict) else None
    return RunFacts(version, dict(run.data.tags), dict(run.data.params), dict(run.data.metrics), importance)
