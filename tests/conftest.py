"""Shared fixtures: a fresh SQLite workspace with demo clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace


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
