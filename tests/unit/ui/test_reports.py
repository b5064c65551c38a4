"""Reports are addressed by id, never by a path, and served sandboxed."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from ctloop.io.storage import home_storage
from ctloop.settings import load_settings
from ctloop.training.steps import RunContext
from ctloop.ui.reports import (
    CARD_CSP,
    REPORT,
    REPORT_CSP,
    check_run_id,
    read_output,
    run_prefix,
    untrusted_html,
)

RUN = "scheduled__2026-01-02T03:00:00+00:00"


@pytest.mark.parametrize(
    "run_id",
    ["..", ".", ".hidden", "../../etc/passwd", "a/b", "a\\b", "", "x" * 251, "a%2Fb", "a b", "a\x00b", "é"],
)
def test_anything_but_a_run_id_is_refused(run_id: str) -> None:
    with pytest.raises(HTTPException) as refused:
        check_run_id(run_id)
    assert refused.value.status_code == 400


@pytest.mark.parametrize(
    "run_id",
    [RUN, "manual__2026-01-02T03:04:05.123456+00:00", "asset_triggered__2026_x_AbC9", "alert__PD-4711"],
)
def test_airflows_run_ids_are_accepted(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


def test_the_key_is_the_one_the_monitor_wrote_to(tmp_path) -> None:
    settings = load_settings({"CTLOOP_HOME": str(tmp_path)})
    monitor = RunContext(dag_id="churn__monitor", run_id=RUN, reason="schedule")
    assert run_prefix("churn", RUN) == monitor.storage_prefix
    assert read_output(settings, "churn", RUN, REPORT) is None
    home_storage(settings).write_bytes(f"{monitor.storage_prefix}/report.html", b"<html>r</html>")
    assert read_output(settings, "churn", RUN, REPORT) == b"<html>r</html>"
    assert read_output(settings, "other", RUN, REPORT) is None


def test_untrusted_html_runs_only_in_an_opaque_origin() -> None:
    response = untrusted_html(b"<script>x</script>", REPORT_CSP)
    csp = response.headers["content-security-policy"]
    assert csp.split(";")[0] == "sandbox allow-scripts"
    assert "allow-same-origin" not in csp
    assert "connect-src" not in csp
    assert "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.body == b"<script>x</script>"
    assert CARD_CSP.split(";")[0] == "sandbox"  # a model card may not even run scripts
