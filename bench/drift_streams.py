"""Drift streams for the effectiveness benchmark: a small tabular binary task of our own (not the
churn generator), written as a replay's inputs, one stream per kind of change.

Every stream has the same columns: an id (``row_id``), four numeric features and two categorical
ones. Concept A labels a row by ``x1 + x2 + (months - 36) / 36 + 0.5 [plan = b]`` plus noise;
concept B by ``x1 - x2 - (months - 36) / 36 + 0.5 [plan = b]``, so a model of A is close to a coin
flip on B while the features keep their distribution. ``x3`` and ``region`` carry no signal.

Kinds (``change_at`` is the first changed batch):

- ``stable``: concept A throughout.
- ``abrupt``: concept B from ``change_at``.
- ``gradual``: from ``change_at``, a growing share of each batch (1/4, 2/4, 3/4, all) follows B.
- ``recurring``: A, then B for three batches from ``change_at``, then A again: an episode as
  short as the loop's reaction (see bench/README.md), reported but not held to a target.
- ``recurring_long``: the same with B for six batches, then four batches of A (its own batch
  count, ``change_at + 10``): episodes longer than the loop's reaction.
- ``covariate``: from ``change_at`` ``x1`` and ``months`` move (a drift episode), the rule stays A.
- ``prior``: from ``change_at`` only 20% of the rows are positive, with P(x | y) unchanged
  (rows of each class drawn as under A, in the new proportions).
- ``corrupted``: concept A, and batch ``change_at`` has an all-null ``x1``.
- ``threshold``: from ``change_at`` concept A's labelling threshold moves from 0 to
  ``THRESHOLD_AFTER`` while the features keep their distribution: the positive share falls by
  about 12 points (0.47 to 0.35); a model of A still ranks rows in the right order (roc_auc does
  not move) but its decisions between the two thresholds are now wrong (accuracy 0.91 to 0.86,
  brier 0.067 to 0.112).
- ``calibration``: from ``change_at`` concept A's signal is scaled by ``SCALE_AFTER`` in the label
  rule, so P(y | x) flattens toward 0.5 around the same boundary, with the same positive share:
  the order a model of A ranks rows in and its decision boundary stay the best there are, but its
  probabilities are now far too confident (brier 0.067 to 0.131, log_loss 0.23 to 0.53). Noisier
  labels cost every metric something: roc_auc 0.973 to 0.923, accuracy 0.91 to 0.84, and no
  retrain can win them back.
- ``noisy``: concept A throughout, the history too, with ``FLIP`` (13%) of the labels flipped at
  random on top of the rule's own noise (9%), so about 20% of the labels disagree with the
  noiseless rule: nothing changes, so nothing should retrain. (20% flipped on top gives a first
  model of log_loss 0.601, which the example's absolute gate, log_loss at most 0.60, rejects.)

The benchmark's pipeline spec for a stream copies the example pipeline's policy (estimator,
holdout, gates, monitoring, retrain of include/pipelines/churn.yaml) unchanged, with the stream's
own columns in place of churn's where the policy names a column (a slice, a key feature).
Everything is deterministic by seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = REPO / "include" / "pipelines" / "churn.yaml"
# new kinds at the end: a stream's seed is its index here, so the earlier streams keep theirs
KINDS = (
    "stable",
    "abrupt",
    "gradual",
    "recurring",
    "covariate",
    "prior",
    "corrupted",
    "recurring_long",
    "threshold",
    "calibration",
    "noisy",
)
ID, TARGET = "row_id", "y"
NUMERIC = ["x1", "x2", "x3", "months"]
CATEGORICAL = ["plan", "region"]
PLANS, REGIONS = ["a", "b", "c"], ["north", "south", "east", "west"]
# The example policy's columns and the stream's column that plays the same part.
COLUMN_MAP = {"contract": "plan", "tenure_months": "months"}
POLICY_SECTIONS = ("estimator", "holdout", "gates", "monitoring", "retrain")
SUITE = "drift_stream"
EPISODES = {"recurring": 3, "recurring_long": 6}  # batches of concept B
RETURNED = 4  # batches of A after a long episode
GRADUAL_STEPS = 4
PRIOR_AFTER = 0.2
NOISE = 0.4
THRESHOLD_AFTER = 0.5  # concept A's signal is about N(-0.1, 1.5): the positive share falls ~0.47 -> ~0.35
SCALE_AFTER = 0.5
FLIP = 0.13


@dataclass(frozen=True)
class Sizes:
    """How much data a stream holds, and where its change begins."""

    history: int = 4000
    batches: int = 8
    batch_rows: int = 1000
    change_at: int = 2


@dataclass(frozen=True)
class BatchPlan:
    """How one batch is drawn: the share of rows labelled by concept B, the covariate shift, the
    positive share (None: as the rule gives), whether ``x1`` is corrupted, the label rule's
    threshold and the scale of its signal, and the share of labels flipped."""

    share_b: float = 0.0
    shifted: bool = False
    prior: float | None = None
    corrupt: bool = False
    threshold: float = 0.0
    scale: float = 1.0
    flip: float = 0.0


@dataclass(frozen=True)
class Stream:
    """A stream written to disk: what a replay reads, and what the benchmark knows of its truth."""

    kind: str
    spec_path: Path
    history: Path
    batches: Path
    labels: Path
    expectations: Path
    plans: tuple[BatchPlan, ...]
    change_points: tuple[int, ...]  # first batch of each new regime (concept, features or prior)
    drift_episodes: int


def batch_count(kind: str, sizes: Sizes) -> int:
    """How many batches a stream of ``kind`` has: a long episode brings its own."""
    if kind == "recurring_long":
        return max(sizes.batches, sizes.change_at + EPISODES[kind] + RETURNED)
    return sizes.batches


def batch_plans(kind: str, sizes: Sizes) -> tuple[BatchPlan, ...]:
    """The plan of every batch of a stream of ``kind``."""
    k = sizes.change_at
    plans = []
    for i in range(batch_count(kind, sizes)):
        after = i >= k
        if kind == "stable":
            plan = BatchPlan()
        elif kind == "abrupt":
            plan = BatchPlan(share_b=float(after))
        elif kind == "gradual":
            plan = BatchPlan(share_b=min(max(i - k + 1, 0) / GRADUAL_STEPS, 1.0))
        elif kind in EPISODES:
            plan = BatchPlan(share_b=float(k <= i < k + EPISODES[kind]))
        elif kind == "covariate":
            plan = BatchPlan(shifted=after)
        elif kind == "prior":
            plan = BatchPlan(prior=PRIOR_AFTER if after else None)
        elif kind == "corrupted":
            plan = BatchPlan(corrupt=i == k)
        elif kind == "threshold":
            plan = BatchPlan(threshold=THRESHOLD_AFTER if after else 0.0)
        elif kind == "calibration":
            plan = BatchPlan(scale=SCALE_AFTER if after else 1.0)
        elif kind == "noisy":
            plan = history_plan(kind)
        else:
            raise ValueError(f"unknown stream kind {kind!r}; choose from {', '.join(KINDS)}")
        plans.append(plan)
    return tuple(plans)


def history_plan(kind: str) -> BatchPlan:
    """How the training history is drawn: as concept A, with the noisy stream's flipped labels."""
    return BatchPlan(flip=FLIP if kind == "noisy" else 0.0)


