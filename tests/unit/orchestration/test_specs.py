"""The specs a DAG file builds from: where they are read, and what happens to an invalid one."""

from __future__ import annotations

import shutil

import pytest

from ctloop.errors import SpecError
from ctloop.orchestration.specs import pipelines_dir, raise_for_invalid_specs, valid_specs
from ctloop.settings import load_settings
from tests.helpers import REPO


@pytest.mark.parametrize("value", [None, "", "/srv/pipelines"])
def test_dag_files_read_the_pipelines_dir_the_settings_give(monkeypatch, value):
    """DAG files read the directory without pydantic-settings; it must be the same directory."""
    if value is None:
        monkeypatch.delenv("CTLOOP_PIPELINES_DIR", raising=False)
    else:
        monkeypatch.setenv("CTLOOP_PIPELINES_DIR", value)
    assert pipelines_dir() == load_settings().pipelines_dir


def test_an_invalid_spec_is_skipped_with_a_warning_and_raised_by_name(tmp_path, monkeypatch):
    example = REPO / "include" / "pipelines" / "churn.yaml"
    shutil.copy(example, tmp_path)
    broken = example.read_text().replace("name: churn", "name: broken")
    (tmp_path / "broken.yaml").write_text(broken.replace("metric: log_loss", "metric: logloss"))
    monkeypatch.setenv("CTLOOP_PIPELINES_DIR", str(tmp_path))
    with pytest.warns(UserWarning, match=r"broken.yaml: gates.rules.1.metric: 'logloss'"):
        assert [spec.name for spec in valid_specs()] == ["churn"]
    with pytest.raises(SpecError, match=r"broken.yaml: gates.rules.1.metric: 'logloss' is not a metric"):
        raise_for_invalid_specs()
