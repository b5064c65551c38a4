"""A process of its own for a test to kill, forked from a server that has imported the libraries.

The fault tests kill a promotion or a training in a process of its own (``CTLOOP_FAULT``, as
``kill -9`` would). A new interpreter importing MLflow and scikit-learn takes seconds each time;
``multiprocessing``'s forkserver imports them once per test worker and forks a clean process from
there for each run: nothing of the test's own process (its database connections, its environment)
is shared, and the run gets exactly the environment it is given. ``CONTEXT`` serves tests that
start processes of their own the same way.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# imported once by the server: what the runs would otherwise import each time (MLflow's stores, the
# model libraries); ctloop imports these inside functions
PRELOAD = [
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "pandas",
    "sklearn.ensemble",
    "skops.io",
    "ctloop.registry.promotion",
    "ctloop.training.steps",
]
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(PRELOAD)


def _run(function: Callable[..., Any], args: tuple[Any, ...], environ: Mapping[str, str], out: str) -> None:
    """In the forked process: this environment only, stderr to a file, the result as JSON."""
    os.environ.clear()
    os.environ.update(environ)
    with open(f"{out}.stderr", "w") as stderr:
        os.dup2(stderr.fileno(), 2)
    Path(out).write_text(json.dumps(function(*args)))


class Forked:
    """``function(*args)`` running in a forked process with ``environ``; ``communicate`` waits for
    it and returns ``(stdout, stderr)`` as ``subprocess.Popen`` does: stdout is the JSON of what
    ``function`` returned (empty if it did not return), stderr what the process wrote there."""

    def __init__(self, function: Callable[..., Any], *args: Any, environ: Mapping[str, str]) -> None:
        self._out = Path(tempfile.mkdtemp(prefix="ctloop-forked-")) / "result.json"
        self.process = CONTEXT.Process(target=_run, args=(function, args, dict(environ), str(self._out)))
        self.process.start()
        self.returncode: int | None = None

    def communicate(self, timeout: float) -> tuple[str, str]:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"{self.process.name} still ran after {timeout} s")
        self.returncode = self.process.exitcode
        stderr = Path(f"{self._out}.stderr")
        written = (
            self._out.read_text() if self._out.exists() else "",
            stderr.read_text(errors="replace") if stderr.exists() else "",
        )
        shutil.rmtree(self._out.parent)
        return written
