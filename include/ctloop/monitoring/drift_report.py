"""The Evidently report people open in a browser: drift (and model quality) on a seeded sample.

ctloop's drift *decisions* are made elsewhere, on the full data, by a fast engine, and written to
``summary.json`` beside the report. Evidently 0.7 on full data is far too slow for a task (105 s for
1M rows x 25 columns: it computes each column several times and builds plots inside ``run``), so
this module runs it on a uniform random sample of at most ``sample_rows`` rows of each frame,
seeded so that a retried task writes the same report, and says so in a banner at the top of the
page. The sample is a set of row positions (:func:`sample_positions`), so a reader of Parquet
partitions takes it a row group at a time and never holds a whole frame
(:func:`build_sampled_report`, which the monitor uses); :func:`build_report` does the same from
frames in memory.

Evidently picks its drift test by sample size (``_get_default_stattest`` in
``evidently/legacy/calculations/stattests/registry.py``): above 1,000 reference rows, normalised
Wasserstein for numeric columns (Jensen-Shannon when they hold at most 5 distinct values) and
Jensen-Shannon for categorical ones, both with threshold 0.1; at or below 1,000 rows, K-S for
numeric columns and chi-square (or a Z-test for two values) with p-value threshold 0.05. A small
sample would therefore silently switch the report to different tests, with a different meaning
of "score", from the ones Evidently (and ctloop) use on the full data. :func:`default_stattest`
makes the choice on the full frames and the report forces it per column (``per_column_method``),
with ctloop's thresholds (``drift_stats.THRESHOLDS``, ``per_column_threshold``), which are the
same tests ctloop decides with. One exception: Evidently applies chi-square or the Z-test
to a small numeric column with at most 5 values but refuses them by name for a numeric column, so
there its own choice on the sample stands; it is the same unless sampling hid some of the values.

One verdict: Evidently's headline ("Dataset Drift is detected ... threshold X") is the pipeline's
own rule, so it agrees with ctloop's decision on the same data. Its dataset-drift share counts the
features only, as ctloop's does, against the pipeline's ``monitoring.drift.share``; ``score`` and
``prediction`` are reported beside it (``ValueDrift``), outside the share. What can still differ is
the sample: the report sees at most ``sample_rows`` rows a side, the decision all of them.

Only the listed columns reach Evidently, with their kinds given explicitly (never inferred):
Evidently crashes on empty frames, all-NaN numeric columns and unexpected extra columns, so
:func:`build_report` checks the frames first and raises :class:`~ctloop.errors.DriftInputError`
naming the column and the frame.

Security: Evidently's HTML embeds data values (category values, labels) unescaped inside a
``<script>`` block, so a value like ``</script><img onerror=...>`` runs as script when the page is
opened. The banner added here is escaped, but the page as a whole is untrusted content: serve it
only sandboxed (CSP ``sandbox``, or an iframe without ``allow-same-origin``), never from Airflow's
own origin. Sandboxing is the job of whatever serves the file, not of this module.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ctloop.errors import DriftInputError
from ctloop.monitoring.drift_stats import DEFAULT_DRIFT_SHARE, THRESHOLDS
from ctloop.rendering import render

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_ROWS = 20_000
"""Measured on 2 cores, 1M rows a side, 20 numeric + 5 categorical features + score and prediction:
4.6 s at 20,000 rows, 3.9 s at 10,000, 3.7 s at 5,000. About 3.3 s of it is Evidently plotting each
column (about 0.12 s a column), which fewer rows do not shrink; 20,000 rows keep the sampling noise
of the distances well below their 0.1 thresholds."""

SCORE, PREDICTION = "score", "prediction"
LARGE_SAMPLE = 1_000
"""Evidently switches from p-value tests to distances above this many reference rows."""
FEW_VALUES = 5
"""A numeric column with at most this many distinct values is tested as Evidently tests categories."""

MAX_CLASSES_SHOWN = 50
"""The summary lists at most this many class labels (``class_count`` has them all)."""

_P_VALUE_TESTS = {"ks", "chisquare", "z"}
_CATEGORICAL_ONLY = {"chisquare", "z"}
"""Evidently calls these on a small numeric column with few values, but refuses them by name for
numeric columns; such a column is left to Evidently's own choice on the sample."""
_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}
"""Registry names of the tests Evidently reports by display name when it picked them itself."""
_BODY = re.compile(r'<body>(?=\s*<div id="root_)')
"""The page's own ``<body>``: the data block in ``<head>`` is JSON, where ``"`` is always escaped."""


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    target: str,
    task: str,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    title: str,
) -> tuple[str, dict[str, Any]]:
    """Build the Evidently HTML page and a small JSON-able dict of what Evidently computed.

    ``reference`` and ``current`` hold the features plus ``score`` and ``prediction`` (the
    reference scored by the champion); ``current`` may hold ``target`` where labels arrived. Drift
    is tested on the listed features, ``score`` (numeric) and ``prediction`` (categorical for
    classification, numeric for regression), with the tests Evidently picks on the full frames and
    ctloop's thresholds; the dataset is drifted when the share of drifted features reaches
    ``drift_share`` (the pipeline's ``monitoring.drift.share``).
    Model quality is computed on the labeled rows of ``current``, and skipped without labels.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be positive, not {sample_rows}")
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share must be in (0, 1], not {drift_share}")
    kinds = column_kinds(numeric, categorical, task)
    for name, frame in (("reference", reference), ("current", current)):
        check_frame(frame, name, kinds)
    labeled = _labeled(current, target)
    sampled = ReportData(
        reference=sample_frame(reference, sample_rows, seed, stream=0),
        current=sample_frame(current, sample_rows, seed, stream=1),
        labeled=None if labeled is None else sample_frame(labeled, sample_rows, seed, stream=2),
        reference_rows=len(reference),
        current_rows=len(current),
        labeled_rows=0 if labeled is None else len(labeled),
        methods={
            column: default_stattest(reference[column], current[column], kind)
            for column, kind in kinds.items()
        },
        classes=distinct_labels(
            current[PREDICTION],
            reference[PREDICTION],
            *([reference[target]] if target in reference.columns else []),
        ),
    )
    return build_sampled_report(
        sampled,
        numeric=numeric,
        categorical=categorical,
        target=target,
        task=task,
        sample_rows=sample_rows,
        seed=seed,
        drift_share=drift_share,
        title=title,
    )


@dataclass(frozen=True)
class ReportData:
    """What the report reads: seeded samples of at most ``sample_rows`` rows of each side (see
    :func:`sample_positions`), and what it needs of all the rows, the only figures that grow
    with the data: row counts, the drift test of each column (:func:`default_stattest`, which is
    ctloop's ``ColumnDrift.stattest``), and the known classes (:func:`distinct_labels` of the
    predictions of both sides and of the reference's labels)."""

    reference: pd.DataFrame
    current: pd.DataFrame
    labeled: pd.DataFrame | None  # the current rows with a label and a prediction (target, prediction, score)
    reference_rows: int
    current_rows: int
    labeled_rows: int
    methods: dict[str, str]
    classes: list[Any]


def build_sampled_report(
    data: ReportData,
    *,
    numeric: list[str],
    categorical: list[str],
    target: str,
    task: str,
    sample_rows: int,
    seed: int,
    drift_share: float,
    title: str,
) -> tuple[str, dict[str, Any]]:
    """:func:`build_report` from samples drawn by the caller (a reader of partitions that never
    holds a whole window); the samples must have been drawn with ``sample_rows`` and ``seed``."""
    kinds = column_kinds(numeric, categorical, task)
    reference_sample = _prepare(data.reference, kinds)
    current_sample = _prepare(data.current, kinds)
    skipped = _empty_insample_frame(reference_sample, current_sample, kinds)
    tested = {column: kind for column, kind in kinds.items() if column not in skipped}
    if not any(column not in (SCORE, PREDICTION) for column in tested):
        raise DriftInputError("no listed feature has a value in both samples; raise sample_rows")
    drift_snapshot = _run_drift(reference_sample, current_sample, tested, data.methods, drift_share)
    quality_snapshot, quality = _run_quality(data, target, task)

    summary = {
        "title": title,
        "engine": _evidently_version(),
        "sample": {
            "seed": seed,
            "sample_rows": sample_rows,
            "reference": {"rows": data.reference_rows, "sampled": len(reference_sample)},
            "current": {"rows": data.current_rows, "sampled": len(current_sample)},
        },
        "drift": {**_drift_results(drift_snapshot.dict(), tested, numeric, categorical), "skipped": skipped},
        "quality": quality,
    }
    page = _render([drift_snapshot, quality_snapshot])
    banner = render("drift_banner.html", summary=summary)  # escapes every value
    return _insert_banner(page, banner), _jsonable(summary)


def column_kinds(numeric: list[str], categorical: list[str], task: str) -> dict[str, str]:
    """Every column the report tests, mapped to ``"numeric"`` or ``"categorical"``."""
    prediction_kind = "categorical" if task == "classification" else "numeric"
    pairs = [
        *((c, "numeric") for c in numeric),
        *((c, "categorical") for c in categorical),
        (SCORE, "numeric"),
        (PREDICTION, prediction_kind),
    ]
    kinds: dict[str, str] = {}
    for column, kind in pairs:
        if column in kinds:
            raise DriftInputError(f"column {column!r} is listed twice (features, 'score' and 'prediction')")
        kinds[column] = kind
    return kinds


def check_frame(frame: pd.DataFrame, name: str, kinds: dict[str, str]) -> None:
    """Raise DriftInputError for what would crash Evidently or mean nothing: an empty frame, a
    missing column, a column without any (finite) value, a numeric column that is not numeric."""
    if len(frame) == 0:
        raise DriftInputError(f"the {name} frame is empty")
    for column, kind in kinds.items():
        if column not in frame.columns:
            raise DriftInputError(f"column {column!r} is missing from the {name} frame")
        series = frame[column]
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(series):
            raise DriftInputError(f"numeric column {column!r} in the {name} frame has dtype {series.dtype}")
        if not _valid(series, kind).any():
            raise DriftInputError(f"column {column!r} is all null in the {name} frame")


def default_stattest(reference: pd.Series, current: pd.Series, kind: str) -> str:
    """The drift test Evidently 0.7 picks for these full columns (its registry name).

    Mirrors ``_get_default_stattest``: the size that matters is the number of non-null reference
    values; the distinct values are counted over both columns, and only as far as the rule needs.
    """
    large = int(_valid(reference, kind).sum()) > LARGE_SAMPLE
    if large and kind == "categorical":
        return "jensenshannon"
    if kind == "numeric" and _more_distinct_than(FEW_VALUES, reference, current, kind):
        return "wasserstein" if large else "ks"
    if large:
        return "jensenshannon"
    return "chisquare" if _more_distinct_than(2, reference, current, kind) else "z"


def _valid(series: pd.Series, kind: str) -> np.ndarray:
    """Which values Evidently tests: not null and, for numbers, finite."""
    valid: np.ndarray
    if kind == "numeric":
        valid = np.isfinite(series.to_numpy(dtype="float64", na_value=np.nan))
    else:
        valid = series.notna().to_numpy()
    return valid


def _more_distinct_than(limit: int, reference: pd.Series, current: pd.Series, kind: str) -> bool:
    """Whether both columns together hold more than ``limit`` distinct values. A continuous
    column answers from its first rows; counting all distinct values of a million floats takes
    a third of a second per column."""
    for rows in (1_000, None):
        parts = [s.iloc[:rows] for s in (reference, current)]
        values = pd.concat([s[_valid(s, kind)] for s in parts], ignore_index=True)
        if values.nunique() > limit:
            return True
    return False


def sample_positions(rows: int, sample_rows: int, seed: int, *, stream: int) -> np.ndarray | None:
    """The sorted positions of a uniform random sample of at most ``sample_rows`` of ``rows``
    rows, None for all of them; the same for the same seed. Each side draws from its own stream
    (0 reference, 1 current, 2 labeled current), so one side's size does not move another's.
    A reader of partitions takes these positions from each partition in turn, so it holds the
    sample and never the whole frame."""
    if rows <= sample_rows:
        return None
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(rows, size=sample_rows, replace=False))


