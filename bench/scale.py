"""(j) Production batches of millions of rows: scoring time, two workers, peak memory per task.

One churn batch per size (CSV, unlabeled, written once by :mod:`bench.large_batches` into
``BENCH_SCALE_DIR``, default ``/tmp/ctloop-scale``, and reused), the example model fitted once on
20,000 rows and registered as champion in a fresh MLflow store. Every task runs in a fresh
interpreter (``python -m bench.scale task ...``), which reports its wall time from after its
imports and its own peak RSS (``VmHWM``), and each scoring run gets its own home (its own ledger
of scored batches, the batch file hard-linked into its incoming area, the MLflow store shared):

- ``score``: :func:`ctloop.scoring.batches.score_batch` (hash, refuse, champion load, reserve;
  every chunk read, checked with the schema and the suite, predicted and written; the whole-batch
  checks; publish and commit). Baseline ``plain``: the same champion loaded through the registry,
  pyarrow's streaming CSV reader with the same column types, the model's ``predict_proba`` on the
  feature columns of each block, and the block with its prediction and score appended to one
  Parquet file. Target <= 1.2x.
- ``parts 1`` and ``parts 2``: ``claim_batch`` (a batch above ``scoring.fan_out_rows`` is planned
  into parts: a CSV without quotes by byte ranges found while its line breaks are counted,
  otherwise read once and its chunks copied to Parquet in staging), then the claim's parts
  (``parts(claim)``) by one worker process or by two at once (worker ``w`` scores parts ``w``,
  ``w + 2``, ... with ``score_part``, as two Celery workers take mapped tasks), then ``publish``;
  time from the claim to the commit, with each phase. Target 2 workers <= 0.6x of 1. **Each
  worker has a core of its own**: worker ``w`` is pinned to CPU ``w`` (``sched_setaffinity``)
  and its thread pools are sized to one core (``OMP_NUM_THREADS=1``: pyarrow, BLAS, OpenMP), and
  so are the claim and publish (on CPU 0) and the one-worker run. Unpinned, one worker process
  already spreads over both cores of a 2-core machine (pyarrow's reading threads, the model), so
  "two workers" would measure two processes sharing the cores one of them was using, not a
  second worker, as a second Celery worker on its own machine (or its own cores) adds. Same
  method for 1 and 2 workers; ``BENCH_SCALE_UNPINNED=1`` measures without it.
- ``monitor``: :func:`ctloop.monitoring.monitor_run.run_monitor` on the window holding the scored
  batch (drift one column at a time, the sampled Evidently report, the decision); no labels
  have arrived, so quality reads nothing.

Peak memory target: <= 1.5 GiB per task (scoring, each part, publish, monitor). Every run checks
that the batch was scored exactly once with every row. ``python -m bench.scale ROWS [ROWS ...]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.byom_cases import EXAMPLE, fresh_store
from bench.common import RESULTS
from bench.large_batches import write_batch

REPO = Path(__file__).resolve().parent.parent
SIZES = (2_000_000, 20_000_000)
TRAIN_ROWS = 20_000
GIB = 1 << 30
TIME_TARGET, PARTS_TARGET, MEMORY_TARGET = 1.2, 0.6, 1.5 * GIB
BATCH = "batch.csv"
SCORING_ENV = "BENCH_SCALE_SCORING"
"""JSON of ``scoring`` fields over the example's (chunk and part sizes), e.g. for a small batch."""


def data_dir() -> Path:
    return Path(os.environ.get("BENCH_SCALE_DIR", "/tmp/ctloop-scale"))


# --- the parent: a champion, homes, the tasks in fresh interpreters ---------------------------


def _champion(settings: Any, client: Any, experiment: str) -> Any:
    """The example model fitted on a small sample, registered and made champion; its training
    rows with predictions, the monitor's reference."""
    from ctloop.devtools.example_data import generate_batch
    from ctloop.registry import mlflow_store as registry
    from ctloop.registry.model_trust import policy
    from ctloop.scoring.batches import predict
    from ctloop.training.estimator import features, fit

    spec = EXAMPLE.spec()
    training = generate_batch(TRAIN_ROWS, seed=1)
    model = fit(spec, training)
    run_id = registry.ensure_run(client, experiment, "bench/scale", {})
    logged = registry.log_model(model, features(training.head(200), spec), run_id, policy(spec))
    version = registry.register_version(client, spec.name, logged, run_id, "bench/scale", {})
    client.set_registered_model_alias(spec.name, registry.CHAMPION, version.version)
    reference = training[[*spec.columns.features, spec.columns.target]].copy()
    reference["prediction"], reference["score"] = predict(model, training, spec)
    return reference, str(version.version)


