"""ctloop.monitoring.drift_stats against real Evidently 0.7.23 runs: same test, same decision, same score.

Evidently is run as the monitor would run it (``DataDriftPreset`` on the full frames, column kinds
given explicitly); each dataset covers one regime of Evidently's test chooser.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctloop.errors import DriftInputError
from ctloop.monitoring import drift_stats
from ctloop.monitoring.drift_stats import (
    ColumnDrift,
    Side,
    column_drift,
    dataset_drifted,
    drift_share,
    stream_column_drift,
)
from ctloop.scoring.prediction_log import file_rows, iter_column, read_files


def _evidently(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]):
    """Per column (stattest name, score, threshold, drifted) and the drifted share, from a snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations import stattests
    from evidently.presets import DataDriftPreset

    # ValueDrift's config records the stattest's display name; map it back to the registry name.
    names = {
        t.display_name: t.name
        for t in (
            stattests.wasserstein_stat_test,
            stattests.jensenshannon_stat_test,
            stattests.ks_stat_test,
            stattests.chi_stat_test,
            stattests.z_stat_test,
        )
    }
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    # Evidently's own decision per column is the status of the ValueDrift metric's test.
    failed = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in result["tests"] if t["id"] == "drift"
    }
    columns, share = {}, None
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"] == "evidently:metric_v2:ValueDrift":
            columns[config["column"]] = (
                names[config["method"]],
                float(metric["value"]),
                config["threshold"],
                failed[metric["id"]],
            )
        elif config["type"] == "evidently:metric_v2:DriftedColumnsCount":
            share = metric["value"]["share"]
    return columns, share


def _frames(n_ref: int, n_cur: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """One column per regime of Evidently's chooser, shifted and unshifted, with NaNs and infs."""
    rng = np.random.default_rng(seed)

    def frame(n: int, shifted: bool) -> pd.DataFrame:
        nan_num = rng.normal(10, 2, n)
        nan_num[rng.random(n) < 0.1] = np.nan
        with_inf = rng.normal(0, 1, n)
        with_inf[:3] = [np.inf, -np.inf, np.nan]
        nan_cat = rng.choice(np.array(["a", "b", "c", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
        return pd.DataFrame(
            {
                "same": rng.normal(0, 1, n),
                "shifted": rng.normal(0.6 if shifted else 0.0, 1, n),
                "scaled": rng.lognormal(0, 0.8 if shifted else 0.5, n),
                "ints": rng.integers(0, 40, n),
                "few": rng.choice(
                    [0.0, 1.0, 2.0, 3.0, 4.0], n, p=[0.1, 0.1, 0.2, 0.3, 0.3] if shifted else None
                ),
                "binary_num": (rng.random(n) < (0.6 if shifted else 0.3)).astype(float),
                "constant": np.full(n, 7.0),
                "nan_num": nan_num,
                "with_inf": with_inf,
                "plan": rng.choice(
                    ["basic", "standard", "premium"], n, p=[0.2, 0.3, 0.5] if shifted else None
                ),
                "region": rng.choice(["n", "s", "e", "w", "x"] if shifted else ["n", "s", "e", "w"], n),
                "binary_cat": rng.choice(["yes", "no"], n, p=[0.9, 0.1] if shifted else [0.6, 0.4]),
                "nan_cat": nan_cat,
                "int_cat": rng.integers(0, 6, n),
                "bool_cat": rng.random(n) < (0.5 if shifted else 0.45),
                "category": pd.Categorical(
                    rng.choice(["u", "v", "w"], n), categories=["u", "v", "w", "unused"]
                ),
                "ignored": rng.normal(0, 1, n),
            }
        )

    numeric = ["same", "shifted", "scaled", "ints", "few", "binary_num", "constant", "nan_num", "with_inf"]
    categorical = ["plan", "region", "binary_cat", "nan_cat", "int_cat", "bool_cat", "category"]
    return frame(n_ref, False), frame(n_cur, True), numeric, categorical


def _assert_same_as_evidently(ours: list[ColumnDrift], theirs: dict, share: float) -> None:
    assert [r.column for r in ours] == list(theirs)
    for r in ours:
        stattest, score, threshold, drifted = theirs[r.column]
        assert (r.column, r.stattest, r.drifted, r.threshold) == (r.column, stattest, drifted, threshold)
        assert r.score == pytest.approx(score, rel=1e-9, abs=1e-12), r.column
    assert drift_share(ours) == pytest.approx(share)


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "tests"),
    [
        (5000, 4000, {"wasserstein", "jensenshannon"}),  # above Evidently's 1,000-row cut-off
        (500, 700, {"ks", "chisquare", "z"}),  # below it: p-value tests
        (400, 20_000, {"ks", "chisquare", "z"}),  # the cut-off looks at the reference only
    ],
)
def test_same_decisions_as_evidently(n_ref: int, n_cur: int, tests: set[str]):
    reference, current, numeric, categorical = _frames(n_ref, n_cur, seed=n_ref)
    ours = column_drift(reference, current, numeric, categorical)
    theirs, share = _evidently(
        reference.drop(columns="ignored"), current.drop(columns="ignored"), numeric, categorical
    )
    _assert_same_as_evidently(ours, theirs, share)
    assert {r.stattest for r in ours} == tests
    assert any(r.drifted for r in ours)
    assert not all(r.drifted for r in ours)
    assert {r.column for r in ours if r.drifted} >= {"shifted", "plan", "binary_cat"}


def test_cut_off_counts_non_null_reference_rows():
    """1,100 reference rows, but 150 NaNs leave 950: that column gets the small-sample test."""
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1100), "y": rng.normal(0, 1, 1100)})
    reference.loc[:149, "y"] = np.nan
    current = pd.DataFrame({"x": rng.normal(0.05, 1, 1100), "y": rng.normal(0.05, 1, 1100)})
    ours = column_drift(reference, current, ["x", "y"], [])
    theirs, share = _evidently(reference, current, ["x", "y"], [])
    _assert_same_as_evidently(ours, theirs, share)
    assert [(r.stattest, r.reference_rows) for r in ours] == [("wasserstein", 1100), ("ks", 950)]