def sample_frame(frame: pd.DataFrame, rows: int, seed: int, *, stream: int) -> pd.DataFrame:
    """The rows of ``frame`` at :func:`sample_positions`, in the frame's order."""
    positions = sample_positions(len(frame), rows, seed, stream=stream)
    return frame if positions is None else frame.iloc[positions]


def _prepare(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Only the listed columns, numbers as float64 (no pandas NA), categories as strings (a value
    read as ``1`` on one side and ``"1"`` on the other is one category), nulls kept."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for column, kind in kinds.items():
        values = frame[column].reset_index(drop=True)
        if kind == "numeric":
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            out[column] = values.astype(object).where(values.isna(), values.astype(str))
    return out


def _empty_insample_frame(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str]
) -> dict[str, str]:
    """Columns sparse enough to have no value in a sample: Evidently would crash on them."""
    skipped = {}
    for column, kind in kinds.items():
        for name, frame in (("reference", reference), ("current", current)):
            if not _valid(frame[column], kind).any():
                skipped[column] = f"no value in the {name} sample"
                break
    return skipped


def _run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, str],
    methods: dict[str, str],
    drift_share: float,
) -> Snapshot:
    """Dataset drift over the features (ctloop's share and threshold), score and prediction beside it."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    columns = list(kinds)
    definition = DataDefinition(
        numerical_columns=[c for c in columns if kinds[c] == "numeric"],
        categorical_columns=[c for c in columns if kinds[c] == "categorical"],
    )
    forced = {
        c: methods[c] for c in columns if not (kinds[c] == "numeric" and methods[c] in _CATEGORICAL_ONLY)
    }
    thresholds = {c: THRESHOLDS[methods[c]] for c in columns}
    features = [c for c in columns if c not in (SCORE, PREDICTION)]
    preset = DataDriftPreset(
        columns=features,
        drift_share=drift_share,
        per_column_method={c: forced[c] for c in features if c in forced},
        per_column_threshold={c: thresholds[c] for c in features},
    )
    outputs = [
        ValueDrift(column=c, method=forced.get(c), threshold=thresholds[c])
        for c in columns
        if c not in features
    ]
    # include_tests: each column's test, and the dataset's, carries Evidently's own verdict.
    return Report([preset, *outputs], include_tests=True).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def _drift_results(
    result: dict[str, Any], kinds: dict[str, str], numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    """Per column: kind, role, test, threshold, score and Evidently's verdict; for the dataset: the
    drifted features, their share, the threshold and Evidently's verdict, from ``Snapshot.dict()``."""
    verdicts = {test["metric_config"]["metric_id"]: test["status"] for test in result["tests"]}
    columns: dict[str, dict[str, Any]] = {}
    drifted: dict[str, Any] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            drifted = {
                "count": int(metric["value"]["count"]),
                "share": metric["value"]["share"],
                "threshold": config["drift_share"],
                "dataset_drift": verdicts[metric["id"]] == "FAIL",
            }
        elif kind == "ValueDrift":
            column, method = config["column"], _NAMES.get(config["method"], config["method"])
            columns[column] = {
                "kind": kinds[column],
                "role": column if column in (SCORE, PREDICTION) else "feature",
                "method": method,
                "statistic": "p_value" if method in _P_VALUE_TESTS else "distance",
                "threshold": config["threshold"],
                "score": metric["value"],
                "detected": verdicts[metric["id"]] == "FAIL",
            }
    order = [*numeric, *categorical, SCORE, PREDICTION]
    columns = {c: columns[c] for c in order if c in columns}
    return {
        "columns": columns,
        "detected": [c for c, info in columns.items() if info["detected"]],
        "drifted_columns": drifted,
    }


