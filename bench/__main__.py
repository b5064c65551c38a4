"""``python -m bench [name ...]``: run the benchmarks (all by default) and print their ratios."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "parse": "bench.parse_time",
    "mlflow": "bench.mlflow_write",
    "gx": "bench.gx_validation",
    "scheduler": "bench.scheduler_overhead",
    "drift": "bench.drift_compute",
    "latency": "bench.alert_latency",
    "effectiveness": "bench.effectiveness",
    "byom_write": "bench.byom_write",
    "byom_score": "bench.byom_score",
    "scale": "bench.scale",
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    for name in names:
        importlib.import_module(BENCHMARKS[name]).main()
