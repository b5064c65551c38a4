"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def example_spec(name: str, data_uri: str, **overrides) -> dict:
    """The example churn spec as a dict, renamed and pointed at ``data_uri``."""
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec.update(name=name, data={"uri": data_uri, "format": "csv"}, **overrides)
    spec["estimator"]["params"] = {"max_iter": 60, "random_state": 0}
    return spec