def _labeled(current: pd.DataFrame, target: str) -> pd.DataFrame | None:
    """The current rows whose label arrived and that have a prediction; None when there are none."""
    if target not in current.columns:
        return None
    labeled = current[current[target].notna() & current[PREDICTION].notna()]
    return None if labeled.empty else labeled


def _run_quality(data: ReportData, target: str, task: str) -> tuple[Snapshot | None, dict[str, Any]]:
    labeled = data.labeled
    if labeled is None or labeled.empty:
        return None, {"computed": False, "reason": f"no labeled rows in current (column {target!r})"}
    info: dict[str, Any] = {
        "computed": True,
        "task": task,
        "labeled_rows": data.labeled_rows,
        "sampled": len(labeled),
    }
    if task == "regression":
        frame, definition, preset = _regression_setup(labeled, target, info)
    else:
        frame, definition, preset = _classification_setup(labeled, data.classes, target, info)

    if frame.empty:
        return None, {**info, "computed": False, "reason": f"no labeled row has a numeric {target!r}"}

    from evidently import Dataset, Report

    try:
        snapshot = Report([preset]).run(current_data=Dataset.from_pandas(frame, data_definition=definition))
    except Exception as error:  # quality is the secondary section: keep the drift report, say why
        logger.warning("Evidently could not compute model quality", exc_info=True)
        return None, {
            **info,
            "computed": False,
            "reason": f"Evidently failed: {type(error).__name__}: {error}",
        }
    info["metrics"] = _quality_metrics(snapshot.dict())
    return snapshot, info


