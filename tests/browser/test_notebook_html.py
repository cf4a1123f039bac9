"""Executed notebooks rendered for the dashboard: tables and headings stay, markup that could act is removed."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from leadkit.dashboard_server import load_app_module


def test_tables_and_headings_render_and_active_markup_does_not(tmp_path: Path) -> None:
    load_app_module()  # puts the repository's dashboards/ package on the path
    from dashboards.notebook_html import notebook_html

    nb = new_notebook()
    nb.cells = [new_markdown_cell("# Client workflow\n\nRuns the stages."), new_code_cell("report")]
    nb.cells[1].outputs = [
        new_output(
            "display_data",
            data={
                "text/html": "<table><tr><th>status</th><td>Completed</td></tr></table>"
                '<img src=x onerror="alert(1)"><script>alert(2)</script>',
                "text/plain": "status Completed",
            },
        ),
        new_output("display_data", data={"application/javascript": "alert(3)", "text/plain": "js"}),
    ]
    path = tmp_path / "Acme-Co.ipynb"
    nbformat.write(nb, path)
    document = notebook_html(str(path), tmp_path)
    assert "<th>status</th>" in document and "<td>Completed</td>" in document
    assert "<h1" in document and "&lt;h1" not in document and "&lt;p&gt;" not in document
    assert "<script>" not in document and "<img" not in document and "alert(3)" not in document


def test_cleaning_is_nh3_and_drops_script_content(tmp_path: Path) -> None:
    """nh3 (declared) drops a script with its content; bleach, which the cleaning used before and which only
    arrived through nbconvert, escaped it into visible text."""
    load_app_module()
    from dashboards.notebook_html import notebook_html
    from leadkit.doctor import declared_requirements

    assert any(spec.startswith("nh3") for spec in declared_requirements())
    nb = new_notebook()
    nb.cells = [new_code_cell("report")]
    nb.cells[0].outputs = [
        new_output(
            "display_data",
            data={"text/html": '<p class="ok">kept</p><script>steal("CANARY-SCRIPT")</script><style>x{}</style>'},
        )
    ]
    path = tmp_path / "Globex.ipynb"
    nbformat.write(nb, path)
    document = notebook_html(str(path), tmp_path)
    assert '<p class="ok">kept</p>' in document
    assert "CANARY-SCRIPT" not in document and "x{}" not in document
    # bleach may be in sys.modules through nbconvert (another test of this process); the cleaning never uses it
    import dashboards.notebook_html as cleaning

    assert "bleach" not in Path(cleaning.__file__).read_text(encoding="utf-8")