def _home(root: Path, name: str, batch: Path, reference: Path, version: str) -> Path:
    """A home of its own for one run: the batch in its incoming area, the monitor's reference."""
    home = root / name
    incoming = home / "data" / "churn" / "incoming"
    incoming.mkdir(parents=True)
    try:
        os.link(batch, incoming / BATCH)
    except OSError:  # another file system
        shutil.copyfile(batch, incoming / BATCH)
    cached = home / "storage" / "monitor" / "churn" / "reference" / f"v{version}.parquet"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(reference, cached)
    return home


def _run(home: Path, *args: str) -> dict[str, Any]:
    """One task in a fresh interpreter with ``home`` as its CTLOOP_HOME; its JSON result."""
    env = {**os.environ, "CTLOOP_HOME": str(home), "PYTHONPATH": str(REPO)}
    if args[0] == "parts":
        env |= _one_core(0)
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "task", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"task {args} failed:\n{done.stderr[-4000:]}")
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    peaks = [outcome["peak"], *outcome.get("part_peaks", [])]
    # as it goes: a large size takes long, and a run stopped early still tells what it measured
    print(
        f"  task {' '.join(args)}: {outcome['seconds']:.1f}s, peak RSS {[p >> 20 for p in peaks]} MiB",
        flush=True,
    )
    return outcome


def _scored_once(home: Path, rows: int, result: dict[str, Any]) -> None:
    """The batch is committed as scored, once, and its partition holds every row."""
    import pyarrow.parquet as pq

    if result.get("action") != "scored" or result.get("rows") != rows:
        raise AssertionError(f"not scored with every row: {result}")
    partitions = list((home / "storage" / "predictions" / "churn").rglob("*.parquet"))
    if len(partitions) != 1 or pq.ParquetFile(partitions[0]).metadata.num_rows != rows:
        raise AssertionError(f"expected one partition of {rows} rows, found {partitions}")
    staged = list((home / "storage" / "staging").rglob("*.parquet"))
    if staged:
        raise AssertionError(f"staged parts left behind: {staged}")


def measure(rows: int) -> dict[str, Any]:
    """Every task of the benchmark on a batch of ``rows`` rows; the figures and checks."""
    batch = write_batch(data_dir() / f"rows-{rows}" / BATCH, rows)
    settings, client, experiment = fresh_store()
    reference, version = _champion(settings, client, experiment)
    root = Path(tempfile.mkdtemp(prefix="ctloop-scale-"))
    reference_file = root / "reference.parquet"
    reference.to_parquet(reference_file, index=False)
    try:
        _read_through(batch)  # every task then finds the file in the page cache alike
        # the baseline before and after the candidate: a machine whose load changes during the
        # run shows as two different baselines, and the ratio is taken against their mean
        before = _run(_home(root, "plain-before", batch, reference_file, version), "plain")
        score_home = _home(root, "score", batch, reference_file, version)
        score = _run(score_home, "score")
        _scored_once(score_home, rows, score["result"])
        after = _run(_home(root, "plain-after", batch, reference_file, version), "plain")
        plain = {
            "seconds": (before["seconds"] + after["seconds"]) / 2,
            "each": [before["seconds"], after["seconds"]],
            "cpu": (before["cpu"] + after["cpu"]) / 2,
            "peak": max(before["peak"], after["peak"]),
        }
        monitor = _run(score_home, "monitor")
        if monitor["result"]["window"]["rows"] != rows:
            raise AssertionError(f"the monitor's window is not the batch: {monitor['result']['window']}")
        parts = {}
        for count in (2, 1):
            home = _home(root, f"parts{count}", batch, reference_file, version)
            parts[count] = _run(home, "parts", str(count))
            _scored_once(home, rows, parts[count]["result"])
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    peaks = {
        "score": score["peak"],
        "plain": plain["peak"],
        "parts1_claim_publish": parts[1]["peak"],
        "parts1_worker": max(parts[1]["part_peaks"]),
        "parts2_claim_publish": parts[2]["peak"],
        "parts2_worker": max(parts[2]["part_peaks"]),
        "monitor": monitor["peak"],
    }
    return {
        "rows": rows,
        "csv_bytes": batch.stat().st_size,
        "seconds": {
            "score": score["seconds"],
            "plain": plain["seconds"],
            "plain_each": plain["each"],
            "score_cpu": score["cpu"],
            "plain_cpu": plain["cpu"],
            "parts1": parts[1]["seconds"],
            "parts2": parts[2]["seconds"],
            "monitor": monitor["seconds"],
        },
        "peak_bytes": peaks,
        "parts": {
            count: {
                "parts": parts[count].get("parts"),
                **parts[count].get("phases", {}),
                "cpu": parts[count].get("cpu"),
                "cores": {"claim_publish": parts[count]["cores"], "workers": parts[count]["part_cores"]},
            }
            for count in (1, 2)
        },
        "monitor_sample": (monitor["result"].get("evidently") or {}).get("sample"),
        "load": os.getloadavg(),
    }


