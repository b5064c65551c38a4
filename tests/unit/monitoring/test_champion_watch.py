"""The champion against the champion it replaced, and a challenger against the champion, on
generated rows both scored: a clearly worse new champion is rolled back, an equal one holds, too
few labels leave it undecided; a challenger is better, worse or no different; which champion
is watched at all, read from a real ledger; and a promotion its gate judged on an alert's metrics
is watched on them (a fix of a moved decision threshold that ranks a little worse is kept), as a
challenger its own gate so judged is compared on them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctloop.gating.decision import DECISION_ARTIFACT, GateDecision
from ctloop.monitoring import monitor_run
from ctloop.monitoring.champion_watch import (
    Side,
    compare,
    compare_challenger,
    gate_judged_on,
    paired_rows,
    promoted_on,
    watched_promotion,
)
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.rollback import rollback
from ctloop.scoring.prediction_log import CHALLENGER, PREVIOUS, SERVED
from ctloop.settings import Settings, load_settings
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import regression_spec


def _spec(monitoring_metric: str = "roc_auc", max_regression: float = 0.01, **watch: Any) -> PipelineSpec:
    monitoring = {"quality": {"metric": monitoring_metric}, "watch": {"min_labels": 500, **watch}}
    spec = example_spec("watched", "data", monitoring=monitoring)
    spec["gates"]["alert_metrics"] = {"max_regression": max_regression}
    return PipelineSpec.model_validate(spec)


SPEC = _spec()
TARGET = SPEC.columns.target


def _scores(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Probabilities that separate the classes by ``signal`` (0: a coin toss)."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=len(y)))))


def _labeled(rows: int, champion_signal: float, previous_signal: float, **columns: Any) -> pd.DataFrame:
    """Labeled prediction-log rows served by v2 and shadow-scored by v1."""
    y = np.random.default_rng(0).integers(0, 2, size=rows)
    served, shadow = _scores(y, champion_signal, 1), _scores(y, previous_signal, 2)
    return _log(y, served, shadow, batch_id="b0001", **columns)


def _log(y: np.ndarray, served: np.ndarray, shadow: np.ndarray, **columns: Any) -> pd.DataFrame:
    """Labeled prediction-log rows: v2 served ``served`` scores, v1 shadow-scored ``shadow``."""
    return pd.DataFrame(
        {
            TARGET: y,
            "prediction": (served > 0.5).astype(int),
            "score": served,
            "model_version": "2",
            "shadow_prediction": (shadow > 0.5).astype(int),
            "shadow_score": shadow,
            "shadow_version": "1",
            **columns,
        }
    )


def test_a_clearly_worse_new_champion_is_rolled_back_with_its_evidence() -> None:
    comparison = compare(SPEC, _labeled(2000, champion_signal=0.2, previous_signal=2.0), "2", "1")

    assert comparison.verdict == "rollback"
    assert comparison.versions == {"champion": "2", "previous": "1"}
    assert (comparison.rows, comparison.metric, comparison.confidence) == (2000, "roc_auc", 0.95)
    assert comparison.values is not None
    champion, previous = comparison.values["champion"], comparison.values["previous"]
    assert previous - champion > 0.3
    assert comparison.difference == pytest.approx(champion - previous)
    assert comparison.interval is not None
    low, high = comparison.interval
    assert low <= comparison.difference <= high < 0
    assert comparison.why.startswith(
        f"worse: roc_auc of v2 (champion) {champion:.4f} against v1 (previous) {previous:.4f}"
        " on the same 2,000 labeled rows"
    )
    assert f"95% interval [{low:+.4f}, {high:+.4f}], wholly below +0.0000 (minus" in comparison.why


def test_an_equally_good_new_champion_holds_and_the_verdict_is_seeded() -> None:
    labeled = _labeled(2000, champion_signal=1.5, previous_signal=1.5)

    comparison = compare(SPEC, labeled, "2", "1")

    assert comparison.verdict == "hold"
    assert comparison.interval is not None
    assert comparison.interval[0] < 0 < comparison.interval[1]
    assert comparison.why.startswith("no significant difference: roc_auc of v2 (champion)")
    assert compare(SPEC, labeled, "2", "1") == comparison


def test_a_margin_tolerates_a_small_regression() -> None:
    labeled = _labeled(4000, champion_signal=1.3, previous_signal=1.5)
    assert compare(SPEC, labeled, "2", "1").verdict == "rollback"

    tolerant = _spec(margin=0.2)
    comparison = compare(tolerant, labeled, "2", "1")
    assert comparison.verdict == "hold"
    assert "neither wholly below -0.2000 nor above +0.2000" in comparison.why


def test_too_few_labeled_rows_leave_it_undecided_and_say_so() -> None:
    comparison = compare(SPEC, _labeled(499, champion_signal=0.0, previous_signal=3.0), "2", "1")

    assert comparison.verdict == "undecided"
    assert (comparison.rows, comparison.difference, comparison.interval) == (499, None, None)
    assert comparison.why == (
        "undecided: 499 labeled rows scored by both v2 (champion) and v1 (previous)"
        " < monitoring.watch.min_labels 500"
    )


def test_a_metric_undefined_on_the_rows_leaves_it_undecided() -> None:
    labeled = _labeled(600, champion_signal=0.0, previous_signal=3.0).assign(**{TARGET: 1})

    comparison = compare(SPEC, labeled, "2", "1")

    assert comparison.verdict == "undecided"
    assert "roc_auc needs both classes" in comparison.why


TIERS = np.array(["high", "low", "mid"], dtype=object)


def _tiers(rows: int, champion_skill: float, previous_skill: float) -> pd.DataFrame:
    """Labeled log rows of a three-class model with text labels: v2 served, v1 shadow-scored, each
    with every class's probability as scoring logs them."""
    rng = np.random.default_rng(0)
    y = TIERS[rng.integers(0, 3, size=rows)]
    frame = pd.DataFrame({TARGET: y, "model_version": "2", "shadow_version": "1", "batch_id": "b0001"})
    for columns, skill in ((SERVED, champion_skill), (PREVIOUS, previous_skill)):
        logits = skill * (y[:, None] == TIERS[None, :]) + rng.normal(size=(rows, 3))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame[columns.prediction] = TIERS[probabilities.argmax(axis=1)]
        frame[columns.score] = probabilities.max(axis=1)
        for i, label in enumerate(TIERS):
            frame[f"{columns.score}__{label}"] = probabilities[:, i]
    return frame


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "f1", "accuracy"])
def test_a_worse_multiclass_champion_is_rolled_back_on_any_classification_metric(metric: str) -> None:
    spec = _spec(monitoring_metric=metric)

    worse = compare(spec, _tiers(1500, champion_skill=0.3, previous_skill=2.0), "2", "1")
    equal = compare(spec, _tiers(1500, champion_skill=1.5, previous_skill=1.5), "2", "1")

    assert worse.verdict == "rollback", worse.why
    assert worse.metric == metric
    assert worse.interval is not None
    assert worse.interval[1] < 0
    assert equal.verdict == "hold", equal.why


