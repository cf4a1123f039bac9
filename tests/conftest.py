"""Shared fixtures: a fresh SQLite workspace with demo clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium with the team's flags, for every pytest-playwright `browser` in the suite.

    One session-wide Playwright: a second `sync_playwright()` started while the plugin's is alive fails with
    "Sync API inside the asyncio loop", so tests take the plugin's `browser` fixture instead of their own.
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_FLAGS],
    }


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A SQLite workspace in tmp_path/ws with the 8 demo clients; LEADKIT_HOME points at it."""
    home = tmp_path / "ws"
    monkeypatch.setenv("LEADKIT_HOME", str(home))
    monkeypatch.delenv("LEADKIT_STORE", raising=False)
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    seed(ws.store, 8)
    yield ws
    ws.close()
