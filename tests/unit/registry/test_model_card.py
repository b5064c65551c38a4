"""The model card: every section from a full card, grace with a minimal one, escaping, and logging."""

from __future__ import annotations

import copy
import re
import uuid

import pytest

from ctloop.registry.model_card import ARTIFACT_PATH, log_model_card, render_model_card

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SECTIONS = ["Data", "Validation", "Metrics on the shared holdout", "Slices", "Promotion gate", "Lineage"]
SECTIONS += ["Approval", "Promotion", "Feature importance", "Model code", "Tuning"]

FULL = {
    "pipeline": "churn",
    "version": "7",
    "created_at": "2024-05-01T10:00:00+00:00",
    "model_uri": "models:/m-0123abcd",
    "model_sha256": "a" * 64,
    "data": {"uri": "s3://ctloop/snapshots/churn/bbbb.parquet", "sha256": "b" * 64, "rows": 12000},
    "validation": {
        "success": True,
        "evaluated": 14,
        "failed": 0,
        "result_uri": "file:///tmp/validation.json",
    },
    "metrics": {
        "candidate": {"roc_auc": 0.8123, "log_loss": 0.41},
        "champion": {"roc_auc": 0.8011, "log_loss": 0.43},
    },
    "champion_version": "6",
    "slices": [
        {
            "slice": "plan=basic",
            "column": "plan",
            "rows": 812,
            "candidate": {"roc_auc": 0.79},
            "champion": {"roc_auc": 0.8},
            "judged": True,
            "why_not_judged": None,
        },
        {
            "slice": "plan=enterprise",
            "column": "plan",
            "rows": 12,
            "candidate": {"roc_auc": 0.9},
            "champion": None,
            "judged": False,
            "why_not_judged": "12 rows, fewer than min_rows 30",
        },
    ],
    "gate": {
        "mode": "enabled",
        "passed": False,
        "summary": "gate rejected: roc_auc min_improvement",
        "rules": [
            {
                "rule": "rules.0",
                "metric": "roc_auc",
                "kind": "at_least",
                "value": 0.8123,
                "bound": 0.75,
                "passed": True,
                "note": "0.8123 must be >= 0.7500",
            },
            {
                "rule": "rules.1",
                "metric": "roc_auc",
                "kind": "min_improvement",
                "value": 0.0112,
                "bound": 0.02,
                "passed": False,
                "note": "improvement +0.0112 must be >= +0.0200",
            },
            {
                "rule": "latency",
                "metric": "single_p95_ms",
                "kind": "at_most",
                "value": None,
                "bound": 50.0,
                "passed": None,
                "note": "skipped: not measured",
            },
        ],
    },
    "lineage": {
        "trigger": "drift",
        "started_by": "monitor",
        "reason": "share of drifted features 0.62 >= 0.5",
        "alert_id": "alert-42",
        "request_id": "req-9",
        "reports": ["https://reports.example.com/churn/drift/17.html", "s3://ctloop/reports/17.html"],
        "dag_run_id": "asset_triggered__2024-05-01",
        "mlflow_run_id": "0f1e2d3c",
        "code_version": "abc1234",
    },
    "approval": {
        "required": True,
        "outcome": "approved",
        "by": "maria",
        "at": "2024-05-01T12:00:00+00:00",
        "comment": "slice regression accepted",
    },
    "promotion": {"action": "promoted", "previous": "6"},
    "code": {
        "estimator": "lightgbm.LGBMClassifier",
        "features": "features.churn.make_features",
        "features_sha256": "c" * 64,
        "train_function": "features.churn.train",
        "train_function_sha256": "d" * 64,
    },
    "tuning": {
        "tuned_params": {"learning_rate": 0.0731, "num_leaves": 31},
        "metric": "roc_auc",
        "direction": "maximize",
        "best_value": 0.8345,
        "best_trial": 7,
        "trials_completed": 19,
        "trials_failed": 1,
        "seconds": 12.34,
        "validation_rows": 2400,
        "study": "tuning/study.json",
    },
    "importance": {
        "metric": "log_loss",
        "rows": 2000,
        "repeats": 3,
        "seed": 0,
        "shift_threshold": 0.15,
        "candidate": {
            "tenure_months": {"mean": 0.0912, "std": 0.0031},
            "contract": {"mean": 0.0402, "std": 0.0022},
            "region": {"mean": -0.0004, "std": 0.0002},
        },
        "champion": {
            "contract": {"mean": 0.0811, "std": 0.0025},
            "tenure_months": {"mean": 0.0203, "std": 0.0012},
            "region": {"mean": 0.0001, "std": 0.0001},
        },
        "shares": [
            {"feature": "tenure_months", "candidate": 0.694, "champion": 0.199, "change": 0.495},
            {"feature": "contract", "candidate": 0.306, "champion": 0.8, "change": -0.494},
            {"feature": "region", "candidate": 0.0, "champion": 0.001, "change": -0.001},
        ],
        "large_shifts": ["tenure_months", "contract"],
        "summary": "2 feature(s) moved by more than 0.15 of the importance, champion -> candidate:"
        " tenure_months 0.20 -> 0.69, contract 0.80 -> 0.31",
    },
}