def test_edge_cases_match_evidently():
    """Constant columns, a reference with std 0 and values only one frame has."""
    n = 2000
    rng = np.random.default_rng(9)
    reference = pd.DataFrame(
        {
            "const_same": np.ones(n),
            "const_ref": np.zeros(n),  # std 0: Evidently divides by 0.001
            "const_cat": ["a"] * n,
            "only_new": ["a"] * n,
        }
    )
    current = pd.DataFrame(
        {
            "const_same": np.ones(n),
            "const_ref": rng.normal(0, 0.01, n),
            "const_cat": ["a"] * n,
            "only_new": ["b"] * n,
        }
    )
    for rows in (n, 300):
        ref, cur = reference.head(rows), current.head(rows)
        ours = column_drift(ref, cur, ["const_same", "const_ref"], ["const_cat", "only_new"])
        theirs, share = _evidently(ref, cur, ["const_same", "const_ref"], ["const_cat", "only_new"])
        _assert_same_as_evidently(ours, theirs, share)


def test_drift_share_and_dataset_rule():
    reference, current, numeric, categorical = _frames(1500, 1500, seed=3)
    results = column_drift(reference, current, numeric, categorical)
    drifted = sum(r.drifted for r in results)
    assert drift_share(results) == drifted / len(results)
    assert dataset_drifted(results, share=drifted / len(results))  # inclusive, as Evidently's >=
    assert not dataset_drifted(results, share=(drifted + 0.5) / len(results))
    assert results[0].as_dict() == {
        "column": "same",
        "kind": "numeric",
        "stattest": "wasserstein",
        "score": results[0].score,
        "threshold": 0.1,
        "drifted": results[0].drifted,
        "reference_rows": 1500,
        "current_rows": 1500,
    }


def _small() -> pd.DataFrame:
    return pd.DataFrame({"amount": [1.0, 2.0, 3.0], "plan": ["a", "b", "a"]})


def test_empty_frame_is_refused():
    with pytest.raises(DriftInputError, match="current frame is empty.*amount"):
        column_drift(_small(), _small().iloc[0:0], ["amount"], ["plan"])


@pytest.mark.parametrize("which", ["reference", "current"])
def test_missing_column_is_refused(which: str):
    frames = {"reference": _small(), "current": _small()}
    frames[which] = frames[which].drop(columns="plan")
    with pytest.raises(DriftInputError, match=f"'plan'.*missing from the {which} frame"):
        column_drift(frames["reference"], frames["current"], ["amount"], ["plan"])


