"""Browser fixtures: Playwright driving the system's Chromium (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by scripts/install-system-deps.sh
ARTIFACTS = REPO / "test-artifacts" / "ui"
# Playwright itself passes --headless, --no-sandbox (root in a container has no user namespaces
# for Chromium's sandbox), --no-first-run, --disable-background-networking, --disable-sync,
# --disable-component-update and a fresh --user-data-dir; these are what it leaves out.
FLAGS = ["--disable-gpu", "--disable-quic"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Headless Chromium with a fresh profile of its own; nothing is downloaded."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of the main pages, kept after the run (test-artifacts/ is gitignored). Never
    emptied here: each xdist worker runs this fixture, and one must not delete another's shots;
    every test overwrites its own files by name."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
