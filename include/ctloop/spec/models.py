"""The pipeline spec's models: one strict YAML file per model, validated before any DAG is built.

Only pydantic is imported here, so DAG files can load every spec at parse time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ctloop.evaluation.metric_catalog import TaskKind, metric_names

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
CLASS_PATH_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


class _Strict(BaseModel):
    # defer_build: the validators are built once, for the whole PipelineSpec, when a spec is
    # first loaded, instead of once per model at import; a DAG file parse pays it once.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DataSource(_Strict):
    """Where training data lives: a file or a folder of batch files, local or ``s3://``."""

    uri: str = Field(description="s3://bucket/prefix, an absolute path, or a path under CTLOOP_HOME")
    format: Literal["csv", "parquet"]
    min_rows: int = Field(
        50,
        ge=2,
        description="training data with fewer rows fails validation, naming the data, before any training",
    )
    max_rows: int | None = Field(
        None,
        ge=2,
        description="more training rows than this: a seeded sample of this many is snapshotted and trained"
        " on (stratified by class for classification; a class never loses all its rows)",
    )
    sample_seed: int = Field(0, description="seed of the max_rows sample: the same data, the same rows")

    @model_validator(mode="after")
    def _sample_holds_min_rows(self) -> DataSource:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows {self.max_rows} is below min_rows {self.min_rows}")
        return self


class Columns(_Strict):
    """Every column the data may hold, by kind; a column not named here is unexpected."""

    target: str
    numeric: list[str] = []
    categorical: list[str] = []
    id: list[str] = Field(default=[], description="identifier columns, dropped before training")
    timestamp: str | None = None
    na_values: list[str] = Field(
        [""],
        description="the cell values read as missing in every data, batch and label file (only an empty"
        " cell by default; NA, null or n/a are values unless listed here). Ids and categoricals"
        " are read as text, so an expectation suite lists their values as strings",
    )

    @model_validator(mode="after")
    def _names_are_distinct(self) -> Columns:
        if not self.numeric and not self.categorical:
            raise ValueError("at least one numeric or categorical feature is required")
        names = self.all_names()
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"columns named more than once: {', '.join(repeated)}")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def all_names(self) -> list[str]:
        extra = [self.timestamp] if self.timestamp else []
        return [*self.id, *extra, *self.numeric, *self.categorical, self.target]


def _dotted_path(value: str) -> str:
    if not CLASS_PATH_PATTERN.match(value):
        raise ValueError(
            f"{value!r} is not a dotted import path such as sklearn.linear_model.LogisticRegression"
        )
    return value


DottedPath = Annotated[str, AfterValidator(_dotted_path)]


class Estimator(_Strict):
    """An importable estimator with the scikit-learn API (scikit-learn, XGBoost, LightGBM, ...)
    and the params from committed config; optionally the user's own training function."""

    class_path: DottedPath
    params: dict[str, object] = {}
    trusted_types: list[DottedPath] = Field(
        [],
        description="exact type names the saved model may hold besides the scientific stack (sklearn,"
        " numpy, scipy), ctloop's reviewed XGBoost and LightGBM types and the types of the spec's own"
        " feature and training modules; the model is saved and loaded with skops, never pickle, and a"
        " type listed nowhere is refused, by name, when the model is logged",
    )
    train_function: DottedPath | None = Field(
        None,
        description="module.function called as f(features, target, params, context) instead of fit();"
        " it returns the fitted model (predict, and predict_proba and classes_ for classification)",
    )


class Features(_Strict):
    """The user's own feature code: ``factory`` (module.function) returns an unfitted scikit-learn
    transformer that runs before ctloop's preprocessing, identically in training and scoring."""

    factory: DottedPath = Field(description="module.function returning an unfitted scikit-learn transformer")
    params: dict[str, object] = Field({}, description="keyword arguments of the factory")