def _regression_setup(
    labeled: pd.DataFrame, target: str, info: dict[str, Any]
) -> tuple[pd.DataFrame, Any, Any]:
    from evidently import DataDefinition, Regression
    from evidently.presets import RegressionPreset

    frame = pd.DataFrame(
        {
            target: pd.to_numeric(labeled[target], errors="coerce").astype("float64").to_numpy(),
            PREDICTION: pd.to_numeric(labeled[PREDICTION], errors="coerce").astype("float64").to_numpy(),
        }
    ).dropna()
    info["mode"] = "regression"
    definition = DataDefinition(
        numerical_columns=[target, PREDICTION], regression=[Regression(target=target, prediction=PREDICTION)]
    )
    return frame, definition, RegressionPreset()


def _classification_setup(
    labeled: pd.DataFrame, known: list[Any], target: str, info: dict[str, Any]
) -> tuple[pd.DataFrame, Any, Any]:
    """Binary with ``score`` as the probability of the positive class when exactly two classes are
    known and both occur among the labels; otherwise labels only (``score`` is then the top class's
    probability, not one class's, or Evidently cannot find the negative class).

    As ctloop's scoring does (``model.classes_[1]``), the positive class is the larger of the two in
    sorted order. The known classes include the reference's labels, when it has them, so a class
    the model knows but production has not shown yet still counts.
    """
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification
    from evidently.presets import ClassificationPreset

    frame = pd.DataFrame(
        {
            target: _as_labels(labeled[target]).to_numpy(),
            PREDICTION: _as_labels(labeled[PREDICTION]).to_numpy(),
            SCORE: pd.to_numeric(labeled[SCORE], errors="coerce").astype("float64").to_numpy(),
        }
    )
    classes = _sorted({*distinct_labels(frame[target], frame[PREDICTION]), *known})
    info["classes"], info["class_count"] = classes[:MAX_CLASSES_SHOWN], len(classes)
    labels_seen = frame[target].unique().tolist()
    if len(classes) == 2 and len(labels_seen) == 2 and frame[SCORE].notna().all():
        pos_label = _sorted(labels_seen)[-1]
        info["mode"], info["pos_label"] = "binary", pos_label
        task = BinaryClassification(
            target=target, prediction_labels=PREDICTION, prediction_probas=SCORE, pos_label=pos_label
        )
        numerical = [SCORE]
    else:
        info["mode"] = "labels"
        frame = frame.drop(columns=SCORE)
        task = MulticlassClassification(target=target, prediction_labels=PREDICTION)
        numerical = []
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=[target, PREDICTION], classification=[task]
    )
    return frame, definition, ClassificationPreset()


