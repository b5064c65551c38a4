"""The names ctloop writes on MLflow runs and model versions: tags, params and metric prefixes.

They are an interface: reviewers filter runs by them, the UI and the monitor read them back, and
registries written by earlier releases hold them, so a name here never changes once released.
Keeping them in one module lets a reader see every record a training leaves, and stops a typo (or
a rename of a Python module) from silently writing a second name for the same fact.
"""

from __future__ import annotations

TAG_VALUE_CHARS = 5000  # MLflow refuses longer tag values; free text is cut to this

# Provenance of a training run, on the run and copied to its version.
PIPELINE = "ctloop.pipeline"
RUN_KEY = "ctloop.run_key"
DAG_RUN_ID = "ctloop.dag_run_id"
REASON = "ctloop.reason"
TRIGGER = "ctloop.trigger"
STARTED_BY = "ctloop.started_by"  # the person who started the run, or the automatic actor (ledger.actor)
MLFLOW_USER = "mlflow.user"  # MLflow's own "User" of a run: set to the person who started a manual run
ALERT_ID = "ctloop.alert_id"
REQUEST_ID = "ctloop.request_id"
TRIGGER_REPORTS = "ctloop.trigger_reports"
NOTE = "ctloop.note"
CODE_VERSION = "ctloop.code_version"
DATA_SHA256 = "ctloop.data_sha256"
DATA_URI = "ctloop.data_uri"
DATA_WINDOW = "ctloop.data_window"  # the window trained on: all, batches:N, days:N
DATA_SAMPLE = "ctloop.data_sample"  # data.max_rows: rows before and after, seed and classes (or "all N rows")
WINDOW_SELECTION = "ctloop.window_selection"  # JSON: how an alert run chose it, every alternative scored
GATE_MODE = "ctloop.gate_mode"
SPEC_SHA256 = "ctloop.spec_sha256"  # the spec the run trained by: with the data, what makes an attempt
ATTEMPT = "ctloop.attempt"  # which attempt of its Airflow run (1, 2...): a re-run on other data is another
SUPERSEDED_BY = "ctloop.superseded_by"  # on an earlier attempt's run and version: which attempt replaced it
# The user's own code a model was built with (``features.factory``, ``estimator.train_function``):
# its import path and the sha256 of its module's source, so a change of that code changes lineage.
FEATURES_CODE = "ctloop.features_code"
FEATURES_SHA256 = "ctloop.features_sha256"
TRAIN_FUNCTION = "ctloop.train_function"
TRAIN_FUNCTION_SHA256 = "ctloop.train_function_sha256"
TUNING = "ctloop.tuning"  # JSON: the search's best params and its summary, when the spec tunes

# Evidence of the steps.
VALIDATION = "ctloop.validation"
SUITE_KEY = "ctloop.suite_key"
HOLDOUT_DIGEST = "ctloop.holdout_digest"
HOLDOUT_KEY = "ctloop.holdout_key"
RECENT_HOLDOUT = "ctloop.recent_holdout"  # which labeled batches were set aside, or why none were
RECENT_HOLDOUT_DIGEST = "ctloop.recent_holdout_digest"
RECENT_HOLDOUT_KEY = "ctloop.recent_holdout_key"
MODEL_SHA256 = "ctloop.model_sha256"
IMPORTANCE_SHIFT = "ctloop.importance_shift"  # set when feature importance moved a lot from the champion

# The gate, the approval and the promotion.
GATE = "ctloop.gate"  # pending, passed, rejected, or abandoned (never judged: see ABANDONED)
GATE_SUMMARY = "ctloop.gate_summary"
GATE_RELATIVE_ON = "ctloop.gate_relative_on"  # the holdout relative rules were judged on
ABANDONED = "ctloop.abandoned"  # why a version was left unjudged: it serves only if its own run judges it
APPROVAL = "ctloop.approval"
APPROVED_BY = "ctloop.approved_by"
APPROVAL_COMMENT = "ctloop.approval_comment"
CHALLENGER = "ctloop.challenger"  # since when the version waits as challenger, or when and why it stopped
PROMOTION = "ctloop.promotion"
PREVIOUS_CHAMPION = "ctloop.previous_champion"
PROMOTED_AT = "ctloop.promoted_at"
LEDGER_SEQ = "ctloop.ledger_seq"

# A monitor run.
CHAMPION_VERSION = "ctloop.champion_version"
DECISION = "ctloop.decision"
WHY = "ctloop.why"
REPORT_URI = "ctloop.report_uri"
LABEL_SHIFT = "ctloop.label_shift"  # its verdict; + ".<signal>": each signal's (alert, ok, undecided)
ESTIMATE = "ctloop.estimate"  # the performance estimate's verdict; + ".<metric>": each metric's
QUALITY_VERDICT_PREFIX = "ctloop.quality."  # + metric: a quality rule's verdict (alert, ok, undecided)

# Params of a training run; the estimator's own params are logged as ESTIMATOR_PARAM_PREFIX + name.
ESTIMATOR = "estimator"
ESTIMATOR_PARAM_PREFIX = "estimator."
HOLDOUT_STRATEGY = "holdout.strategy"
HOLDOUT_FRACTION = "holdout.fraction"
HOLDOUT_SEED = "holdout.seed"
TRAIN_ROWS = "train_rows"
HOLDOUT_ROWS = "holdout_rows"
RECENT_HOLDOUT_ROWS = "recent_holdout_rows"

# Metrics of a training run: each metric of the candidate and of the champion, on the frozen
# holdout and on the recent holdout; on the version as tags VERSION_METRIC_PREFIX + metric name.
HOLDOUT_METRIC_PREFIX = "holdout_"
CHAMPION_METRIC_PREFIX = "champion_holdout_"
RECENT_METRIC_PREFIX = "recent_"
CHAMPION_RECENT_METRIC_PREFIX = "champion_recent_"
VERSION_METRIC_PREFIX = "ctloop.metric."
