"""A real browser for the dashboard tests: Debian's Chromium (installed with apt when missing — never
skipped), driven headless by Playwright for Python. Playwright's own browser download is never used."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """/usr/bin/chromium, installed from Debian's packages when it is not there yet."""
    if not CHROMIUM.exists():
        done = _apt("install", "-y", "chromium")
        if done.returncode != 0:  # a fresh machine: the package lists may be missing or stale
            _apt("update")
            done = _apt("install", "-y", "chromium")
        assert done.returncode == 0 and CHROMIUM.exists(), f"could not install chromium: {done.stderr[-2000:]}"
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