def _text(page: str) -> str:
    """The page without tags, to look for values regardless of markup."""
    return re.sub(r"<[^>]+>", " ", page)


def test_full_card_renders_every_section_with_its_values():
    page = render_model_card(FULL)
    text = _text(page)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "not recorded" not in page
    assert "<dt>Started by</dt><dd>monitor</dd>" in page
    expected = [
        "Model card: churn version 7",
        "promoted",
        "models:/m-0123abcd",
        "a" * 64,
        "s3://ctloop/snapshots/churn/bbbb.parquet",
        "b" * 64,
        "12,000",
        "passed",
        "14",
        "file:///tmp/validation.json",
        "champion (version 6)",
        "0.8123",
        "0.8011",
        "+0.0112",
        "-0.0200",  # log_loss 0.41 - 0.43
        "plan=basic",
        "plan=enterprise",
        "812",
        "12 rows, fewer than min_rows 30",
        "no champion",
        "gate rejected: roc_auc min_improvement",
        "improvement +0.0112 must be &gt;= +0.0200",
        "skipped: not measured",
        "drift",
        "share of drifted features 0.62 &gt;= 0.5",
        "alert-42",
        "req-9",
        "asset_triggered__2024-05-01",
        "0f1e2d3c",
        "abc1234",
        "maria",
        "slice regression accepted",
        "version 6",
    ]
    missing = [value for value in expected if value not in text]
    assert not missing
    assert '<a href="https://reports.example.com/churn/drift/17.html"' in page
    assert "<code>s3://ctloop/reports/17.html</code>" in page  # shown, not linked
    assert "<code>file:///tmp/validation.json</code>" in page


def test_rule_verdicts_are_styled_pass_fail_and_skipped():
    page = render_model_card(FULL)
    rows = re.findall(r'<tr(?: class="([^"]*)")?>(.*?)</tr>', page)
    verdicts = {
        found.group(1): (cls, row)
        for cls, row in rows
        if (found := re.search(r"<td>(rules\.\d|latency)</td>", row))
    }
    assert verdicts["rules.1"][0] == "fail"
    assert 'class="badge fail">FAIL<' in verdicts["rules.1"][1]
    assert verdicts["rules.0"][0] == ""
    assert 'class="badge pass">pass<' in verdicts["rules.0"][1]
    assert 'class="badge skip">skipped<' in verdicts["latency"][1]
    assert 'class="badge fail">FAILED<' in page  # the gate's overall verdict


def test_minimal_card_renders_gracefully():
    page = render_model_card({"pipeline": "churn", "version": "1"})
    assert "Model card: churn version 1" in page
    assert page.count("not recorded") >= len(SECTIONS)