def test_a_multiclass_log_without_class_probabilities_leaves_ranking_metrics_undecided() -> None:
    labeled = _tiers(1500, champion_skill=0.3, previous_skill=2.0).filter(regex=r"^(?!.*score__)")

    comparison = compare(_spec(monitoring_metric="roc_auc"), labeled, "2", "1")

    assert comparison.verdict == "undecided"
    assert "every class's probability" in comparison.why
    assert compare(_spec(monitoring_metric="f1"), labeled, "2", "1").verdict == "rollback"


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_a_worse_regression_champion_is_rolled_back(metric: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(100, 20, 1500)
    served, shadow = y + rng.normal(0, 15, len(y)), y + rng.normal(0, 5, len(y))
    labeled = pd.DataFrame(
        {
            TARGET: y,
            "prediction": served,
            "score": served,
            "model_version": "2",
            "shadow_prediction": shadow,
            "shadow_score": shadow,
            "shadow_version": "1",
        }
    )
    spec = regression_spec(
        "watched_regression", quality_metric=metric, monitoring={"watch": {"min_labels": 500}}
    )

    assert compare(spec, labeled, "2", "1").verdict == "rollback"
    assert compare(spec, labeled.assign(prediction=shadow, score=shadow), "2", "1").verdict == "hold"


def test_only_rows_the_champion_served_and_the_previous_one_shadowed_are_paired() -> None:
    labeled = pd.concat(
        [
            _labeled(300, 1.0, 1.0),
            _labeled(200, 1.0, 1.0, model_version="1", shadow_version=None, shadow_score=np.nan),
            _labeled(100, 1.0, 1.0, shadow_version="0"),
            _labeled(50, 1.0, 1.0, shadow_score=np.nan),  # the shadow failed on that batch
        ],
        ignore_index=True,
    )
    sides = Side("champion", "2", SERVED), Side("previous", "1", PREVIOUS)
    assert len(paired_rows(labeled, *sides)) == 300
    assert paired_rows(labeled.drop(columns=["shadow_version"]), *sides).empty  # a log older than shadows
    assert paired_rows(labeled, sides[0], Side("challenger", "3", CHALLENGER)).empty  # nobody waits


def _challenged(rows: int, champion_signal: float, challenger_signal: float) -> pd.DataFrame:
    """Labeled rows served by v2 and shadow-scored by the challenger v3 (and by v1, as previous)."""
    labeled = _labeled(rows, champion_signal, 1.0)
    challenger = _scores(labeled[TARGET].to_numpy(), challenger_signal, 3)
    return labeled.assign(
        challenger_prediction=(challenger > 0.5).astype(int),
        challenger_score=challenger,
        challenger_version="3",
    )


def test_a_clearly_better_challenger_is_reported_better_on_the_same_rows() -> None:
    comparison = compare_challenger(
        SPEC, _challenged(2000, champion_signal=0.3, challenger_signal=2.0), "2", "3"
    )

    assert comparison.verdict == "better"
    assert comparison.versions == {"challenger": "3", "champion": "2"}
    assert comparison.values is not None
    assert comparison.values["challenger"] - comparison.values["champion"] > 0.3
    assert comparison.interval is not None
    assert 0 < comparison.interval[0] <= comparison.difference
    assert comparison.why.startswith("better: roc_auc of v3 (challenger)")


def test_a_worse_or_equal_challenger_is_reported_so_and_never_as_a_rollback() -> None:
    worse = compare_challenger(SPEC, _challenged(2000, champion_signal=2.0, challenger_signal=0.3), "2", "3")
    same = compare_challenger(SPEC, _challenged(2000, champion_signal=1.5, challenger_signal=1.5), "2", "3")
    few = compare_challenger(SPEC, _challenged(100, champion_signal=1.5, challenger_signal=0.0), "2", "3")

    assert (worse.verdict, same.verdict, few.verdict) == ("worse", "no_difference", "undecided")
    assert worse.difference is not None
    assert worse.difference < 0
    assert few.why.startswith("undecided: 100 labeled rows scored by both v3 (challenger) and v2 (champion)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This worker's MLflow registry, and a ctloop database of this test's own."""
    return load_settings().model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ctloop.db'}"})


def _versions(settings: Settings, tmp_path: Path, count: int) -> str:
    client = registry.client(settings)
    name = f"w{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    for _ in range(count):
        version = client.create_model_version(name, source=str(tmp_path), run_id=None)
        client.set_model_version_tag(name, version.version, tags.GATE, "passed")
        client.set_model_version_tag(name, version.version, tags.MODEL_SHA256, "a-recorded-digest")
    return name


def _promote(
    settings: Settings, name: str, to: str, expected_from: str | None, mlflow_run_id: str | None = None
) -> None:
    client = registry.client(settings)
    moved = ledger.move_alias(
        settings,
        client,
        name,
        to,
        expected_from=expected_from,
        action="promotion",
        reason="t",
        mlflow_run_id=mlflow_run_id,
    )
    assert moved.moved


def test_only_the_latest_promotion_over_a_previous_champion_is_watched(
    settings: Settings, tmp_path: Path
) -> None:
    name = _versions(settings, tmp_path, 3)
    assert watched_promotion(settings, name, "1") is None  # no move yet
    _promote(settings, name, "1", None)
    assert watched_promotion(settings, name, "1") is None  # the first champion replaced nobody
    _promote(settings, name, "2", "1")
    watched = watched_promotion(settings, name, "2")
    assert watched is not None
    assert (watched.action, watched.from_version, watched.to_version) == ("promotion", "1", "2")
    assert watched_promotion(settings, name, "1") is None  # not the champion the last move made

    rollback(settings, name, target="previous", reason="v2 regressed", user="monitor")
    assert watched_promotion(settings, name, "1") is None  # a rollback is not watched
    _promote(settings, name, "3", "1")
    assert watched_promotion(settings, name, "3") is not None


# --- a promotion its gate judged on the metrics of the monitor's alert ------------------------------


def _threshold_moved(rows: int, champion_decides_better: bool = True, noise: float = 0.15) -> pd.DataFrame:
    """Labeled log rows after the labelling threshold moved from 0 to 0.5 while the features kept
    their distribution: the model fitted to the new threshold decides far better, and ranks a
    little worse (its scores carry ``noise`` more); ``champion_decides_better`` says which of v2
    (served) and v1 (shadow) it is."""
    rng = np.random.default_rng(7)
    latent = rng.normal(size=rows)
    y = (latent + rng.normal(0, 0.5, rows) > 0.5).astype(int)
    old = 1 / (1 + np.exp(-3 * latent))
    new = 1 / (1 + np.exp(-3 * (latent + rng.normal(0, noise, rows) - 0.5)))
    served, shadow = (new, old) if champion_decides_better else (old, new)
    return _log(y, served, shadow)


THRESHOLD = _threshold_moved(6000)


def test_a_fix_judged_on_accuracy_that_ranks_a_little_worse_is_kept_and_says_why() -> None:
    comparison = compare(SPEC, THRESHOLD, "2", "1", alert_metrics=["accuracy"])

    assert comparison.verdict == "hold", comparison.why
    assert comparison.alert_metrics == ["accuracy"]
    fired, usual = comparison.metrics
    assert (fired.metric, fired.fired, fired.tolerance, fired.verdict) == ("accuracy", True, 0.0, "better")
    assert fired.values is not None
    assert fired.values["champion"] - fired.values["previous"] > 0.05
    assert (usual.metric, usual.fired, usual.tolerance) == ("roc_auc", False, 0.01)
    assert usual.verdict == "no_difference"
    assert usual.interval is not None
    assert -0.01 < usual.interval[0] <= usual.interval[1] < 0  # significantly worse, within the tolerance
    # the old fields keep the quality metric's figures, as the served-quality chart plots them
    assert (comparison.metric, comparison.interval, comparison.values) == (
        "roc_auc",
        usual.interval,
        usual.values,
    )
    assert comparison.why.startswith(
        "no significant regression, judged as the gate that promoted it judged it (on the alert's accuracy;"
        " roc_auc only beyond gates.alert_metrics.max_regression 0.01): better: accuracy of v2 (champion)"
    )
    assert "; no significant difference: roc_auc of v2 (champion)" in comparison.why


def test_the_same_pair_promoted_like_any_run_is_rolled_back_on_its_ranking() -> None:
    comparison = compare(SPEC, THRESHOLD, "2", "1")

    assert comparison.verdict == "rollback"
    assert comparison.alert_metrics == []
    (only,) = comparison.metrics
    assert (only.metric, only.fired, only.tolerance, only.verdict) == ("roc_auc", False, 0.0, "worse")
    assert comparison.why == only.why
    assert comparison.why.startswith("worse: roc_auc of v2 (champion)")
    assert comparison.why.endswith("(minus monitoring.watch.margin)")


def test_a_champion_worse_on_the_fired_metric_is_rolled_back() -> None:
    comparison = compare(SPEC, _threshold_moved(6000, champion_decides_better=False), "2", "1", ["accuracy"])

    assert comparison.verdict == "rollback"
    fired = comparison.metrics[0]
    assert (fired.metric, fired.verdict) == ("accuracy", "worse")
    assert fired.interval is not None
    assert fired.interval[1] < -0.05
    assert comparison.why.startswith("worse on accuracy, judged as the gate that promoted it judged it")


def test_the_quality_metric_rolls_back_beyond_the_gates_tolerance_or_the_watch_margin() -> None:
    strict = compare(_spec(max_regression=0.0005), THRESHOLD, "2", "1", ["accuracy"])
    wider_margin = compare(_spec(max_regression=0.0005, margin=0.02), THRESHOLD, "2", "1", ["accuracy"])
    ranks_far_worse = compare(SPEC, _threshold_moved(6000, noise=0.4), "2", "1", ["accuracy"])

    assert strict.verdict == "rollback", strict.why
    assert strict.why.startswith("worse on roc_auc, judged")
    assert "roc_auc only beyond gates.alert_metrics.max_regression 0.0005" in strict.why
    assert wider_margin.verdict == "hold", wider_margin.why
    assert wider_margin.metrics[1].tolerance_from == "monitoring.watch.margin"
    assert ranks_far_worse.verdict == "rollback", ranks_far_worse.why
    assert [m.verdict for m in ranks_far_worse.metrics] == ["better", "worse"]


def test_a_fired_quality_metric_is_judged_at_the_watch_margin() -> None:
    comparison = compare(SPEC, THRESHOLD, "2", "1", ["roc_auc", "accuracy"])

    assert comparison.verdict == "rollback"
    assert [(m.metric, m.fired, m.tolerance, m.verdict) for m in comparison.metrics] == [
        ("roc_auc", True, 0.0, "worse"),
        ("accuracy", True, 0.0, "better"),
    ]


def test_a_fired_metric_the_watch_cannot_compute_is_recorded_as_not_judged() -> None:
    comparison = compare(SPEC, THRESHOLD, "2", "1", ["rmse", "accuracy"])
    undefined = compare(SPEC, THRESHOLD.assign(**{TARGET: 1}), "2", "1", ["roc_auc", "accuracy"])

    assert comparison.verdict == "hold"
    unknown = comparison.metrics[0]
    assert (unknown.metric, unknown.verdict, unknown.values) == ("rmse", "not_judged", None)
    assert unknown.why == "not judged: the watch computes no classification metric rmse"
    assert undefined.metrics[0].verdict == "undecided"
    assert "roc_auc needs both classes" in undefined.metrics[0].why


def test_too_few_rows_leave_every_metric_undecided() -> None:
    comparison = compare(SPEC, THRESHOLD.head(499), "2", "1", ["accuracy"])

    assert comparison.verdict == "undecided"
    assert comparison.why.startswith("undecided: 499 labeled rows scored by both v2 (champion) and v1")
    assert [(m.metric, m.verdict) for m in comparison.metrics] == [
        ("accuracy", "undecided"),
        ("roc_auc", "undecided"),
    ]


@pytest.mark.parametrize("metric", ["accuracy", "f1", "log_loss"])
def test_a_multiclass_champion_is_judged_on_the_fired_metric(metric: str) -> None:
    worse = compare(SPEC, _tiers(1500, champion_skill=0.3, previous_skill=2.0), "2", "1", [metric])
    better = compare(SPEC, _tiers(1500, champion_skill=2.0, previous_skill=0.3), "2", "1", [metric])

    assert worse.verdict == "rollback", worse.why
    assert (worse.metrics[0].metric, worse.metrics[0].verdict) == (metric, "worse")
    assert better.verdict == "hold", better.why
    assert [m.verdict for m in better.metrics] == [
        "better",
        "better",
    ]  # roc_auc from every class's probability


def test_a_history_row_keeps_what_the_watch_judged_on() -> None:
    compact = monitor_run._compact(compare(SPEC, THRESHOLD, "2", "1", ["accuracy"]).model_dump())

    assert compact is not None
    assert compact["alert_metrics"] == ["accuracy"]
    assert [(m["metric"], m["fired"], m["verdict"]) for m in compact["metrics"]] == [
        ("accuracy", True, "better"),
        ("roc_auc", False, "no_difference"),
    ]
    assert [m["tolerance_from"] for m in compact["metrics"]] == [  # the history cell's tooltip says it
        "monitoring.watch.margin",
        "gates.alert_metrics.max_regression",
    ]
    assert all("why" not in m for m in compact["metrics"])


def _gate_run(settings: Settings, name: str, alert_metrics: list[str] | None) -> str:
    """A training run of ``name``, with a logged gate decision judged on ``alert_metrics`` (None:
    the run logged none)."""
    client = registry.client(settings)
    experiment = registry.ensure_experiment(client, name, settings.mlflow_artifact_root)
    run_id = str(client.create_run(experiment).info.run_id)
    if alert_metrics is not None:
        decision = GateDecision(
            mode="enabled",
            passed=True,
            promote=True,
            champion_version="1",
            rules=[],
            failed=[],
            alert_metrics=alert_metrics,
            alert_metrics_why="started by the monitor's alert",
        )
        client.log_dict(run_id, decision.model_dump(mode="json"), DECISION_ARTIFACT)
    return run_id


def test_the_watch_reads_what_the_promotions_gate_judged_on(settings: Settings, tmp_path: Path) -> None:
    name = _versions(settings, tmp_path, 5)
    _promote(settings, name, "1", None)
    _promote(settings, name, "2", "1")  # forced through the ledger: no training run
    forced = watched_promotion(settings, name, "2")
    assert forced is not None
    assert promoted_on(settings, forced) == []

    _promote(settings, name, "3", "2", mlflow_run_id=_gate_run(settings, name, ["accuracy", "brier"]))
    judged = watched_promotion(settings, name, "3")
    assert judged is not None
    assert promoted_on(settings, judged) == ["accuracy", "brier"]

    _promote(settings, name, "4", "3", mlflow_run_id=_gate_run(settings, name, None))
    unlogged = watched_promotion(settings, name, "4")
    assert unlogged is not None
    assert promoted_on(settings, unlogged) == []  # judged like any promotion, not an error

    unreadable = _gate_run(settings, name, None)
    registry.client(settings).log_dict(
        unreadable, {"mode": "sometimes", "alert_metrics": 3}, DECISION_ARTIFACT
    )
    _promote(settings, name, "5", "4", mlflow_run_id=unreadable)
    other_release = watched_promotion(settings, name, "5")
    assert other_release is not None
    assert promoted_on(settings, other_release) == []


# --- a challenger its own gate judged on the metrics of the monitor's alert -------------------------


def _fix_waits(champion: str = "2", challenger: str = "3") -> pd.DataFrame:
    """THRESHOLD's rows served by the model fitted to the old threshold, with the fix (deciding far
    better, ranking a little worse) waiting for approval as the challenger that shadow-scored them."""
    rows = _threshold_moved(6000, champion_decides_better=False)
    fix = {"challenger_prediction": rows["shadow_prediction"], "challenger_score": rows["shadow_score"]}
    return rows.assign(model_version=champion, challenger_version=challenger, **fix)


FIX_WAITS = _fix_waits()


def test_a_challenger_its_gate_judged_on_the_alerts_metrics_is_compared_on_them() -> None:
    judged = compare_challenger(SPEC, FIX_WAITS, "2", "3", alert_metrics=["accuracy"])
    as_any = compare_challenger(SPEC, FIX_WAITS, "2", "3")

    assert judged.verdict == "no_difference", judged.why
    assert judged.alert_metrics == ["accuracy"]
    assert [(m.metric, m.fired, m.tolerance, m.verdict) for m in judged.metrics] == [
        ("accuracy", True, 0.0, "better"),
        ("roc_auc", False, 0.01, "no_difference"),
    ]
    assert judged.metrics[0].values is not None
    assert judged.metrics[0].values["challenger"] - judged.metrics[0].values["champion"] > 0.05
    assert judged.why.startswith(
        "no significant regression, judged as its gate judged it (on the alert's accuracy;"
        " roc_auc only beyond gates.alert_metrics.max_regression 0.01): better: accuracy of v3 (challenger)"
    )
    # compared like any run, the same fix reads worse on its ranking
    assert as_any.verdict == "worse", as_any.why
    assert [(m.metric, m.verdict) for m in as_any.metrics] == [("roc_auc", "worse")]


def test_a_challenger_worse_on_what_its_gate_judged_is_reported_worse() -> None:
    old_waits = _threshold_moved(6000).assign(
        challenger_prediction=lambda f: f["shadow_prediction"],
        challenger_score=lambda f: f["shadow_score"],
        challenger_version="3",
    )  # the champion is the fix; the challenger decides by the old threshold

    comparison = compare_challenger(SPEC, old_waits, "2", "3", ["accuracy"])

    assert comparison.verdict == "worse"
    assert comparison.why.startswith("worse on accuracy, judged as its gate judged it")


def test_the_monitor_compares_the_challenger_on_what_its_own_gate_judged(
    settings: Settings, tmp_path: Path
) -> None:
    name = _versions(settings, tmp_path, 1)  # v1 serves
    client = registry.client(settings)
    gated = client.create_model_version(name, str(tmp_path), run_id=_gate_run(settings, name, ["accuracy"]))
    spec = SPEC.model_copy(update={"name": name})
    window: Any = {"served": _fix_waits(champion="1", challenger=str(gated.version))}

    assert gate_judged_on(settings, name, str(gated.version), gated.run_id) == ["accuracy"]
    assert monitor_run._challenger(spec, settings, client, "1", window) is None  # nobody waits
    client.set_registered_model_alias(name, registry.CHALLENGER, gated.version)
    comparison = monitor_run._challenger(spec, settings, client, "1", window)

    assert comparison is not None
    assert comparison.versions == {"challenger": str(gated.version), "champion": "1"}
    assert comparison.alert_metrics == ["accuracy"]
    assert [(m.metric, m.verdict) for m in comparison.metrics] == [
        ("accuracy", "better"),
        ("roc_auc", "no_difference"),
    ]
    unjudged = client.create_model_version(name, str(tmp_path), run_id=_gate_run(settings, name, None))
    client.set_registered_model_alias(name, registry.CHALLENGER, unjudged.version)
    window = {"served": _fix_waits(champion="1", challenger=str(unjudged.version))}
    as_any = monitor_run._challenger(spec, settings, client, "1", window)
    assert as_any is not None
    assert (as_any.alert_metrics, as_any.verdict) == ([], "worse")