def change_points(kind: str, sizes: Sizes) -> tuple[int, ...]:
    """The batches where a new regime starts; the oracle trains on labeled batches from the latest."""
    if kind in ("stable", "corrupted", "noisy"):
        return ()
    if kind in EPISODES:
        return (sizes.change_at, sizes.change_at + EPISODES[kind])
    return (sizes.change_at,)


def features(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    """The feature columns; ``shifted`` moves ``x1`` up and ``months`` to its upper half."""
    return pd.DataFrame(
        {
            "x1": rng.normal(1.5 if shifted else 0.0, 1.0, n),
            "x2": rng.normal(0.0, 1.0, n),
            "x3": rng.normal(0.0, 1.0, n),
            "months": rng.uniform(36.0 if shifted else 0.0, 72.0, n).round(1),
            "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
            "region": rng.choice(REGIONS, n),
        }
    )


def labels(rng: np.random.Generator, frame: pd.DataFrame, plan: BatchPlan) -> NDArray[np.int_]:
    """Each row labelled by concept B with probability ``plan.share_b``, else by concept A; the
    signal scaled by ``plan.scale`` and compared with ``plan.threshold``, then ``plan.flip`` of the
    labels flipped (no draw without flips, so the other streams keep their random sequence)."""
    months = (frame["months"].to_numpy() - 36.0) / 36.0
    common = frame["x1"].to_numpy() + 0.5 * (frame["plan"].to_numpy() == "b") - 0.25
    concept_a = common + frame["x2"].to_numpy() + months
    concept_b = common - frame["x2"].to_numpy() - months
    signal: NDArray[np.float64] = np.where(rng.random(len(frame)) < plan.share_b, concept_b, concept_a)
    noisy = plan.scale * signal + rng.normal(0.0, NOISE, len(frame))
    label = (noisy > plan.threshold).astype(np.int_)
    if plan.flip:
        label = np.where(rng.random(len(frame)) < plan.flip, 1 - label, label)
    return label


def rows(rng: np.random.Generator, n: int, first_id: int, plan: BatchPlan) -> pd.DataFrame:
    """``n`` labelled rows drawn as ``plan`` says, ids from ``first_id``."""
    if plan.prior is None:
        frame = features(rng, n, plan.shifted)
        frame[TARGET] = labels(rng, frame, plan)
    else:  # label-prior shift: rows of each class as under the rule, in the new proportions
        pool = features(rng, 4 * n, plan.shifted)
        pool[TARGET] = labels(rng, pool, plan)
        positives = round(n * plan.prior)
        chosen = pd.concat(
            [pool[pool[TARGET] == 1].head(positives), pool[pool[TARGET] == 0].head(n - positives)]
        )
        frame = chosen.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    frame.insert(0, ID, [f"r{i}" for i in range(first_id, first_id + n)])
    if plan.corrupt:
        frame["x1"] = np.nan
    return frame


def batch_name(index: int) -> str:
    return f"b{index:02d}.csv"


def suite() -> dict[str, Any]:
    """A minimal expectation suite: ids and features present, numbers in their generated range."""
    expectations: list[dict[str, Any]] = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}}
        for column in [ID, TARGET, *NUMERIC, *CATEGORICAL]
    ]
    expectations += [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": c, "min_value": -10, "max_value": 10},
        }
        for c in ("x1", "x2", "x3")
    ]
    expectations.append(
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "months", "min_value": 0, "max_value": 72},
        }
    )
    return {"name": SUITE, "expectations": expectations}


