"""Every module imports (a missing import or a name error at import time fails here, as the original's missing
`runIdService` import would have), and `import leadkit` stays cheap."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import leadkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(leadkit.__path__, "leadkit.") if not m.name.endswith("__main__"))


def test_every_module_imports() -> None:
    assert "leadkit.records" in MODULES and "leadkit.store.sqlite" in MODULES
    for name in MODULES:
        importlib.import_module(name)


def test_public_api_names_resolve() -> None:
    for name in leadkit.__all__:
        assert getattr(leadkit, name) is not None, name


def test_import_leadkit_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, leadkit\n"
        "heavy = [m for m in ('pandas', 'panel', 'papermill', 'pyairtable', 'httpx', 'typer', 'nbformat', 'bokeh',"
        " 'pydantic', 'requests') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_classification_is_a_leaf_and_reports_sit_above_it() -> None:
    """`leadkit.classify` (used by records, workflow and the batch) imports no other leadkit module than errors,
    models and config: no cycle through the reports in `leadkit.diagnosis`."""
    code = (
        "import sys, leadkit.classify, leadkit.records, leadkit.workflow\n"
        "print('leadkit.diagnosis' in sys.modules)\n"
        "import leadkit.diagnosis\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    tree = importlib.import_module("leadkit.classify")
    leadkit_imports = {
        line.split()[1] for line in open(tree.__file__ or "").read().splitlines() if line.startswith("from leadkit")
    }
    assert leadkit_imports <= {"leadkit.errors", "leadkit.models"}, leadkit_imports