class TuningParam(_Strict):
    """One dimension of the search space: an int or float range (bounds included, ``log`` samples
    evenly on a log scale), or a list of choices."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[bool | int | float | str | None] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _range_or_choices(self) -> TuningParam:
        if self.type == "categorical":
            if self.choices is None or self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter sets choices (and no low, high or log)")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError("a categorical parameter lists each choice once")
        elif self.low is None or self.high is None or self.choices is not None or self.low > self.high:
            raise ValueError(f"an {self.type} parameter sets low <= high (and no choices)")
        elif self.type == "int" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("an int parameter has whole-number low and high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs low > 0")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of an int or float parameter."""
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter has no low and high")
        return self.low, self.high


class Tuning(_Strict):
    """An Optuna search (seeded TPE) over ``space`` on a validation split cut from the training
    data, never the holdouts; the best params, merged over ``estimator.params``, train the
    candidate, which faces the same gates."""

    space: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], TuningParam] = Field(
        min_length=1,
        description="estimator params (or the training function's) by name; a sampled value overrides"
        " estimator.params. A name or value the estimator refuses fails its trial; when every trial"
        " fails the run fails, naming tuning.space and the estimator's error",
    )
    trials: int = Field(20, ge=1, le=10_000, description="at most this many trials")
    timeout_seconds: float = Field(
        300.0, gt=0.0, description="no trial starts after this (the first always runs)"
    )
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of the training rows")
    metric: str | None = Field(None, description="the metric optimised; default gates' primary metric")
    seed: int = 0


class Explanations(_Strict):
    """Permutation importance of every input feature for the candidate and the champion, on a
    seeded sample of the frozen holdout; a feature whose share of the total importance moved by
    more than ``shift_threshold`` is reported as a large shift."""

    enabled: bool = True
    sample_rows: int = Field(2000, ge=50, description="holdout rows permuted (a seeded sample)")
    repeats: int = Field(3, ge=1, le=50, description="permutations per feature")
    shift_threshold: float = Field(0.15, gt=0.0, le=1.0, description="change in a feature's share")
    seed: int = 0


class Holdout(_Strict):
    """How the frozen holdout is cut; both candidate and champion are scored on it.

    ``fraction`` assigns a row by a seeded hash of its id, so a row stays on the same side as
    the data grows; ``time`` holds out the latest ``fraction`` of rows by timestamp.
    """

    strategy: Literal["fraction", "time"] = "fraction"
    fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0


class GateRule(_Strict):
    """One promotion rule: exactly one of the four bounds is set."""

    metric: str
    at_least: float | None = None
    at_most: float | None = None
    min_improvement: float | None = Field(None, description="better than the champion by at least")
    max_regression: float | None = Field(None, ge=0.0, description="worse than the champion by at most")

    @model_validator(mode="after")
    def _exactly_one_bound(self) -> GateRule:
        bounds = [
            k
            for k in ("at_least", "at_most", "min_improvement", "max_regression")
            if getattr(self, k) is not None
        ]
        if len(bounds) != 1:
            raise ValueError(
                "a gate rule sets exactly one of at_least, at_most, min_improvement, max_regression"
                f" (got {', '.join(bounds) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(
            k
            for k in ("at_least", "at_most", "min_improvement", "max_regression")
            if getattr(self, k) is not None
        )

    @property
    def bound(self) -> float:
        return float(getattr(self, self.kind))

    @property
    def relative(self) -> bool:
        return self.kind in ("min_improvement", "max_regression")


class BootstrapRule(_Strict):
    """Paired bootstrap over the shared holdout: the lower bound of the ``confidence`` interval of
    (candidate - champion), in the metric's good direction, must be at least ``margin``."""

    metric: str
    margin: float = 0.0
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 0


