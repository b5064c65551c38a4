"""Where a model came from: the code version and the exact requirements to load it."""

from __future__ import annotations

import functools
import os
import subprocess
from importlib.metadata import version

from ctloop import __version__
from ctloop.settings import PACKAGE_DIR

# What a pipeline model needs at load time. Versions come from the installed environment, which
# `uv sync --frozen` builds from uv.lock, so this is the lock's pin without MLflow's slow inference.
MODEL_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "skops")


@functools.cache
def code_version() -> str:
    """``CTLOOP_CODE_VERSION`` if set (images set it at build), else the git commit, else the package."""
    if os.environ.get("CTLOOP_CODE_VERSION"):
        return os.environ["CTLOOP_CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return f"ctloop-{__version__}"
    if commit.returncode != 0:
        return f"ctloop-{__version__}"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def model_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in MODEL_PACKAGES]