def _as_labels(series: pd.Series) -> pd.Series:
    """Class labels as the model wrote them: whole floats (a label column with nulls is read as
    float) back to integers, else Evidently mistakes labels for probabilities."""
    if pd.api.types.is_float_dtype(series):
        values = series.dropna()
        if (values == values.round()).all():
            return series.astype("int64")
    return series


def distinct_labels(*columns: pd.Series) -> list[Any]:
    """The distinct class labels of ``columns``, as the report reads labels (:func:`_as_labels`):
    a reader of partitions passes one column at a time and keeps only these values."""
    known: set[Any] = set()
    for column in columns:
        known.update(_as_labels(column.dropna()).unique().tolist())
    return list(known)


def _sorted(values: Any) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # labels of mixed types
        return sorted(values, key=str)


def _quality_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """Top-level metric values keyed by metric type (``Accuracy``, ``RocAuc``, ``RMSE``...)."""
    metrics: dict[str, Any] = {}
    for metric in result["metrics"]:
        name = metric["config"]["type"].rsplit(":", 1)[-1]
        metrics[metric["metric_name"] if name in metrics else name] = metric["value"]
    return metrics


def _render(snapshots: list[Snapshot | None]) -> str:
    """One page from several snapshots: their widgets one after the other, through public API."""
    from evidently import Run

    models = [s.to_snapshot_model() for s in snapshots if s is not None]
    page = models[0].copy()
    page.widgets = [w for m in models for w in m.widgets]
    page.tests_widgets = [w for m in models for w in m.tests_widgets]
    html_page: str = Run.load_model(page).get_html_str(as_iframe=False)
    return html_page


def _insert_banner(page: str, banner: str) -> str:
    match = _BODY.search(page)
    if match is None:
        raise RuntimeError(
            "Evidently's page has no <body> followed by its root element; cannot add the banner"
        )
    return page[: match.end()] + banner + page[match.end() :]


def _evidently_version() -> str:
    from evidently import __version__

    return f"evidently {__version__}"


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, dict keys as strings, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