def test_card_with_empty_and_none_parts_renders_gracefully():
    card = {
        "pipeline": "churn",
        "version": "2",
        "data": {"uri": None, "sha256": None, "rows": None},
        "validation": {"success": None},
        "metrics": {"candidate": {"roc_auc": 0.7}, "champion": None},
        "champion_version": None,
        "slices": None,
        "gate": {"mode": "dry_run", "passed": True, "rules": None},
        "lineage": {"reports": None},
        "approval": {"required": False, "outcome": "not_required"},
        "promotion": {"action": None, "previous": None},
    }
    page = render_model_card(card)
    assert "No champion to compare with." in page
    assert "decision recorded, never promotes" in page
    assert "gate passed" in page


@pytest.mark.parametrize(
    "path",
    [
        ("lineage", "reason"),
        ("approval", "comment"),
        ("gate", "summary"),
        ("pipeline",),
        ("version",),
    ],
)
def test_untrusted_values_are_escaped(path):
    card = copy.deepcopy(FULL)
    target = card
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = XSS
    page = render_model_card(card)
    assert "<script" not in page.lower()
    assert ESCAPED in page


def test_slice_labels_rule_notes_and_metric_names_are_escaped():
    card = copy.deepcopy(FULL)
    card["slices"][0]["slice"] = XSS
    card["slices"][1]["why_not_judged"] = XSS
    card["gate"]["rules"][0]["note"] = XSS
    card["metrics"]["candidate"][XSS] = 1.0
    page = render_model_card(card)
    assert "<script" not in page.lower()
    assert page.count(ESCAPED) >= 4


def test_only_http_reports_become_links():
    card = copy.deepcopy(FULL)
    card["lineage"]["reports"] = [
        "javascript:alert(1)",
        " JavaScript:alert(2)",
        "java\tscript:alert(3)",
        "data:text/html,<script>alert(4)</script>",
        "https://reports.example.com/a'onmouseover='alert(5)",
    ]
    page = render_model_card(card)
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == ["https://reports.example.com/a&#39;onmouseover=&#39;alert(5)"]
    assert "<code>javascript:alert(1)</code>" in page
    assert "<script" not in page.lower()


def test_page_is_self_contained():
    page = render_model_card(FULL)
    lowered = page.lower()
    for forbidden in ("<script", "src=", "<link", "@import", "url(", "<iframe"):
        assert forbidden not in lowered
    assert "content-security-policy" in lowered
    assert "default-src 'none'" in page


def test_log_model_card_writes_the_run_artifact():
    import mlflow

    from ctloop.registry import mlflow_store as registry
    from ctloop.settings import load_settings

    settings = load_settings()
    client = registry.client(settings)
    experiment = registry.ensure_experiment(
        client, f"card_{uuid.uuid4().hex[:8]}", settings.mlflow_artifact_root
    )
    run_id = registry.ensure_run(client, experiment, "dag/card-run", {})
    page = render_model_card(FULL)

    assert log_model_card(client, run_id, page) == ARTIFACT_PATH
    assert log_model_card(client, run_id, page) == ARTIFACT_PATH  # a retried task rewrites it

    assert mlflow.artifacts.load_text(f"runs:/{run_id}/{ARTIFACT_PATH}") == page
    assert [a.path for a in client.list_artifacts(run_id)] == [ARTIFACT_PATH]


def test_recent_holdout_metrics_and_where_relative_rules_were_judged():
    card = copy.deepcopy(FULL)
    card["recent_metrics"] = {"candidate": {"roc_auc": 0.9312}, "champion": {"roc_auc": 0.5123}}
    card["gate"]["relative_on"] = "recent_holdout"
    card["gate"]["relative_on_why"] = "alert-triggered run; gates.recent_holdout.judge_relative is alert"
    html = render_model_card(card)
    recent = html[html.index("Metrics on the recent holdout") :]
    assert re.search(r"<td>roc_auc</td><td class=\"num\">0\.9312</td><td class=\"num\">0\.5123</td>", recent)
    assert "judged on the recent holdout: alert-triggered run" in recent


