"""The diff of a version against the champion: what moved in metrics, data, params, code and
importance, and nothing else; and the page that shows it, escaped, around the sandboxed card."""

from __future__ import annotations

import json

from ctloop.registry import tags
from ctloop.spec.models import PipelineSpec
from ctloop.ui import pages
from ctloop.ui.card_diff import DiffRow, DiffSection, RunFacts, card_diff
from ctloop.ui.links import Urls
from tests.helpers import example_spec

HOSTILE = '<script>alert("x")</script>'
SPEC = PipelineSpec.model_validate(example_spec("churn", "data"))
URLS = Urls.of("/ctloop", mlflow="http://127.0.0.1:5000")


def _importance(means: dict[str, float], threshold: float = 0.15) -> dict:
    candidate = {name: {"mean": mean, "std": 0.0} for name, mean in means.items()}
    return {"metric": "log_loss", "shift_threshold": threshold, "candidate": candidate, "champion": None}


def _facts(version: str, **changes) -> RunFacts:
    recorded = {
        tags.DATA_SHA256: "a" * 64,
        tags.DATA_URI: "/home/ctloop/storage/snapshots/churn/aaaa.parquet",
        tags.DATA_WINDOW: "all",
        tags.HOLDOUT_DIGEST: "d1",
        tags.FEATURES_CODE: "features.churn.make",
        tags.FEATURES_SHA256: "e" * 64,
        tags.TUNING: json.dumps({"tuned_params": {"num_leaves": 31}, "metric": "roc_auc"}),
    }
    params = {
        tags.ESTIMATOR: "sklearn.linear_model.LogisticRegression",
        "estimator.C": "1.0",
        tags.TRAIN_ROWS: "1000",
        tags.HOLDOUT_ROWS: "250",
    }
    metrics = {"holdout_roc_auc": 0.81, "champion_holdout_roc_auc": 0.70, "recent_roc_auc": 0.79}
    importance = _importance({"tenure_months": 0.08, "region": 0.02, "plan": 0.0})
    recorded |= changes.pop("tags", {})
    params |= changes.pop("params", {})
    metrics |= changes.pop("metrics", {})
    return RunFacts(version, recorded, params, metrics, changes.pop("importance", importance))


def _section(sections: list[DiffSection], title: str) -> DiffSection:
    (found,) = [s for s in sections if s.title == title]
    return found


def _changed(section: DiffSection) -> dict[str, DiffRow]:
    return {row.name: row for row in section.rows if row.changed}


def test_two_identical_runs_differ_in_nothing() -> None:
    sections = card_diff(_facts("3"), _facts("2"))
    assert [s.title for s in sections] == [
        "Metrics",
        "Data",
        "Params",
        "Feature and training code",
        "Feature importance",
    ]
    assert [s.changes for s in sections] == [0, 0, 0, 0, 0]
    assert _section(sections, "Metrics").rows  # shown, unchanged


def test_a_changed_metric_shows_both_values_and_the_signed_difference() -> None:
    metrics = _section(card_diff(_facts("3", metrics={"holdout_roc_auc": 0.85}), _facts("2")), "Metrics")
    assert _changed(metrics) == {"holdout_roc_auc": DiffRow("holdout_roc_auc", "0.8500", "0.8100", "+0.0400")}
    names = [row.name for row in metrics.rows]
    assert (
        "champion_holdout_roc_auc" not in names
    )  # the champion of each run's own training is not this champion


def test_a_metric_only_one_run_recorded_is_a_change() -> None:
    metrics = card_diff(_facts("3", metrics={"recent_f1": 0.5}), _facts("2"))[0]
    assert _changed(metrics)["recent_f1"] == DiffRow("recent_f1", "0.5000", None, "only this version")