class Slice(_Strict):
    """Holdout rows grouped by one column: by its ``values`` (each value one slice; all values seen
    when omitted) or, for a numeric column, by ``bins`` edges (left-closed intervals)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]
    column: str
    # bool first: an unquoted YAML yes/no stays True/False (and visibly matches no text value)
    values: list[bool | str | int | float] | None = Field(None, min_length=1)
    bins: list[float] | None = None

    @model_validator(mode="after")
    def _values_or_bins(self) -> Slice:
        if self.values is not None and self.bins is not None:
            raise ValueError("a slice sets values or bins, not both")
        if self.bins is not None and (len(self.bins) < 2 or sorted(set(self.bins)) != self.bins):
            raise ValueError("bins are at least two strictly increasing edges")
        return self


class SliceRules(_Strict):
    """Per-slice judgement: no slice may regress against the champion by more than
    ``max_regression``; the candidate's best and worst slice may differ by at most ``max_gap``.
    Slices with fewer than ``min_rows`` holdout rows (or one class only) are reported, not judged."""

    metric: str
    max_regression: float | None = Field(None, ge=0.0)
    max_gap: float | None = Field(None, ge=0.0)
    min_rows: int = Field(30, ge=1)


class LatencyRule(_Strict):
    """Limits on predicting with the registered model loaded as a user would load it
    (``mlflow.pyfunc.load_model``): one row, and a batch of ``batch_rows``, ``repeats`` times each."""

    batch_rows: int = Field(1000, ge=2)
    repeats: int = Field(20, ge=5, le=1000)
    single_p50_ms: float | None = Field(None, gt=0)
    single_p95_ms: float | None = Field(None, gt=0)
    batch_p50_ms: float | None = Field(None, gt=0)
    batch_p95_ms: float | None = Field(None, gt=0)


class RecentHoldout(_Strict):
    """A share of the most recent labeled production batches' rows, set aside from every
    candidate's training and scored like the frozen holdout: after a change in the world the
    frozen holdout describes the past, these rows the present. Fewer than ``min_rows`` rows (or
    one class only) are trained on as before and judged on by nobody; the run records why."""

    batches: int = Field(1, ge=1, description="how many of the most recent labeled production batches")
    fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="the share of those batches' rows held out (by a seeded hash of the row ids); the rest"
        " is trained on, so a retrain right after a change learns from the only rows that show it. Under"
        " min_rows the whole batches are held out",
    )
    min_rows: int = Field(200, ge=1, description="fewer labeled rows than this: not set aside, not judged on")
    judge_relative: Literal["alert", "always", "never"] = Field(
        "alert",
        description="the runs whose relative rules and bootstrap are judged on it: those an alert started"
        " (the monitor's asset event or an external alert), every run, or none",
    )
    relax_absolute: bool = Field(
        True,
        description="where relative rules are judged on it: an absolute rule the champion itself fails"
        " on it is passed by a candidate that does better than the champion there, even if the candidate"
        " misses the bound on the frozen holdout (keeping the champion would not meet the rule either)",
    )


class AlertMetrics(_Strict):
    """How the gate judges a run the monitor's alert on quality metrics started (a quality rule
    that fired, a label shift, a deciding estimate): the candidate must be better than the
    champion on each fired metric where the relative rules are judged (``gates.bootstrap``, when
    set, judges the first fired metric at its margin and confidence, or stays on its own metric
    when that fired; the others by the point difference), and relative rules and the bootstrap on
    other metrics only must not be worse by more than ``max_regression``. After a moved decision
    threshold or class prior a better model ranks no better: asked for a better roc_auc, the gate
    would keep the wrong decisions."""

    enabled: bool = Field(
        True,
        description="judge such a run on the metrics that fired (its gate, and the score that chooses its"
        " training window); false: judged like any run, on the spec's rules and primary metric",
    )
    max_regression: float = Field(
        0.01,
        ge=0.0,
        description="in such a run, how much worse than the champion a candidate may be, in the metric's"
        " units, on a metric that did not fire: replaces min_improvement of relative rules and, for the"
        " bootstrap, the interval's lower bound must be >= -max_regression",
    )


class Gates(_Strict):
    """The promotion policy; ``dry_run`` records the decision but never promotes.

    ``approval: required`` makes a person approve (Airflow's human-in-the-loop) after the automatic
    gates pass; with no answer within ``approval_timeout_hours`` the candidate is rejected.
    """

    mode: Literal["enabled", "dry_run"] = "enabled"
    rules: list[GateRule] = []
    bootstrap: BootstrapRule | None = None
    slices: list[Slice] = []
    slice_rules: SliceRules | None = None
    latency: LatencyRule | None = None
    approval: Literal["none", "required"] = "none"
    approval_timeout_hours: float = Field(72.0, gt=0.0)
    primary_metric: str | None = Field(
        None, description="decides between two candidates that both pass; default roc_auc / rmse"
    )
    recent_holdout: RecentHoldout = RecentHoldout()
    alert_metrics: AlertMetrics = AlertMetrics()

    def unknown_metrics(self, task: TaskKind) -> list[str]:
        """One message per rule whose metric a ``task`` training does not produce, naming the field."""
        known = metric_names(task)
        return [
            f"gates.rules.{index}.metric: {rule.metric!r} is not a metric a {task} training produces;"
            f" choose one of {', '.join(known)}"
            for index, rule in enumerate(self.rules)
            if rule.metric not in known
        ]

    @model_validator(mode="after")
    def _slices_named_once(self) -> Gates:
        names = [s.name for s in self.slices]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"slices named more than once: {', '.join(repeated)}")
        if self.slice_rules is not None and not self.slices:
            raise ValueError("slice_rules needs at least one slice in gates.slices")
        return self


class Notifications(_Strict):
    """Where promotions, rejections, rollbacks, breaker trips and approval requests are sent: an
    Airflow HTTP connection (webhook). When the connection does not exist, they are only logged."""

    conn_id: str = "ctloop_webhook"


class Schedule(_Strict):
    """Cron expressions (or null for none) of the pipeline's DAGs."""

    train: str | None = None
    score: str | None = "*/30 * * * *"
    monitor: str | None = "0 * * * *"


class Scoring(_Strict):
    """Where production batches land and where their late labels arrive.

    Locations are like ``data.uri``: ``s3://...``, absolute, or relative to CTLOOP_HOME. Unset,
    they are ``data/<pipeline>/incoming`` and ``data/<pipeline>/labels``.
    """

    incoming_uri: str | None = None
    labels_uri: str | None = None
    format: Literal["csv", "parquet"] = "csv"
    chunk_rows: int = Field(
        100_000,
        ge=1,
        description="rows read, checked, predicted and written at a time: a scoring task holds about one"
        " chunk of the batch (its frame and predictions), whatever the batch's size",
    )
    csv_block_mib: int = Field(
        4,
        ge=1,
        description="bytes the CSV reader parses at a time, in MiB; must exceed the longest row (the"
        " reader holds several blocks ahead)",
    )
    fan_out_rows: int = Field(
        2_000_000,
        ge=1,
        description="a batch with more rows is scored in parts of about this many rows, by parallel tasks",
    )
    max_parts: int = Field(
        8, ge=1, description="most parts one batch is split into (about the workers' task slots); 1: never"
    )

    @model_validator(mode="after")
    def _parts_hold_chunks(self) -> Scoring:
        if self.fan_out_rows < self.chunk_rows:
            raise ValueError(
                f"scoring.fan_out_rows ({self.fan_out_rows}) must be at least scoring.chunk_rows "
                f"({self.chunk_rows}): a part is scored in whole chunks"
            )
        return self


class DriftTrigger(_Strict):
    """Retrain when at least ``share`` of the features drift, or any of ``key_features`` does."""

    share: float = Field(0.5, gt=0.0, le=1.0)
    key_features: list[str] = []


class QualityRule(_Strict):
    """One metric the monitor watches on labeled production rows, and how far it may fall below
    the champion's reference before it alerts."""

    metric: str = Field(description="a metric of the task (ctloop.evaluation.metric_catalog)")
    max_drop: float = Field(
        ge=0.0, description="how much worse than the champion's reference it may be, in the metric's units"
    )


class QualityTrigger(_Strict):
    """Retrain when a rule's metric on labeled production rows is worse than the champion's
    reference by more than the rule's ``max_drop``, with ``confidence``, once at least
    ``min_labels`` labels have arrived.

    A metric sees one kind of change: roc_auc a model that no longer ranks, accuracy, f1,
    precision or recall one whose decision threshold no longer fits (a moved labelling
    threshold or class prior leaves the ranking intact), log_loss and brier one whose
    probabilities are off. ``rules`` watches several; the one-rule shape ``{metric, max_drop}``
    of earlier specs still reads as one rule. A drop counts only when the bootstrap interval of
    the metric over the window's labeled rows lies wholly beyond ``reference - max_drop``: a
    small or noisy window does not fire, a large clear drop fires at once.

    A significant drop of at least ``severe_multiple`` x ``max_drop`` is severe: the labels
    already show the model is wrong, so waiting for more windows or a cooldown only serves bad
    predictions longer."""

    rules: list[QualityRule] = Field(
        default_factory=lambda: [QualityRule(metric="roc_auc", max_drop=0.05)],
        min_length=1,
        description="the metrics watched, each with its max_drop; each metric at most once",
    )
    min_labels: int = Field(500, ge=1, description="fewer labeled rows in the window than this: undecided")
    severe_multiple: float = Field(
        3.0,
        gt=1.0,
        description="a drop of at least this many times max_drop, on at least min_labels labels, is"
        " severe: it retrains at once, bypassing retrain.k_of_n and retrain.cooldown_minutes (not the"
        " circuit breaker)",
    )
    reference: Literal["holdout", "recent"] = Field(
        "holdout",
        description="what the window is compared with: the champion's value on the frozen holdout, or on"
        " the recent holdout it was judged on at training (gates.recent_holdout: the latest labeled"
        " production rows then), where its run has one, else the frozen holdout",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="two-sided confidence of the interval a drop must clear"
    )
    resamples: int = Field(
        500,
        ge=100,
        le=100_000,
        description="bootstrap resamples of the labeled rows, all rules scored on the same draws (the"
        " cost grows with labeled rows x resamples: about 5 s for 100,000 labels and 500 resamples)",
    )
    bootstrap_rows: int = Field(
        50_000,
        ge=1_000,
        description="the interval is resampled from a seeded sample of at most this many labeled rows"
        " (the value from all of them): on more labels it is wider than it need be, so a drop it"
        " calls significant is significant, and the cost stays bounded however many labels arrive",
    )
    seed: int = Field(0, description="seed of the resampling, so a re-run decides the same")

    @model_validator(mode="before")
    @classmethod
    def _one_rule_shape(cls, data: object) -> object:
        """``{metric, max_drop}`` (the shape before rules) is the one rule ``rules: [{metric, max_drop}]``."""
        if not isinstance(data, dict) or not {"metric", "max_drop"} & set(data):
            return data
        if "rules" in data:
            raise ValueError("set metric and max_drop (one rule) or rules (several), not both")
        data = dict(data)
        rule = {"metric": data.pop("metric", "roc_auc"), "max_drop": data.pop("max_drop", 0.05)}
        return {**data, "rules": [rule]}

    @model_validator(mode="after")
    def _distinct_metrics(self) -> QualityTrigger:
        seen = [r.metric for r in self.rules]
        twice = sorted({m for m in seen if seen.count(m) > 1})
        if twice:
            raise ValueError(f"rules: each metric at most once ({', '.join(twice)} repeated)")
        return self

    @property
    def metric(self) -> str:
        """The first rule's metric: the one the champion watch, the window selection and the charts use."""
        return self.rules[0].metric

    @property
    def max_drop(self) -> float:
        return self.rules[0].max_drop


class ChampionWatch(_Strict):
    """After a promotion the previous champion shadow-scores every batch; once ``min_labels`` of
    those rows are labeled, the new champion's ``monitoring.quality.metric`` is compared with the
    previous one's on the same rows by a paired bootstrap. The new champion is rolled back when it
    is worse with ``confidence``: the interval of (new - previous), in the metric's good
    direction, lies wholly below ``-margin``. A promotion its gate judged on the metrics of the
    monitor's alert (``gates.alert_metrics``) is watched the same way: rolled back when worse
    beyond ``margin`` on a metric that fired, or on ``monitoring.quality.metric`` beyond
    ``gates.alert_metrics.max_regression`` (or ``margin``, if larger)."""

    enabled: bool = Field(
        True, description="shadow-score with the previous champion and roll back on a significant regression"
    )
    min_labels: int = Field(500, ge=1, description="fewer labeled shadow-scored rows than this: undecided")
    margin: float = Field(0.0, ge=0.0, description="a regression smaller than this never rolls back")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="two-sided confidence of the interval")
    resamples: int = Field(500, ge=100, le=100_000, description="bootstrap resamples of the paired rows")
    seed: int = Field(0, description="seed of the resampling, so a re-run decides the same")