def _renamed(node: Any) -> Any:
    """The example policy with the stream's columns where it names one of churn's."""
    if isinstance(node, dict):
        return {key: _renamed(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed(value) for value in node]
    return COLUMN_MAP.get(node, node) if isinstance(node, str) else node


def pipeline_spec(kind: str, history: Path) -> dict[str, Any]:
    """The stream's pipeline spec: its columns and data, the example's policy unchanged.

    ``schedule.train`` is off so every retrain is one the monitor's policy asked for; the score
    and monitor crons are the example's (the score cron sets the replay's interval).
    """
    example = yaml.safe_load(EXAMPLE_SPEC.read_text())
    return {
        "name": f"stream_{kind}",
        "description": f"effectiveness benchmark: the {kind} drift stream",
        "task": "classification",
        "data": {"uri": str(history), "format": "csv"},
        "columns": {"target": TARGET, "id": [ID], "numeric": NUMERIC, "categorical": CATEGORICAL},
        "expectation_suite": SUITE,
        **{section: _renamed(example[section]) for section in POLICY_SECTIONS},
        "schedule": {**example["schedule"], "train": None},
        "scoring": {"format": "csv"},
    }


def write_stream(root: Path, kind: str, sizes: Sizes = Sizes(), seed: int = 0) -> Stream:
    """Write ``kind``'s history, batches, label files (same name as the batch), suite and spec
    under ``root/kind``; the stream's description."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    base = root / kind
    history, batches, label_dir, expectations = (
        base / "history",
        base / "batches",
        base / "labels",
        base / "expectations",
    )
    for folder in (history, batches, label_dir, expectations):
        folder.mkdir(parents=True, exist_ok=False)
    rows(rng, sizes.history, 0, history_plan(kind)).to_csv(history / "history.csv", index=False)
    plans = batch_plans(kind, sizes)
    for index, plan in enumerate(plans):
        batch = rows(rng, sizes.batch_rows, 1_000_000 * (index + 1), plan)
        batch.drop(columns=TARGET).to_csv(batches / batch_name(index), index=False)
        batch[[ID, TARGET]].to_csv(label_dir / batch_name(index), index=False)
    (expectations / f"{SUITE}.json").write_text(json.dumps(suite(), indent=2))
    spec_path = base / f"stream_{kind}.yaml"
    spec_path.write_text(yaml.safe_dump(pipeline_spec(kind, history), sort_keys=False))
    return Stream(
        kind=kind,
        spec_path=spec_path,
        history=history,
        batches=batches,
        labels=label_dir,
        expectations=expectations,
        plans=plans,
        change_points=change_points(kind, sizes),
        drift_episodes=int(kind == "covariate"),
    )


def read_labeled(stream: Stream, index: int) -> pd.DataFrame:
    """Batch ``index`` joined with its labels (what the oracle and the baselines score)."""
    name = batch_name(index)
    batch = pd.read_csv(stream.batches / name, dtype={ID: str})
    return batch.merge(pd.read_csv(stream.labels / name, dtype={ID: str}), on=ID)
