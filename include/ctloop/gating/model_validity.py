"""Is the registered artifact usable as logged: does it load, take the spec's features, and
predict on its own input example? A model that passes every metric but fails here would break
the scoring DAG the moment it became champion."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ctloop.gating.decision import GateVerdict
from ctloop.registry.model_trust import DEFAULT, TrustPolicy

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from ctloop.settings import Settings

ERROR_CHARS = 300  # an error quoted in a note: one line, this long at most


def check_validity(
    model_uri: str,
    expected_features: list[str],
    settings: Settings,
    expected_sha256: str | None,
    trust: TrustPolicy = DEFAULT,
) -> tuple[list[GateVerdict], PyFuncModel | None]:
    """Three ``validity`` verdicts (``model_load``, ``signature``, ``input_example``) and the loaded
    pyfunc model, or None when it did not load (the other two verdicts are then skipped).

    The model is returned so the latency rule can time the same loaded object instead of loading
    it again. Nothing here raises for a bad model: every problem is a failed verdict.
    """
    from ctloop.registry.mlflow_store import load_pyfunc

    try:
        model = load_pyfunc(settings, model_uri, expected_sha256, trust)
    except Exception as exc:  # any load failure is the verdict, whatever raised it
        verdicts = [_verdict("model_load", "loads", False, f"{model_uri} did not load: {_one_line(exc)}")]
        skipped = "skipped: the model did not load"
        return verdicts + [
            _verdict("signature", "matches_features", None, skipped),
            _verdict("input_example", "predicts", None, skipped),
        ], None
    return [
        _verdict("model_load", "loads", True, f"{model_uri} loaded with mlflow.pyfunc: passed"),
        _signature(model, expected_features),
        _input_example(model),
    ], model


def _verdict(metric: str, kind: str, passed: bool | None, note: str, **extra: Any) -> GateVerdict:
    return GateVerdict.model_validate(
        {
            "rule": "validity",
            "metric": metric,
            "kind": kind,
            "value": extra.pop("value", None),
            "bound": extra.pop("bound", None),
            "passed": passed,
            "note": note,
            **extra,
        }
    )


def _signature(model: PyFuncModel, expected: list[str]) -> GateVerdict:
    schema = model.metadata.get_input_schema()  # type: ignore[no-untyped-call]  # MLflow leaves it unannotated
    if schema is None:
        return _verdict(
            "signature", "matches_features", False, "failed: the model was logged without a signature"
        )
    names = [str(n) for n in schema.input_names()]
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    passed = not missing and not extra
    if passed:
        note = f"the signature takes the {len(expected)} feature columns of the spec: passed"
    else:
        note = (
            f"the signature differs from the spec's features (missing: {', '.join(missing) or 'none'};"
            f" extra: {', '.join(extra) or 'none'}): failed"
        )
    return _verdict(
        "signature",
        "matches_features",
        passed,
        note,
        value=float(len(missing) + len(extra)),
        bound=0.0,
        missing=missing,
        extra=extra,
    )


def _input_example(model: PyFuncModel) -> GateVerdict:
    example = model.input_example
    if example is None:
        return _verdict(
            "input_example", "predicts", False, "failed: no input example was logged, or it could not be read"
        )
    try:
        predictions = model.predict(example)
    except Exception as exc:  # the example is the user's first call: any error is the verdict
        return _verdict(
            "input_example", "predicts", False, f"predicting the input example failed: {_one_line(exc)}"
        )
    rows, returned = len(example), len(predictions)
    passed = returned == rows
    note = (
        f"{returned} predictions for the {rows} rows of the input example: {'passed' if passed else 'failed'}"
    )
    return _verdict("input_example", "predicts", passed, note, value=float(returned), bound=float(rows))


def _one_line(error: Exception) -> str:
    """The error's type and message on one line, cut to ``ERROR_CHARS``: notes end up in tags."""
    text = re.sub(r"\s+", " ", f"{type(error).__name__}: {error}").strip()
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