class LabelShift(_Strict):
    """The labels of the window's labeled rows against the champion's training data
    (ctloop.monitoring.label_shift): the label rate or class mix (the mean, for regression), and
    the champion's predicted rate minus the observed one against the same gap on its holdout.
    A signal alerts when its shift is above the threshold and significant at ``confidence``."""

    enabled: bool = Field(True, description="measure label shift and let a significant one trigger a retrain")
    max_shift: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="classification: the largest change of the class mix that is not a shift (total variation"
        " distance: for two classes, the change of the positive rate)",
    )
    max_mean_shift: float = Field(
        0.25,
        gt=0.0,
        description="regression: the largest change of the label's mean (and of the mean prediction minus"
        " label) that is not a shift, in standard deviations of the training label",
    )
    max_label_distance: float = Field(
        0.25,
        gt=0.0,
        description="regression: the largest Wasserstein distance between the window's labels and the"
        " training labels (in training label standard deviations) that is not a shift; a change of spread"
        " by a factor s moves it by about 0.8 |s - 1|. Significance: two-sample Kolmogorov-Smirnov test",
    )
    confidence: float = Field(
        0.99,
        gt=0.5,
        lt=1.0,
        description="a shift alerts only when significant at this confidence (a Wald test)",
    )
    min_labels: int = Field(500, ge=1, description="fewer labeled rows in the window than this: undecided")


EstimatedMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc"]


class PerformanceEstimate(_Strict):
    """The champion's quality on the window as its own calibrated probabilities predict it, before
    labels arrive (confidence-based performance estimation, ctloop.monitoring.performance_estimate),
    against the same metrics realised on its holdout. Classification only."""

    enabled: bool = Field(True, description="estimate the window's quality from the champion's probabilities")
    decide: bool = Field(
        False,
        description="an estimated drop above max_drop is a retrain trigger; otherwise the estimate is"
        " reported and decides nothing",
    )
    metrics: list[EstimatedMetric] = Field(
        ["roc_auc", "accuracy", "f1"],
        min_length=1,
        description="the estimated metrics judged against max_drop",
    )
    max_drop: float = Field(
        0.05,
        ge=0.0,
        description="an estimate more than this below the holdout's value alerts when its whole interval is",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="two-sided confidence of the interval of what the window's labels will show (labels"
        " drawn from the calibrated probabilities) that a drop must clear; else undecided",
    )
    resamples: int = Field(
        500,
        ge=100,
        le=100_000,
        description="label draws of the parametric bootstrap of precision, recall, f1 and roc_auc (about"
        " 2 s for 20,000 rows and 500 draws); accuracy's interval is the normal one, from every row",
    )
    bootstrap_rows: int = Field(
        20_000,
        ge=1_000,
        description="the bootstrap draws labels for a seeded sample of at most this many window rows: on"
        " more rows the interval is wider than it need be, and the cost stays bounded",
    )
    min_rows: int = Field(1000, ge=1, description="fewer rows in the window than this: undecided")
    calibration_rows: int = Field(
        100_000,
        ge=100,
        description="at most this many holdout rows (a seeded sample) fit the calibration of the scores",
    )


