"""(h) MLflow write path of XGBoost and LightGBM models versus their training time. Target <= 0.5x.

Per model of :data:`bench.byom_cases.BYOM`: ``fit(spec, training rows)`` against what the train and
register steps do to store it: ``log_model`` under the spec's trust policy (skops, signature, input example,
the download and digest of the model directory) and ``register_version``, against a fresh SQLite
tracking store with local artifacts, as on the embedded default. Warm: one write before the
measured ones pays the process's one-off imports. The version gets :data:`VERSION_TAGS` tags, as
many as the register step sets. The write's phases are timed by wrapping the functions it calls,
to say where a miss comes from. Both sides are the fastest of :data:`ROUNDS` rounds (a fit, then
a write): a full garbage collection (0.3 s in a process holding MLflow, SQLAlchemy and pandas)
lands in some writes and not others, and SQLite's commits wait on a disk other work shares.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.byom_cases import BYOM, fresh_store
from bench.common import report

# (module, function, what it is in the write path); indented: inside the phase above it.
PHASES = (
    ("mlflow.models", "infer_signature", "signature (predicts the sample)"),
    ("ctloop.registry.mlflow_store", "trusted_types", "trust check (skops dumps + type scan)"),
    ("mlflow.sklearn", "log_model", "mlflow.sklearn.log_model"),
    ("skops.io", "dump", "  skops dump (MLflow's save)"),
    ("mlflow.models.utils", "_validate_serving_input", "  serving input check (pyfunc load + predict)"),
    ("skops.io", "load", "    skops load (after the save, and in the serving input check)"),
    ("mlflow.utils.environment", "warn_dependency_requirement_mismatches", "  requirements vs installed"),
    ("mlflow.artifacts", "download_artifacts", "download for the digest"),
    ("ctloop.registry.mlflow_store", "model_digest", "digest of the model directory"),
    ("ctloop.registry.mlflow_store", "register_version", "register_version"),
)
ROUNDS = 3  # a fit and a write each; the fastest of each counts, as best_of does
VERSION_TAGS = 18  # about as many as the register step sets (digests, keys, provenance, user code)


@contextmanager
def timed_phases() -> Iterator[dict[str, float]]:
    """Seconds spent in each of :data:`PHASES` while the block runs (wrappers, removed after)."""
    spent: dict[str, float] = defaultdict(float)
    originals = []
    for module_name, attribute, label in PHASES:
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)
        originals.append((module, attribute, original))

        def timed(
            *args: Any, _original: Callable[..., Any] = original, _label: str = label, **kw: Any
        ) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                spent[_label] += time.perf_counter() - start

        setattr(module, attribute, functools.wraps(original)(timed))
    try:
        yield spent
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)


def main(rows: int = 40_000) -> list[dict]:
    settings, client, experiment = fresh_store()

    from ctloop.data import holdout
    from ctloop.registry import mlflow_store as registry
    from ctloop.registry.model_trust import policy
    from ctloop.training.estimator import features, fit

    def write(spec: Any, model: Any, sample: Any) -> tuple[float, float]:
        """log_model + register_version, as the train task's steps call them: wall and CPU seconds
        (the CPU time is less: the write also waits on SQLite's commits)."""
        run_key = f"bench/{uuid.uuid4().hex[:8]}"
        run_id = registry.ensure_run(client, experiment, run_key, {})
        cpu, start = time.process_time(), time.perf_counter()
        logged = registry.log_model(model, sample, run_id, policy(spec))
        version_tags = {f"bench.tag{i:02d}": f"{i:064x}" for i in range(VERSION_TAGS)}
        registry.register_version(client, spec.name, logged, run_id, run_key, version_tags)
        return time.perf_counter() - start, time.process_time() - cpu

    results = []
    first_write: float | None = None
    for case in BYOM:
        spec = case.spec()
        training, _ = holdout.split(case.frame(rows), spec)
        sample = features(training.head(200), spec)
        if first_write is None:  # the process's one-off costs: importing skops, MLflow's scans
            first_write, _ = write(spec, fit(spec, training.head(2000)), sample)
        fits, writes = [], []
        for _ in range(ROUNDS):  # in turns, so a busy spell of the shared machine hits both sides
            cpu, start = time.process_time(), time.perf_counter()
            model = fit(spec, training)
            fits.append((time.perf_counter() - start, time.process_time() - cpu))
            with timed_phases() as spent:
                writes.append((*write(spec, model, sample), dict(spent)))
        seconds, cpu_seconds, phases = min(writes, key=lambda timed: timed[0])
        results.append(
            report(
                f"byom_write_{case.key}",
                seconds,
                min(wall for wall, _ in fits),
                0.5,
                training_rows=len(training),
                model=spec.estimator.class_path,
                fits_seconds=[round(wall, 3) for wall, _ in fits],
                writes_seconds=[round(w, 3) for w, _, _ in writes],
                fastest_write_cpu_seconds=round(cpu_seconds, 3),
                cpu_ratio=round(cpu_seconds / min(cpu for _, cpu in fits), 2),  # no waiting on either side
                phases_of_fastest_write={k: round(v, 3) for k, v in phases.items()},
                model_skops_bytes=_skops_size(model),
                first_write_in_process_seconds=round(first_write, 3),
                load_average_1min=round(os.getloadavg()[0], 1),
            )
        )
    return results


def _skops_size(model: Any) -> int:
    import skops.io

    return len(skops.io.dumps(model))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40_000)