def test_an_unused_recent_holdout_says_why():
    card = copy.deepcopy(FULL)
    card["recent_note"] = "no labeled production batches yet"
    html = render_model_card(card)
    recent = html[html.index("Metrics on the recent holdout") :]
    assert "Not used: no labeled production batches yet." in recent


def test_the_training_window_and_the_alternatives_tried():
    card = copy.deepcopy(FULL)
    card["data"]["window"] = "batches:2"
    card["data"]["window_selection"] = {
        "metric": "roc_auc",
        "recent_rows": 1200,
        "why": "batches:2 scored best on the recent holdout",
        "candidates": [
            {"window": "all", "rows": 9000, "score": 0.5512, "status": "scored", "note": ""},
            {"window": "batches:2", "rows": 2000, "score": 0.9113, "status": "chosen", "note": ""},
            {"window": "batches:4", "rows": 0, "score": None, "status": "skipped", "note": XSS},
            {"window": "since:b07", "rows": 1600, "score": 0.9101, "status": "scored", "note": ""},
        ],
        "change_point": "change point b07: champion v1's roc_auc per served batch",
    }
    html = render_model_card(card)
    assert "<dt>Trained on</dt><dd>batches:2</dd>" in html
    since = "<p>Since the change point: change point b07: champion v1&#39;s roc_auc per served batch</p>"
    assert since in html
    assert re.search(r"<td>since:b07</td><td class=\"num\">1,600</td><td class=\"num\">0\.9101</td>", html)
    assert "batches:2 scored best on the recent holdout" in html
    assert re.search(r"<td>all</td><td class=\"num\">9,000</td><td class=\"num\">0\.5512</td>", html)
    assert '<span class="badge pass">chosen</span>' in html
    assert ESCAPED in html
    assert XSS not in html


def test_a_card_without_a_window_choice_names_no_alternatives():
    html = render_model_card(copy.deepcopy(FULL))
    assert "Trained on" not in html
    assert "on the recent holdout (" not in html


def _section(page: str, title: str) -> str:
    """The HTML of one section of the card."""
    start = page.index(f"<h2>{title}</h2>")
    return page[start : page.index("</section>", start)]


def test_feature_importance_beside_the_champion_sorted_with_large_shifts_marked():
    section = _section(render_model_card(FULL), "Feature importance")
    rows = re.findall(r"<tr( class=\"warn\")?><td>([^<]+?)\s*(?:<span|</td>)", section)
    assert rows == [(' class="warn"', "tenure_months"), (' class="warn"', "contract"), ("", "region")]
    assert "<th>champion (version 6)</th>" in section
    assert re.search(
        r"<td>tenure_months <span class=\"badge warn\">large shift</span></td>"
        r"<td class=\"num\">0\.0912 ± 0\.0031</td>"
        r"<td class=\"num\">0\.694</td><td class=\"num\">0\.0203 ± 0\.0012</td><td class=\"num\">0\.199</td>"
        r"<td class=\"num\">\+0\.495</td>",
        section,
    )
    assert section.count("large shift</span>") == 3  # the summary's badge and two rows
    assert "2,000 rows of the shared holdout (3 repeats, seed 0)" in section
    assert "how much log_loss rises" in section
    assert "tenure_months 0.20 -&gt; 0.69, contract 0.80 -&gt; 0.31" in section


def test_feature_importance_without_a_champion_shows_the_candidate_alone():
    card = copy.deepcopy(FULL)
    importance = card["importance"]
    importance.update(
        champion=None, shares=[], large_shifts=[], summary="most important: tenure_months (69%)"
    )
    section = _section(render_model_card(card), "Feature importance")
    assert "No champion to compare with." in section
    assert "share</th>" not in section
    assert "badge warn" not in section
    assert '<td>tenure_months</td><td class="num">0.0912 ± 0.0031</td></tr>' in section


