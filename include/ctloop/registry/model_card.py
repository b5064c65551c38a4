"""The model card: one readable HTML page per registered model version, logged beside the model.

It answers a reviewer's questions without MLflow's UI: what data, which checks, how it compared
with the champion overall, per class and per slice, which features it relies on against the
champion, why the gate decided as it did, what code built it (and how it was tuned), what
started the run and who approved it. Values come from data and from people (reasons, slice
labels, feature names, comments), so every one is escaped; the page has no script and loads
nothing, and its CSP forbids both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ctloop.evaluation.importance import Importances
from ctloop.gating.approval import Approval
from ctloop.gating.decision import GateVerdict, SliceResult
from ctloop.rendering import render

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_PATH = "model_card.html"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CardData(_Part):
    uri: str | None
    sha256: str | None
    rows: int | None
    window: str | None = None  # what the candidate trained on: all, batches:2, ...
    window_selection: dict[str, Any] | None = None  # the choice among windows, when one was made
    sample: str | None = None  # what the data.max_rows sample did, when the spec sets one


class CardValidation(_Part):
    success: bool
    evaluated: int | float | None
    failed: int
    result_uri: str | None


class CardMetrics(_Part):
    candidate: dict[str, float] | None
    champion: dict[str, float] | None


class CardGate(_Part):
    mode: str
    passed: bool
    summary: str
    rules: list[GateVerdict]
    relative_on: str = "frozen_holdout"
    relative_on_why: str = ""


class CardLineage(_Part):
    trigger: str | None
    started_by: str | None
    reason: str | None
    alert_id: str | None
    request_id: str | None
    reports: list[str]
    dag_run_id: str | None
    mlflow_run_id: str
    code_version: str | None


class CardPromotion(_Part):
    action: str
    previous: str | None


class CardCode(_Part):
    """The code the model was built with: the estimator class and the user's own feature and
    training code, each with the sha256 of its module's source (None: not recorded)."""

    estimator: str | None
    features: str | None = None
    features_sha256: str | None = None
    train_function: str | None = None
    train_function_sha256: str | None = None


class CardTuning(BaseModel):
    """The tuning search's summary, as the run's tag records it; fields the card does not show are
    ignored, so a summary that grows keeps rendering."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tuned_params: dict[str, Any]
    metric: str
    best_value: float | None
    direction: str | None = None
    best_trial: int | None = None
    trials_completed: int | None = None
    trials_failed: int | None = None
    seconds: float | None = None
    validation_rows: int | None = None
    study: str | None = None  # the run's artifact with every trial


PerClass = dict[str, dict[str, dict[str, float | int]]]
"""Per-class metrics of a multiclass model: {"candidate"|"champion": {label: {metric: value}}}."""


class ModelCard(_Part):
    """What a model card says about one version; a part the run never reached is None (or
    empty), and the page reads "not recorded" there."""

    pipeline: str
    version: str
    created_at: str
    model_uri: str
    model_sha256: str | None
    data: CardData
    validation: CardValidation
    metrics: CardMetrics
    recent_metrics: CardMetrics | None = None
    recent_note: str = ""
    champion_version: str | None
    slices: list[SliceResult]
    gate: CardGate | None
    lineage: CardLineage
    approval: Approval
    promotion: CardPromotion
    code: CardCode | None = None
    tuning: CardTuning | None = None
    importance: Importances | None = None
    per_class: PerClass | None = None


def _status(card: dict[str, Any]) -> tuple[str, str]:
    """The outcome a reader looks for first, as a badge's label and kind: the promotion action,
    else the gate's verdict."""
    action = (card.get("promotion") or {}).get("action")
    passed = (card.get("gate") or {}).get("passed")
    if action:
        lowered = str(action).lower()
        if any(word in lowered for word in ("reject", "fail", "timed_out")):
            return str(action), "fail"
        return str(action), "pass" if lowered.startswith("promot") else "warn"
    if passed is False:
        return "gate failed", "fail"
    if passed is True:
        return "gate passed", "pass"
    return "not recorded", "skip"


def _names(metrics: Iterable[Any]) -> list[str]:
    """Every metric named in ``metrics`` (dicts of name to value), in order of first appearance."""
    names: list[str] = []
    for values in metrics:
        if isinstance(values, dict):
            names += [name for name in values if name not in names]
    return names


def _importance_rows(importance: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per feature in the candidate's order of importance (a feature only the champion
    has comes last): both models' importance, their shares, and whether the share moved a lot."""
    candidate, champion = importance.get("candidate") or {}, importance.get("champion") or {}
    shares = {s.get("feature"): s for s in importance.get("shares") or [] if isinstance(s, dict)}
    large = set(importance.get("large_shifts") or [])
    return [
        {
            "feature": name,
            "candidate": candidate.get(name) or {},
            "champion": champion.get(name) or {},
            "share": shares.get(name) or {},
            "large": name in large,
        }
        for name in _names([candidate, champion])
    ]


def render_model_card(card: BaseModel | dict[str, Any]) -> str:
    """A self-contained HTML page for one model version; missing parts read "not recorded"."""
    content: dict[str, Any] = card.model_dump(mode="json") if isinstance(card, BaseModel) else card
    metrics = content.get("metrics") or {}
    recent = content.get("recent_metrics") or {}
    slices = [s for s in content.get("slices") or [] if isinstance(s, dict)]
    per_class = content.get("per_class") or {}
    return render(
        "model_card.html",
        card=content,
        status=_status(content),
        metric_names=_names([metrics.get("candidate"), metrics.get("champion")]),
        recent_metric_names=_names([recent.get("candidate"), recent.get("champion")]),
        slice_metric_names=_names(m for s in slices for m in (s.get("candidate"), s.get("champion"))),
        class_labels=_names([per_class.get("candidate"), per_class.get("champion")]),
        importance_rows=_importance_rows(content.get("importance") or {}),
    )


def log_model_card(mlflow_client: MlflowClient, run_id: str, html: str) -> str:
    """Log the card as the run's ``model_card.html`` artifact; returns that artifact path.

    Logging again in a retried task overwrites the same artifact, so the run keeps one card.
    """
    mlflow_client.log_text(run_id, html, ARTIFACT_PATH)
    return ARTIFACT_PATH
