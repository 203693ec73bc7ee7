"""Headless Chromium from Debian's package, driven by Playwright: what a person would see.

    from tests.support.browser import needs_chromium, open_browser

    @needs_chromium
    def test_page(tmp_path):
        with open_browser(tmp_path) as browser:
            page = browser.new_page()
            page.goto(url)

No browser is downloaded: Playwright drives /usr/bin/chromium (`make servers` installs it),
with a fresh profile folder per use. Tests skip with the reason when it or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium")
# Flags that work here (root, no display, no network): no sandbox as root, no GPU, and nothing
# that phones home (updates, sync, QUIC). Playwright adds --headless and --user-data-dir itself.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


def missing() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing: run `make servers` (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is missing: pip install -e '.[test]'"
    return None


needs_chromium = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@contextlib.contextmanager
def open_browser(folder: Path | None = None) -> Iterator:
    """A Playwright BrowserContext on Debian's Chromium with a fresh profile; closed on exit.

    Requests go only where a test sends them: the context blocks service workers, and every
    page starts blank.
    """
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=folder))
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=list(FLAGS),
                service_workers="block",
                timeout=60_000,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
