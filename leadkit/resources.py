"""Files leadkit ships besides its code: the notebooks and the Panel dashboard, found through the package.

An installed wheel carries them as package data: the notebooks in `leadkit/notebooks/`, the dashboard as the
`dashboards` package (`pyproject.toml` and `setup.py` say so). A source checkout (and an editable install) has them
next to the package, in `notebooks/` and `dashboards/`. Nothing else in leadkit guesses these paths.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from leadkit.errors import ConfigError

__all__ = ["dashboards_dir", "notebook", "notebooks_dir"]

_PACKAGE = Path(__file__).resolve().parent
#: The notebook every layout has: how a notebooks folder is recognised.
_MARKER = "client_workflow.ipynb"


def notebooks_dir() -> Path:
    """The folder of leadkit's notebooks: package data in a wheel (`leadkit/notebooks`), else the checkout's
    (`notebooks/` beside the package); the packaged place when neither holds them (`notebook()` then says so)."""
    packaged, checkout = _PACKAGE / "notebooks", _PACKAGE.parent / "notebooks"
    if not (packaged / _MARKER).is_file() and (checkout / _MARKER).is_file():
        return checkout
    return packaged


def notebook(name: str) -> Path:
    """One of leadkit's notebooks by file name, e.g. `client_workflow.ipynb`; ConfigError when it is missing."""
    path = notebooks_dir() / name
    if not path.is_file():
        raise ConfigError(
            f"leadkit's notebook {name} is missing from {path.parent}",
            hint="Reinstall leadkit (pip install leadkit-*.whl, or `make setup` in a checkout).",
        )
    return path


def dashboards_dir() -> Path:
    """The folder of the Panel app: the installed `dashboards` package, else the checkout's `dashboards/`."""
    spec = importlib.util.find_spec("dashboards")
    candidates = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    candidates.append(_PACKAGE.parent / "dashboards")
    for candidate in candidates:
        if (candidate / "app.py").is_file():
            return candidate.resolve()
    raise ConfigError(
        f"the dashboard app is missing: no dashboards/app.py in {', '.join(str(c) for c in candidates)}",
        hint="Reinstall leadkit (pip install leadkit-*.whl, or `make setup` in a checkout).",
    )