class Monitoring(_Strict):
    """What the monitor compares: the last ``window_batches`` scored batches against the
    champion's training snapshot. Below ``min_rows`` current rows nothing is decided on drift."""

    window_batches: int = Field(3, ge=1)
    min_rows: int = Field(1000, ge=1)
    report_sample_rows: int = Field(20_000, ge=100)
    drift: DriftTrigger = DriftTrigger()
    quality: QualityTrigger = QualityTrigger()
    watch: ChampionWatch = ChampionWatch()
    label_shift: LabelShift = LabelShift()
    estimate: PerformanceEstimate = PerformanceEstimate()


class KOfN(_Strict):
    """Alert only when ``k`` of the last ``n`` monitored windows crossed a trigger."""

    k: int = Field(2, ge=1)
    n: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _k_within_n(self) -> KOfN:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n})")
        return self


class TrainingWindow(_Strict):
    """What a retrain trains on: all labeled data, or the last N batches or days of it."""

    window: Literal["all", "batches", "days"] = "all"
    last: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _last_when_windowed(self) -> TrainingWindow:
        if (self.window == "all") != (self.last is None):
            raise ValueError("'last' is required for window 'batches' or 'days', and only for them")
        return self


class WindowSelection(_Strict):
    """How a retrain an alert started chooses its training window when ``retrain.data`` is not
    set: one candidate per window (all history, the last k labeled batches, the labeled batches
    since the detected change point), each scored on the recent holdout, the best kept."""

    enabled: bool = Field(True, description="choose the window of alert-started runs from evidence")
    last_batches: list[Annotated[int, Field(ge=1)]] = Field(
        [1, 2],
        max_length=8,
        description="besides all history, a candidate on each of the last k labeled batches",
    )
    min_rows: int = Field(200, ge=1, description="a window with fewer training rows is skipped")
    min_gain: float = Field(
        0.005,
        ge=0.0,
        description="the largest window scoring within this of the best (primary metric) is kept",
    )
    budget_seconds: float = Field(
        300.0, gt=0.0, description="no candidate starts after this; all history always runs first"
    )