@pytest.mark.parametrize(
    ("column", "values"), [("amount", [np.nan, np.inf, -np.inf]), ("plan", [None, np.nan, None])]
)
def test_all_null_column_is_refused(column: str, values: list):
    current = _small().assign(**{column: values})
    with pytest.raises(DriftInputError, match=f"'{column}' is all-null.*current frame"):
        column_drift(_small(), current, ["amount"], ["plan"])


def test_wrong_kind_is_refused():
    with pytest.raises(DriftInputError, match="'plan'"):
        column_drift(_small(), _small(), ["plan"], [])
    with pytest.raises(DriftInputError, match="both numeric and categorical"):
        column_drift(_small(), _small(), ["amount"], ["amount"])


def _mixed(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Numeric columns (continuous, few-valued, ints with NaN and inf) and categorical ones
    (text with nulls, two values, integer codes)."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50 + shift, 10, rows)
    amount[rng.random(rows) < 0.1] = np.nan
    amount[:2] = np.inf
    plan = rng.choice(np.array(["basic", "plus", "pro", None], dtype=object), rows, p=[0.4, 0.3, 0.2, 0.1])
    return pd.DataFrame(
        {
            "amount": amount,
            "tickets": rng.integers(0, 4 + int(shift > 0), rows),
            "tenure": rng.integers(0, 72, rows).astype("float64"),
            "plan": plan,
            "paperless": rng.choice(["yes", "no"], rows),
            "region": rng.integers(1, 9, rows),
        }
    )


def _write_parts(frame: pd.DataFrame, directory, parts: int, row_group_size: int) -> list:
    """``frame`` split into ``parts`` Parquet files of several row groups, as the log stores a window."""
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = directory / f"part-{i}.parquet"
        frame.iloc[part].to_parquet(path, index=False, row_group_size=row_group_size)
        paths.append(path)
    return paths


NUMERIC, CATEGORICAL = ["amount", "tickets", "tenure"], ["plan", "paperless", "region"]


@pytest.mark.parametrize(
    ("reference_rows", "current_rows", "shift"),
    [(600, 900, 0.0), (600, 900, 8.0), (5000, 7000, 0.0), (5000, 7000, 8.0), (400, 9000, 3.0)],
)
def test_testing_columns_one_at_a_time_from_partitions_gives_the_frames_results(
    tmp_path, reference_rows: int, current_rows: int, shift: float
) -> None:
    """Small references (p-value tests) and large ones (distances), drifted or not, with NaN,
    infinities and nulls: the per-column path over Parquet partitions equals the frame path."""
    reference, current = _mixed(reference_rows, seed=1), _mixed(current_rows, seed=2, shift=shift)
    (tmp_path / "ref").mkdir(), (tmp_path / "cur").mkdir()
    ref_files = _write_parts(reference, tmp_path / "ref", parts=1, row_group_size=250)
    cur_files = _write_parts(current, tmp_path / "cur", parts=3, row_group_size=300)
    read: list[str] = []

    def current_column(column: str) -> list[pd.Series]:
        read.append(column)
        return list(iter_column(cur_files, column))

    streamed = stream_column_drift(
        _partitions(ref_files), Side(current_rows, current_column), NUMERIC, CATEGORICAL
    )

    expected = column_drift(read_files(ref_files), read_files(cur_files), NUMERIC, CATEGORICAL)
    assert streamed == expected
    assert expected == column_drift(reference, current, NUMERIC, CATEGORICAL)
    assert read == [*NUMERIC, *CATEGORICAL]  # each column read once, alone
    assert {r.stattest for r in streamed} >= (
        {"ks", "z", "chisquare"} if reference_rows <= 1000 else {"wasserstein", "jensenshannon"}
    )


def _partitions(paths: list) -> Side:
    """Parquet files as a side, a row group at a time, as the monitor reads them."""
    return Side(sum(file_rows(paths)), lambda column: iter_column(paths, column))


def test_a_column_read_empty_or_all_null_is_refused_by_name() -> None:
    frame = _mixed(300, seed=1)
    whole = Side.of_frame(frame)
    with pytest.raises(DriftInputError, match="the current frame is empty \\(column 'amount'\\)"):
        stream_column_drift(whole, Side(300, lambda c: [frame[c].iloc[:0]]), ["amount"], [])
    with pytest.raises(DriftInputError, match="column 'plan' is all-null in the reference frame"):
        stream_column_drift(Side(300, lambda c: [frame[c].map(lambda v: None)]), whole, [], ["plan"])
    with pytest.raises(DriftInputError, match="both numeric and categorical"):
        stream_column_drift(whole, whole, ["plan"], ["plan"])


def _cut(frame: pd.DataFrame, sizes: list[int]) -> Side:
    """``frame`` as a side whose columns come in pieces of ``sizes`` rows (the rest last)."""
    edges = np.cumsum([0, *sizes, len(frame)]).clip(max=len(frame))
    return Side(
        len(frame), lambda c: [frame[c].iloc[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    )


@pytest.mark.parametrize(("n_ref", "n_cur"), [(5000, 4000), (500, 700), (400, 20_000)])
def test_a_column_in_pieces_gives_the_whole_columns_results_exactly(n_ref: int, n_cur: int) -> None:
    """Every regime of the chooser (distances, p-value tests, few values, NaN, infinities, nulls,
    categories first seen in a late piece, unused categories), pieces of 0, 1 and uneven sizes:
    the same tests, scores and verdicts, to the bit, as the whole columns."""
    reference, current, numeric, categorical = _frames(n_ref, n_cur, seed=3)
    current.loc[current.index[-5:], "plan"] = "late"  # a category only the last piece holds
    whole = column_drift(reference, current, numeric, categorical)

    pieces = stream_column_drift(
        _cut(reference, [0, 1, 37, 0, 250]), _cut(current, [3, 0, 1, 999, 64]), numeric, categorical
    )

    assert pieces == whole
    assert [r.score for r in pieces] == [r.score for r in whole]  # floats compared exactly
    assert {r.column: r.current_rows for r in pieces}["plan"] == n_cur


def test_a_long_column_is_held_once_whatever_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small reference against a long window (the monitor's usual case): the numeric column is
    gathered into one buffer and sorted in place, and the Wasserstein walk goes in bounded slices
    (here 1,024 cells a side), so the traced peak stays near one column; the distance is scipy's."""
    import tracemalloc

    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3_000)})
    current = pd.DataFrame({"x": rng.normal(0.2, 1.1, 300_000)})
    column_bytes = current["x"].nbytes
    monkeypatch.setattr(drift_stats, "_SLICE", 1 << 10)
    tracemalloc.start()
    try:
        (result,) = stream_column_drift(Side.of_frame(reference), _cut(current, [10_000] * 29), ["x"], [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.stattest == "wasserstein"
    expected = wasserstein_distance(reference["x"], current["x"]) / np.std(reference["x"])
    assert result.score == pytest.approx(expected, rel=1e-12)
    assert peak < 1.5 * column_bytes  # one buffer of the column; the walk's slices are a few KB


def test_the_drift_step_holds_about_one_column_of_a_wide_window(tmp_path) -> None:
    """40 columns over 4 partitions: testing them one at a time peaks at a few columns' worth (one
    column, its sorted copy, the test's work arrays), whatever the width; far below the window
    that reading it whole costs."""
    import tracemalloc

    rng = np.random.default_rng(0)
    columns = [f"x{i}" for i in range(40)]
    window = pd.DataFrame(rng.normal(size=(60_000, 40)), columns=columns)
    reference = pd.DataFrame(rng.normal(size=(5_000, 40)), columns=columns)
    (tmp_path / "ref").mkdir(), (tmp_path / "cur").mkdir()
    ref_files = _write_parts(reference, tmp_path / "ref", parts=1, row_group_size=5_000)
    cur_files = _write_parts(window, tmp_path / "cur", parts=4, row_group_size=5_000)
    window_bytes, column_bytes = window.memory_usage().sum(), window["x0"].nbytes
    del window, reference

    def peak(step) -> int:
        tracemalloc.start()
        try:
            step()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed = peak(lambda: stream_column_drift(_partitions(ref_files), _partitions(cur_files), columns, []))
    whole = peak(lambda: column_drift(read_files(ref_files), read_files(cur_files), columns, []))

    assert whole > window_bytes  # the frame path holds the window
    # one column of each side, its sorted copy and the Wasserstein walk's work arrays
    assert streamed < 10 * column_bytes < window_bytes / 4