def test_changed_data_params_tuned_params_and_code_digest_are_each_named() -> None:
    this = _facts(
        "3",
        tags={
            tags.DATA_SHA256: "b" * 64,
            tags.DATA_WINDOW: "batches:2",
            tags.FEATURES_SHA256: "f" * 64,
            tags.TUNING: json.dumps({"tuned_params": {"num_leaves": 63}}),
        },
        params={"estimator.C": "0.5", tags.TRAIN_ROWS: "1200"},
    )
    sections = card_diff(this, _facts("2"))
    data = _changed(_section(sections, "Data"))
    assert set(data) == {"snapshot sha256", "window trained on", tags.TRAIN_ROWS}
    assert data[tags.TRAIN_ROWS].change == "+200"
    assert data["window trained on"] == DiffRow("window trained on", "batches:2", "all", "changed")
    params = _changed(_section(sections, "Params"))
    assert params == {
        "estimator.C": DiffRow("estimator.C", "0.5", "1.0", "changed"),
        "tuned num_leaves": DiffRow("tuned num_leaves", "63", "31", "changed"),
    }
    code = _changed(_section(sections, "Feature and training code"))
    assert set(code) == {"feature code sha256"}


def test_the_snapshot_uri_is_shown_as_the_caller_says_never_as_recorded() -> None:
    this = _facts("3", tags={tags.DATA_URI: "/home/ctloop/storage/snapshots/churn/bbbb.parquet"})
    data = _section(
        card_diff(this, _facts("2"), lambda uri: "storage://" + uri.rsplit("storage/", 1)[1]), "Data"
    )
    (row,) = [r for r in data.rows if r.name == "snapshot"]
    assert (row.value, row.champion) == (
        "storage://snapshots/churn/bbbb.parquet",
        "storage://snapshots/churn/aaaa.parquet",
    )


def test_an_importance_share_that_moved_past_the_threshold_is_a_change_a_wobble_is_not() -> None:
    # tenure's share: 0.8 for the champion, 0.25 here (moved); region's 0.2 -> 0.75 (moved)
    this = _facts("3", importance=_importance({"tenure_months": 0.02, "region": 0.06, "plan": 0.0}))
    importance = _section(card_diff(this, _facts("2")), "Feature importance")
    changed = _changed(importance)
    assert set(changed) == {"tenure_months", "region"}
    assert changed["region"].change == "share +55.0%"
    assert [row.name for row in importance.rows][0] == "region"  # this version's order of importance
    wobble = _facts("3", importance=_importance({"tenure_months": 0.079, "region": 0.021, "plan": 0.0}))
    assert _section(card_diff(wobble, _facts("2")), "Feature importance").changes == 0


def test_importance_missing_on_either_run_says_which() -> None:
    importance = _section(card_diff(_facts("3"), _facts("2", importance=None)), "Feature importance")
    assert importance.rows == []
    assert importance.note == "not recorded for v2"


def test_an_unreadable_tuning_tag_is_no_tuned_params() -> None:
    this = _facts("3", tags={tags.TUNING: '{"tuned_params": {"num'})
    params = _changed(_section(card_diff(this, _facts("2")), "Params"))
    assert params == {"tuned num_leaves": DiffRow("tuned num_leaves", None, "31", "only the champion")}


def test_the_version_page_escapes_the_diff_and_frames_the_card_sandboxed() -> None:
    this = _facts("3", params={"estimator.C": HOSTILE}, metrics={"holdout_roc_auc": 0.85})
    html = pages.version(URLS, SPEC, "3", "2", card_diff(this, _facts("2")))
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    assert "2 differences (metrics 1, params 1)" in html
    frame = (
        '<iframe class="report" sandbox referrerpolicy="no-referrer" src="/ctloop/pipelines/churn/versions/3'
    )
    assert f'{frame}/model-card"' in html
    assert 'href="/ctloop/pipelines/churn/ledger"' in html
    assert 'href="/ctloop/pipelines/churn/versions/2"' in html  # the champion's own page


def test_the_champions_own_page_says_so_instead_of_diffing() -> None:
    html = pages.version(URLS, SPEC, "2", "2", None)
    assert "v2 is the champion: nothing to compare with." in html
    assert "<h3>" not in html
    assert "No champion yet" in pages.version(URLS, SPEC, "2", None, None)
    assert "could not be read" in pages.version(URLS, SPEC, "3", "2", None)
