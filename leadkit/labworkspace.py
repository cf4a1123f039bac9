"""The workspace a diagnosis notebook works on: the one it is given, else the Lab's (LEADKIT_HOME, which `leadkit
lab` gives every kernel), else, only when there is none, a throwaway demo workspace; the notebook says which.

Also the notebook-side helpers that make output work inside the Lab: a link to a workspace file relative to
the notebook's folder (the Lab serves the workspace with the notebooks in `notebooks/`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leadkit.config import get_settings
from leadkit.workspace import Workspace

__all__ = ["NotebookWorkspace", "lab_link", "notebook_workspace"]

DEMO_CLIENTS = ("Acme-Co", "Globex", "Initech", "Umbrella-Corp")


@dataclass
class NotebookWorkspace:
    """The workspace chosen, whether it is a throwaway one, and the line that says so."""

    ws: Workspace
    scratch: bool
    said: str


def notebook_workspace(
    workspace: str = "",
    store_url: str = "",
    *,
    example: Callable[[Workspace], object] | None = None,
    clients: Sequence[str] = DEMO_CLIENTS,
    announce: bool = True,
) -> NotebookWorkspace:
    """`workspace` when given; else LEADKIT_HOME (or LEADKIT_STORE) from the environment when it names an existing
    workspace; else a throwaway workspace with `clients`, filled by `example`. A LEADKIT_HOME that exists but
    cannot be opened (a broken store) raises: falling back would show made-up data as if it were the user's.
    Prints (when `announce`) which workspace it is."""
    home = workspace or os.environ.get("LEADKIT_HOME", "")
    store = store_url or ("" if workspace else os.environ.get("LEADKIT_STORE", ""))
    if home or store:
        settings = get_settings(**({"leadkit_home": home} if home else {}), leadkit_store=store)
        from leadkit.store.sqlite import workspace_exists

        if workspace or store or workspace_exists(Path(settings.leadkit_home)):
            ws = Workspace.open(settings=settings)
            where = "given as `workspace`" if workspace else "the Lab's LEADKIT_HOME"
            said = f"workspace: {ws.home} ({where}; store {ws.store.url})"
            if announce:
                print(said)
            return NotebookWorkspace(ws, False, said)
        why = f"LEADKIT_HOME={home} holds no leadkit workspace"
    else:
        why = "no workspace was given and LEADKIT_HOME is not set"
    ws = Workspace.scratch(list(clients))
    if example is not None:
        example(ws)
    said = (
        f"workspace: a throwaway demo workspace with made-up data ({why}); set `workspace` to a workspace "
        "folder, or open this notebook in `leadkit lab`, to see yours"
    )
    if announce:
        print(said)
    return NotebookWorkspace(ws, True, said)


def lab_link(ws: Workspace, path: str | Path) -> str:
    """A link to a workspace file that opens in the Lab: relative to the Lab's `notebooks/` folder, where the
    notebooks are (`../<run dir>/<client>.ipynb`). URL-quoted."""
    from urllib.parse import quote

    return quote(os.path.relpath(Path(path), ws.home / "notebooks"))