def _read_through(path: Path) -> None:
    with path.open("rb") as file:
        while file.read(16 << 20):
            pass


def _verdict(ok: bool) -> str:
    return "OK" if ok else "OVER TARGET"


def report(figures: dict[str, Any]) -> dict[str, Any]:
    """Print the ratios of one size and store them as ``scale_<rows>.json``."""
    rows, seconds, peaks = figures["rows"], figures["seconds"], figures["peak_bytes"]
    time_ratio = seconds["score"] / seconds["plain"]
    parts_ratio = seconds["parts2"] / seconds["parts1"]
    task_peaks = {k: v for k, v in peaks.items() if k != "plain"}
    worst = max(task_peaks, key=task_peaks.__getitem__)
    figures |= {"time_ratio": time_ratio, "parts_ratio": parts_ratio, "worst_task": worst}
    print(f"scale {rows:,} rows ({figures['csv_bytes'] / (1 << 20):.0f} MiB CSV), load {figures['load']}")
    print(
        f"  score_batch {seconds['score']:.1f}s vs plain pyarrow+predict+parquet {seconds['plain']:.1f}s"
        f" (before and after: {seconds['plain_each'][0]:.1f}s, {seconds['plain_each'][1]:.1f}s)"
        f" = {time_ratio:.2f}x (target <= {TIME_TARGET}x) {_verdict(time_ratio <= TIME_TARGET)}"
    )
    cpu_ratio = seconds["score_cpu"] / seconds["plain_cpu"]
    figures["cpu_ratio"] = cpu_ratio
    print(
        f"  CPU seconds (all threads; what a busy machine moves least): {seconds['score_cpu']:.1f} vs"
        f" {seconds['plain_cpu']:.1f} = {cpu_ratio:.2f}x"
    )
    print(
        f"  2 workers {seconds['parts2']:.1f}s vs 1 worker {seconds['parts1']:.1f}s = {parts_ratio:.2f}x"
        f" (target <= {PARTS_TARGET}x) {_verdict(parts_ratio <= PARTS_TARGET)}"
    )
    print(f"  parts, phases (claim, score_parts, publish) and CPU seconds by workers: {figures['parts']}")
    print(f"  monitor {seconds['monitor']:.1f}s")
    for name, peak in peaks.items():
        note = "" if name == "plain" else f" {_verdict(peak <= MEMORY_TARGET)}"
        print(f"  peak {name}: {peak / (1 << 20):.0f} MiB ({peak / rows:.1f} B/row){note}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale_{rows}.json").write_text(json.dumps(figures, indent=2, default=str))
    return figures


def main(sizes: tuple[int, ...] = SIZES) -> list[dict[str, Any]]:
    results = [report(measure(rows)) for rows in sizes]
    if len(results) > 1:
        small, large = results[0], results[-1]
        for key in ("score", "plain", "parts2", "monitor"):
            per_row = [r["seconds"][key] / r["rows"] * 1e6 for r in (small, large)]
            print(f"  growth {key}: {per_row[0]:.2f} -> {per_row[1]:.2f} us/row")
    return results


# --- the tasks, each in a fresh interpreter ----------------------------------------------------

CORE_ENV, CORES_ENV = "BENCH_SCALE_CORE", "BENCH_SCALE_CORES"
UNPINNED_ENV = "BENCH_SCALE_UNPINNED"


def _one_core(worker: int) -> dict[str, str]:
    """The environment that pins a task process to one CPU (the ``worker``-th of those the
    benchmark may use, kept in ``BENCH_SCALE_CORES`` for the processes a pinned one starts) with its
    thread pools sized to one core; nothing when ``BENCH_SCALE_UNPINNED`` is set."""
    if os.environ.get(UNPINNED_ENV):
        return {}
    listed = os.environ.get(CORES_ENV)
    cores = [int(c) for c in listed.split(",")] if listed else sorted(os.sched_getaffinity(0))
    return {
        CORE_ENV: str(cores[worker % len(cores)]),
        CORES_ENV: ",".join(map(str, cores)),
        "OMP_NUM_THREADS": "1",
    }


def _pin() -> None:
    """Pin this process to ``BENCH_SCALE_CORE`` before anything starts a thread pool."""
    if core := os.environ.get(CORE_ENV):
        os.sched_setaffinity(0, {int(core)})