def test_missing_code_parts_and_no_tuning_read_not_recorded():
    card = copy.deepcopy(FULL)
    card["code"] = {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}
    del card["tuning"], card["importance"]
    page = render_model_card(card)
    code = _section(page, "Model code")
    assert "<code>sklearn.ensemble.HistGradientBoostingClassifier</code>" in code
    assert code.count("not recorded") == 2  # feature code and training function
    for title in ("Tuning", "Feature importance"):
        assert '<p class="none">not recorded</p>' in _section(page, title)


def test_tuning_shows_best_params_metric_value_and_trials():
    tuning = _section(render_model_card(FULL), "Tuning")
    text = _text(tuning)
    for expected in (
        "roc_auc (maximize)",
        "2,400 rows",
        "0.8345",
        "trial 7",
        "19 completed, 1 failed, in",
        "12.3 s",
        "tuning/study.json",
    ):
        assert expected in text
    assert '<tr><td>learning_rate</td><td class="num">0.0731</td></tr>' in tuning
    assert '<tr><td>num_leaves</td><td class="num">31</td></tr>' in tuning


PER_CLASS = {
    "candidate": {
        "low": {"precision": 0.81, "recall": 0.7, "f1": 0.7511, "support": 1200},
        "high": {"precision": 0.6, "recall": 0.5, "f1": 0.5455, "support": 30},
    },
    "champion": {
        "low": {"precision": 0.7, "recall": 0.72, "f1": 0.7099, "support": 1200},
        "high": {"precision": 0.65, "recall": 0.4, "f1": 0.4952, "support": 30},
    },
}


def test_per_class_metrics_candidate_beside_champion():
    card = copy.deepcopy(FULL)
    card["per_class"] = PER_CLASS
    section = _section(render_model_card(card), "Per-class metrics on the shared holdout")
    assert re.search(
        r"<tr><td>low</td><td class=\"num\">1,200</td>\s*<td class=\"num\">0\.8100<br><span class=\"muted\">"
        r"0\.7000 · \+0\.1100</span></td>\s*<td class=\"num\">0\.7000<br><span class=\"muted\">"
        r"0\.7200 · -0\.0200",
        section,
    )
    assert '<td>high</td><td class="num">30</td>' in section
    assert "0.4952 · +0.0503" in section


def test_per_class_metrics_appear_only_when_recorded():
    assert "Per-class metrics" not in render_model_card(FULL)
    card = copy.deepcopy(FULL)
    card["per_class"] = {"candidate": PER_CLASS["candidate"], "champion": None}
    section = _section(render_model_card(card), "Per-class metrics on the shared holdout")
    assert section.count("no champion") == 6


def test_hostile_feature_names_class_labels_params_and_code_paths_are_escaped():
    card = copy.deepcopy(FULL)
    importance = card["importance"]
    importance["candidate"][XSS] = importance["candidate"].pop("tenure_months")
    importance["champion"][XSS] = importance["champion"].pop("tenure_months")
    importance["shares"][0]["feature"] = XSS
    importance["large_shifts"] = [XSS, "contract"]
    importance["summary"] = f"1 feature(s) moved: {XSS}"
    card["per_class"] = {"candidate": {XSS: PER_CLASS["candidate"]["low"]}, "champion": None}
    card["tuning"]["tuned_params"] = {XSS: XSS}
    card["code"]["features"] = XSS
    card["code"]["estimator"] = XSS
    page = render_model_card(card)
    assert "<script" not in page.lower()
    importance_section = _section(page, "Feature importance")
    assert importance_section.count(ESCAPED) == 2  # the summary and the feature's row
    assert f'<tr class="warn"><td>{ESCAPED} <span class="badge warn">large shift</span>' in importance_section
    assert page.count(ESCAPED) >= 7