class Retrain(_Strict):
    """The guards between an alert and a retraining run, and what a retrain trains on."""

    k_of_n: KOfN = KOfN()
    cooldown_minutes: float = Field(360.0, ge=0.0, description="after a retrain an alert asked for")
    max_consecutive_rejections: int = Field(3, ge=1)
    data: TrainingWindow = Field(
        TrainingWindow(), description="set, it is the window of every run; unset, alert runs choose one"
    )
    selection: WindowSelection = WindowSelection()

    @property
    def data_is_explicit(self) -> bool:
        """Whether the YAML (or a run's trigger form) set ``data``: then no window is chosen."""
        return "data" in self.model_fields_set


class RetentionRule(_Strict):
    """How long one area's items are kept: unset, forever. With both limits an item goes only when it
    is older than ``max_age_days`` AND not among the newest ``keep_last``: either one keeps it."""

    max_age_days: float | None = Field(None, gt=0.0, description="items older than this many days may go")
    keep_last: int | None = Field(None, ge=1, description="the newest this many items always stay")

    @property
    def active(self) -> bool:
        return self.max_age_days is not None or self.keep_last is not None


class StagingRule(RetentionRule):
    """A rule for staging leftovers: by age only. Leftovers are the rare remains of batches that
    failed, so how many there are says nothing about which may go."""

    @field_validator("keep_last")
    @classmethod
    def _by_age_only(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("staging leftovers go by age only: set max_age_days, not keep_last")
        return value


class Retention(_Strict):
    """What the housekeeping DAG deletes, per area (ctloop.housekeeping.retention). Every area keeps
    everything by default. Whatever a rule says, nothing a registered model version, its run, the
    promotion ledger or an open retrain request references is deleted, nor what the monitor's window,
    the recent holdout and the champion watch read, nor the staging of a batch claim still open."""

    schedule: str | None = Field(
        "30 3 * * *", description="cron of <pipeline>__housekeeping; null: manual only"
    )
    dry_run: bool = Field(False, description="list what the rules would delete, delete nothing")
    snapshots: RetentionRule = RetentionRule()
    holdouts: RetentionRule = RetentionRule()
    predictions: RetentionRule = Field(
        RetentionRule(), description="prediction log partitions, one item per batch"
    )
    labeled: RetentionRule = Field(
        RetentionRule(), description="labeled partitions, one item per batch: training data of later runs"
    )
    reports: RetentionRule = Field(
        RetentionRule(), description="each run's folder of the pipeline's DAGs (runs/<dag>/<run>/)"
    )
    history: RetentionRule = Field(
        RetentionRule(), description="monitor history entries and label-join records"
    )
    set_aside: RetentionRule = Field(
        RetentionRule(), description="quarantined, conflicting and duplicate batches, quarantined labels"
    )
    retrain_requests: RetentionRule = Field(RetentionRule(), description="closed retrain requests")
    model_versions: RetentionRule = Field(
        RetentionRule(),
        description="registered versions that never served (never champion, never in the ledger)",
    )
    staging: StagingRule = Field(
        StagingRule(),
        description="leftovers of fanned-out batches never published, one item per claimed content"
        " (staging/<pipeline>/<batch id>/<sha256 prefix>/); by age only; a claim still open keeps its own",
    )
    label_wait_days: float = Field(
        30.0,
        ge=0.0,
        description="a batch's prediction partition stays at least this long while none of its labels"
        " has arrived",
    )


class PipelineSpec(_Strict):
    """A whole pipeline; its ``name`` names the DAGs, the MLflow experiment and registered model."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    owner: str = "ctloop"
    task: TaskKind = "classification"
    data: DataSource
    columns: Columns
    expectation_suite: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]
    estimator: Estimator
    features: Features | None = None
    tuning: Tuning | None = None
    explanations: Explanations = Explanations()
    holdout: Holdout = Holdout()
    gates: Gates = Gates()
    schedule: Schedule = Schedule()
    scoring: Scoring = Scoring()
    monitoring: Monitoring = Monitoring()
    retrain: Retrain = Retrain()
    notifications: Notifications = Notifications()
    retention: Retention = Retention()
    tags: list[str] = []

    @property
    def primary_metric(self) -> str:
        return self.gates.primary_metric or metric_names(self.task)[0]

    @property
    def incoming_uri(self) -> str:
        return self.scoring.incoming_uri or f"data/{self.name}/incoming"

    @property
    def labels_uri(self) -> str:
        return self.scoring.labels_uri or f"data/{self.name}/labels"

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        problems = self.gates.unknown_metrics(self.task)
        if self.holdout.strategy == "time" and not self.columns.timestamp:
            problems.append("holdout.strategy: 'time' needs columns.timestamp")
        if self.retrain.data.window == "days" and not self.columns.timestamp:
            problems.append("retrain.data.window: 'days' needs columns.timestamp")
        rules = self.monitoring.quality.rules
        problems += [  # one rule reads as the one-rule shape's monitoring.quality.metric
            f"monitoring.quality.{'metric' if len(rules) == 1 else f'rules.{index}.metric'}: {rule.metric!r}"
            f" is not a {self.task} metric; choose one of {', '.join(metric_names(self.task))}"
            for index, rule in enumerate(rules)
            if rule.metric not in metric_names(self.task)
        ]
        gate_metrics = {
            "gates.bootstrap.metric": self.gates.bootstrap.metric if self.gates.bootstrap else None,
            "gates.slice_rules.metric": self.gates.slice_rules.metric if self.gates.slice_rules else None,
            "gates.primary_metric": self.gates.primary_metric,
        }
        known = ", ".join(metric_names(self.task))
        problems += [
            f"{field}: {metric!r} is not a {self.task} metric; choose one of {known}"
            for field, metric in gate_metrics.items()
            if metric is not None and metric not in metric_names(self.task)
        ]
        problems += [
            f"gates.slices.{index}.column: {s.column!r} is not a column of the data"
            for index, s in enumerate(self.gates.slices)
            if s.column not in self.columns.all_names() or s.column == self.columns.target
        ]
        problems += [
            f"gates.slices.{index}.bins: {s.column!r} is not a numeric column"
            for index, s in enumerate(self.gates.slices)
            if s.bins is not None and s.column not in self.columns.numeric
        ]
        if self.tuning is not None and self.tuning.metric not in (None, *metric_names(self.task)):
            problems.append(
                f"tuning.metric: {self.tuning.metric!r} is not a {self.task} metric; choose one of {known}"
            )
        unknown = sorted(set(self.monitoring.drift.key_features) - set(self.columns.features))
        if unknown:
            problems.append(f"monitoring.drift.key_features: {', '.join(unknown)} are not feature columns")
        if problems:
            raise ValueError("; ".join(problems))
        return self