def _peak() -> int:
    """This process's own peak RSS in bytes (``ru_maxrss`` would carry the parent's across fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _context() -> tuple[Any, Any]:
    from ctloop.settings import load_settings
    from ctloop.spec.loading import load_spec

    spec = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
    scoring = json.loads(os.environ.get(SCORING_ENV) or "{}")
    spec = spec.model_copy(
        update={"scoring": spec.scoring.model_validate(spec.scoring.model_dump() | scoring)}
    )
    return spec, load_settings()


def _task_score() -> dict[str, Any]:
    from ctloop.scoring.batches import new_batches, score_batch

    spec, settings = _context()
    start, cpu = time.perf_counter(), time.process_time()
    (batch,) = new_batches(spec, settings)
    result = score_batch(spec, settings, batch)
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "result": result}


def _task_plain() -> dict[str, Any]:
    """The baseline: the champion, pyarrow's streaming reader, predict_proba, one Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from ctloop.registry import mlflow_store as registry
    from ctloop.registry.model_trust import policy

    spec, settings = _context()
    columns = spec.columns
    text = [*columns.id, *columns.categorical, *([columns.timestamp] if columns.timestamp else [])]
    types = {c: pa.string() for c in text} | {c: pa.float64() for c in columns.numeric}
    source = settings.home / "data" / "churn" / "incoming" / BATCH
    output = settings.home / "plain.parquet"
    start, cpu = time.perf_counter(), time.process_time()
    model = registry.load_version(
        settings, registry.get_champion(registry.client(settings), spec.name), policy(spec)
    )
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=spec.scoring.csv_block_mib << 20),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )
    writer, rows = None, 0
    for block in reader:
        frame = block.to_pandas()
        probabilities = model.predict_proba(frame[columns.features])
        table = pa.Table.from_batches([block])
        table = table.append_column("prediction", pa.array(model.classes_[np.argmax(probabilities, axis=1)]))
        table = table.append_column("score", pa.array(probabilities[:, 1]))
        writer = writer or pq.ParquetWriter(output, table.schema)
        writer.write_table(table)
        rows += len(frame)
    if writer is not None:
        writer.close()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "result": {"rows": rows}}


def _task_parts(workers: str) -> dict[str, Any]:
    """claim_batch (which plans the parts), the parts spread over ``workers`` processes at once
    (worker ``w`` scores parts ``w``, ``w + workers``, ... in turn, as Celery workers take mapped
    tasks), publish."""
    from ctloop.scoring.batches import claim_batch, new_batches, parts, publish

    spec, settings = _context()
    start, cpu_start = time.perf_counter(), time.process_time()
    (batch,) = new_batches(spec, settings)
    claim, done = claim_batch(spec, settings, batch)
    if done is not None:
        raise RuntimeError(f"nothing to score: {done}")
    claimed, claim_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    claim_file = settings.home / "claim.json"
    claim_file.write_text(json.dumps(claim))
    count = int(workers)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "task", "worker", str(claim_file), str(w), workers],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **_one_core(w)},
        )
        for w in range(count)
    ]
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    if any(p.returncode for p in processes):
        raise RuntimeError("a worker failed")
    scored, cpu_scored = time.perf_counter() - start, time.process_time()
    result = publish(spec, settings, claim, [r for o in outputs for r in o["result"]])
    return {
        "seconds": time.perf_counter() - start,
        "result": result,
        "parts": len(parts(claim)),
        "phases": {
            "claim": claimed,
            "score_parts": scored - claimed,
            "publish": time.perf_counter() - start - scored,
        },
        "part_peaks": [o["peak"] for o in outputs],
        "part_cores": [o["cores"] for o in outputs],
        # CPU seconds (all threads) of each phase and worker: what wall times mean on a busy machine
        "cpu": {
            "claim": claim_cpu,
            "workers": [o["cpu_seconds"] for o in outputs],
            "publish": time.process_time() - cpu_scored,
        },
    }


def _task_worker(claim_file: str, index: str, workers: str) -> dict[str, Any]:
    from ctloop.scoring.batches import parts, score_part

    spec, settings = _context()
    claim = json.loads(Path(claim_file).read_text())
    start = time.perf_counter()
    results = [score_part(spec, settings, claim, part) for part in parts(claim)[int(index) :: int(workers)]]
    return {"seconds": time.perf_counter() - start, "result": results}


def _task_monitor() -> dict[str, Any]:
    from ctloop.monitoring.monitor_run import run_monitor
    from ctloop.training.steps import RunContext

    spec, settings = _context()
    start = time.perf_counter()
    summary = run_monitor(spec, settings, RunContext(dag_id="churn__monitor", run_id="bench", reason="bench"))
    return {"seconds": time.perf_counter() - start, "result": summary}


TASKS = {
    "score": _task_score,
    "plain": _task_plain,
    "parts": _task_parts,
    "worker": _task_worker,
    "monitor": _task_monitor,
}


if __name__ == "__main__":
    if sys.argv[1:2] == ["task"]:
        _pin()
        outcome = TASKS[sys.argv[2]](*sys.argv[3:])
        cores = sorted(os.sched_getaffinity(0))
        print(
            json.dumps(
                {**outcome, "peak": _peak(), "cpu_seconds": time.process_time(), "cores": cores}, default=str
            )
        )
    else:
        main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
