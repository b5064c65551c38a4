"""(a) DAG file parse time versus a minimal airflow.sdk DAG of the same shape. Target <= 1.5x.

Both files are parsed in fresh interpreters that have already imported airflow.sdk, as the DAG
processor has; the median of several parses of each is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import median, report

REPO = Path(__file__).resolve().parent.parent

BASELINE_DAG = """
from datetime import datetime
from airflow.sdk import Param, dag, task

@task
def snapshot(): return {}
@task
def validate(s): return {}
@task
def train(s, v): return {}
@task
def evaluate(t): return {}
@task
def register(s, t, v): return "1"
@task
def gate(e, v): return {}
@task
def promote(s, e, d, v, t): return {}
@task
def record_outcome(): return {}

@dag(dag_id="baseline__train", schedule="0 3 * * 1", start_date=datetime(2026, 1, 1), catchup=False,
     tags=["baseline"], params={"reason": Param("manual", type="string"), "note": Param("", type="string")})
def baseline():
    s = snapshot(); v = validate(s); t = train(s, v); e = evaluate(t); r = register(s, t, v)
    promote(s, e, gate(e, r), r, t) >> record_outcome()

baseline()
"""

PROBE = """
import json, runpy, sys, time
import airflow.sdk
start = time.perf_counter()
runpy.run_path(sys.argv[1])
print(json.dumps(time.perf_counter() - start))
"""


def parse_seconds(path: Path, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(repeats: int = 15) -> dict:
    env = {**os.environ, "CTLOOP_PIPELINES_DIR": str(REPO / "include" / "pipelines")}
    with tempfile.TemporaryDirectory() as tmp:
        baseline_file = Path(tmp) / "baseline_dag.py"
        baseline_file.write_text(BASELINE_DAG)
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            ours.append(parse_seconds(REPO / "dags" / "train.py", env))
            theirs.append(parse_seconds(baseline_file, env))
    return report("dag_parse", median(ours), median(theirs), 1.5, pipelines=1, repeats=repeats)


if __name__ == "__main__":
    main()
