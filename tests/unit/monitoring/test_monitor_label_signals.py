"""Label shift and the performance estimate in a whole monitor run: in its summary, its decision,
its MLflow run and the pipeline's history, against a champion registered with its holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctloop.data.holdout import store
from ctloop.data.snapshots import take_snapshot
from ctloop.devtools.example_data import TARGET, generate_batch
from ctloop.io.storage import home_storage
from ctloop.monitoring.monitor_run import holdout_reference_key, run_monitor
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.settings import Settings
from ctloop.spec.models import PipelineSpec
from tests.unit.monitoring import test_monitor_run as monitor
from tests.unit.monitoring.test_monitor_run import (
    BATCH_ROWS,
    Trained,
    _context,
    _history,
    _label,
    _score,
    _spec,
)

# that module's fixtures: its models, each fitted once
trained, settings, multiclass = monitor.trained, monitor.settings, monitor.multiclass


def _champion_with_holdout(
    spec: PipelineSpec, settings: Settings, trained: Trained | monitor.OtherTask, holdout: pd.DataFrame
) -> str:
    """The module's model as champion, registered as a training run leaves it: with its snapshot
    and its stored holdout."""
    snapshot = take_snapshot(spec, settings)
    holdout_key, _ = store(holdout, spec.name, settings)
    version = registry.register_version(
        registry.client(settings),
        spec.name,
        trained.logged,
        trained.run_id,
        f"{spec.name}__train/manual__1",
        {tags.DATA_SHA256: snapshot["sha256"], tags.HOLDOUT_KEY: holdout_key},
    )
    registry.client(settings).set_registered_model_alias(spec.name, registry.CHAMPION, version.version)
    return str(version.version)


def _fewer_positives(scored: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """The batch's labels with ``share`` of its positives turned negative: the prior moves, the
    features do not."""
    flip = (scored[TARGET] == 1) & (np.random.default_rng(seed).random(len(scored)) < share)
    return scored.assign(**{TARGET: np.where(flip, 0, scored[TARGET])})


def test_a_prior_shift_fires_label_shift_and_is_recorded_everywhere(
    trained: Trained, settings: Settings
) -> None:
    spec = _spec(trained.data, drift={"share": 0.5})
    version = _champion_with_holdout(spec, settings, trained, generate_batch(BATCH_ROWS, seed=99))
    for index in range(2):
        _label(spec, settings, _fewer_positives(_score(spec, settings, trained, version, index), 0.5, index))

    summary = run_monitor(spec, settings, _context(spec))

    shift = summary["label_shift"]
    signals = {s["name"]: s for s in shift["signals"]}
    assert shift["verdict"] == signals["label_rate"]["verdict"] == "alert"
    assert signals["label_rate"]["value"] < signals["label_rate"]["reference"] - 0.05
    assert signals["label_rate"]["rows"] == 2 * BATCH_ROWS
    decision = summary["decision"]
    assert any(t.startswith("label shift: label_rate: ") for t in decision["triggers"])
    assert not any(t.startswith(("drift share", "key feature")) for t in decision["triggers"])
    estimate = summary["estimate"]
    assert (estimate["enabled"], estimate["decides"], estimate["rows"]) == (True, False, 2 * BATCH_ROWS)
    assert not any(t.startswith("estimate ") for t in decision["triggers"])
    accuracy = next(s for s in estimate["signals"] if s["name"] == "accuracy")
    assert accuracy["realised"] == pytest.approx(summary["quality"]["metrics"]["accuracy"])
    # the features did not move, so the champion's own probabilities expect no worse than before
    assert accuracy["verdict"] == "ok"

    client = registry.client(settings)
    experiment = client.get_experiment_by_name(f"{spec.name}-monitoring")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["label_shift.label_rate"] == pytest.approx(signals["label_rate"]["value"])
    assert run.data.metrics["label_shift.label_rate.reference"] == pytest.approx(
        signals["label_rate"]["reference"]
    )
    assert run.data.metrics["label_shift.label_rate.p_value"] == pytest.approx(
        signals["label_rate"]["p_value"]
    )
    assert run.data.metrics["estimate.accuracy"] == pytest.approx(accuracy["value"])
    assert run.data.metrics["estimate.accuracy.reference"] == pytest.approx(accuracy["reference"])
    low, high = accuracy["interval"]
    assert low < accuracy["value"] < high
    assert (run.data.metrics["estimate.accuracy.low"], run.data.metrics["estimate.accuracy.high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    assert "label_shift.label_rate.low" not in run.data.metrics  # its interval is of the difference
    assert run.data.tags["ctloop.label_shift"] == "alert"
    assert run.data.tags["ctloop.label_shift.label_rate"] == "alert"
    assert run.data.tags["ctloop.estimate.accuracy"] == "ok"

    (entry,) = _history(spec, settings)
    assert entry["label_shift"]["verdict"] == "alert"
    assert {s["name"]: s["verdict"] for s in entry["label_shift"]["signals"]}["label_rate"] == "alert"
    assert entry["estimate"]["decides"] is False
    assert entry["label_shift"]["enabled"] is entry["estimate"]["enabled"] is True
    logged = {s["name"]: s for s in entry["estimate"]["signals"]}
    assert logged["accuracy"]["interval"] == pytest.approx([low, high])
    assert (logged["accuracy"]["judged"], logged["precision"]["judged"]) == (True, False)
    assert [s["name"] for s in entry["estimate"]["signals"]] == [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
    ]

    # the plugin's pages show which signal fired, from the summary and the history entry as written
    # (imported here: at the module's top they made every model load of this file warn, a skops
    # deprecation, about 1,150 times)
    from ctloop.ui import pages
    from ctloop.ui.links import Urls
    from ctloop.ui.state import PolicyState

    urls, policy = Urls.of("/ctloop", mlflow="http://mlflow"), PolicyState(None, None, 0, 3)
    report = pages.report(urls, spec, "r1", summary)
    assert '<dt>label shift: label_rate</dt><dd><span title="' in report
    assert '<span class="badge bad">alert</span></span> the rate of class 1 is ' in report
    assert '<dt>estimate accuracy</dt><dd><span title="' in report
    assert '<span class="badge good">ok</span></span> <span class="small muted">informs only</span>' in report
    runs = pages.history(urls, spec, [entry], [], policy)
    assert '<span class="badge bad">alert</span></span> <span class="small">label_rate' in runs
    assert '<span class="small">estimate</span> <span title="accuracy: ok (' in runs


def test_a_stable_labeled_window_fires_neither(trained: Trained, settings: Settings) -> None:
    spec = _spec(trained.data)
    version = _champion_with_holdout(spec, settings, trained, generate_batch(BATCH_ROWS, seed=99))
    for index in range(2):
        _label(spec, settings, _score(spec, settings, trained, version, index))

    summary = run_monitor(spec, settings, _context(spec))

    assert summary["label_shift"]["verdict"] == "ok"
    assert summary["estimate"]["verdict"] == "ok"
    assert not [t for t in summary["decision"]["triggers"] if t.startswith(("label shift", "estimate"))]


def test_the_holdout_reference_holds_the_champions_outputs_on_the_holdout(
    trained: Trained, settings: Settings
) -> None:
    spec = _spec(trained.data)
    _champion_with_holdout(spec, settings, trained, generate_batch(BATCH_ROWS, seed=99))
    champion = registry.get_champion(registry.client(settings), spec.name)

    key = holdout_reference_key(spec, settings, champion)

    assert key == f"monitor/{spec.name}/reference/v{champion.version}-holdout.parquet"
    with home_storage(settings).local_file(key) as path:
        frame = pd.read_parquet(path)
    holdout = generate_batch(BATCH_ROWS, seed=99)
    assert len(frame) == len(holdout)
    assert list(frame.columns) == [*spec.columns.features, spec.columns.target, "prediction", "score"]
    assert frame["score"].to_numpy() == pytest.approx(
        trained.model.predict_proba(holdout[spec.columns.features])[:, 1]
    )


def test_a_multiclass_champion_is_estimated_from_every_class_probability(
    multiclass: monitor.OtherTask, settings: Settings
) -> None:
    spec = multiclass.spec("roc_auc")
    holdout = multiclass.batch(BATCH_ROWS, seed=99)
    _champion_with_holdout(spec, settings, multiclass, holdout)
    for index in range(2):
        monitor._serve(spec, settings, multiclass, index)

    summary = run_monitor(spec, settings, _context(spec))

    estimate = summary["estimate"]
    assert (estimate["verdict"], estimate["classes"]) == ("ok", ["high", "low", "mid"])
    signals = {s["name"]: s for s in estimate["signals"]}
    assert signals["accuracy"]["reference"] == pytest.approx(multiclass.holdout["accuracy"])
    assert signals["roc_auc"]["reference"] == pytest.approx(multiclass.holdout["roc_auc"], abs=2e-3)
    assert signals["accuracy"]["realised"] == pytest.approx(summary["quality"]["metrics"]["accuracy"])
    rate = next(s for s in summary["label_shift"]["signals"] if s["name"] == "label_rate")
    assert (rate["verdict"], set(rate["value"])) == ("ok", {"high", "low", "mid"})
    champion = registry.get_champion(registry.client(settings), spec.name)
    key = holdout_reference_key(spec, settings, champion)
    with home_storage(settings).local_file(key) as path:
        frame = pd.read_parquet(path)
    expected = multiclass.model.predict_proba(holdout[spec.columns.features])
    columns = [f"score__{c}" for c in multiclass.model.classes_]
    assert frame[columns].to_numpy() == pytest.approx(expected)
