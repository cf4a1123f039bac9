"""Executed notebooks as safe HTML: nbconvert's HTMLExporter with sanitised output, shown in a sandboxed iframe.

The page starts at the report (the results, displays and errors the cells produced, without their code); the
parameter cells (the template's defaults and what papermill injected, such as the long `handoff`) follow,
collapsed; then the notebook cell by cell.

The notebook's HTML goes into the iframe's `srcdoc` attribute, escaped, and the iframe has an empty `sandbox`
(no scripts, no same-origin access): whatever a record or an output holds is shown, never run. Only notebooks
inside the workspace folder are read.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

_CSS = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 8px; color: #222; }
.cell { margin: 6px 0; }
.input_prompt, .prompt { color: #888; font-size: 11px; }
.input_area, .highlight { background: #f6f6f6; border: 1px solid #e2e2e2; border-radius: 3px; padding: 2px 6px; }
pre { white-space: pre-wrap; margin: 2px 0; }
.output_stderr { background: #fdecea; }
.output_error pre { background: #fdecea; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 6px; }
h2.lk-report, h2.lk-cells { font-size: 15px; border-bottom: 1px solid #ddd; margin: 10px 0 4px 0; }
details.lk-parameters { margin: 8px 0; } details.lk-parameters summary { cursor: pointer; color: #555; }
"""


class NotebookUnavailable(Exception):
    """The notebook cannot be shown (missing, outside the workspace, unreadable); the message says why."""


def resolve_notebook(path_text: str, home: Path) -> Path:
    """The notebook's path, only when it is an .ipynb inside the workspace folder `home`."""
    home = home.resolve()
    path = Path(path_text)
    if not path.is_absolute():
        path = home / path
    path = path.resolve()
    if path.suffix != ".ipynb" or not path.is_relative_to(home):
        raise NotebookUnavailable(f"{path_text} is not a notebook inside the workspace {home}; it is not shown")
    if not path.is_file():
        raise NotebookUnavailable(f"the executed notebook {path_text} does not exist (any more)")
    return path


@lru_cache(maxsize=32)
def _render(path: str, mtime_ns: int) -> str:
    import nbformat
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # a truncated or foreign file
        raise NotebookUnavailable(f"the notebook {path} cannot be read: {type(exc).__name__}") from exc
    _clean_outputs(nb)
    report, params, rest = _split(nb)
    # Outputs are cleaned above with a list of tags that keeps tables and headings (nbconvert's own sanitiser
    # escapes <p>, <h1> and <th>, which garbles the notebook); markdown cells are the notebook's own source.
    exporter = HTMLExporter(template_name="basic", embed_images=True, sanitize_html=False)
    outputs_only = HTMLExporter(
        template_name="basic", embed_images=True, sanitize_html=False, exclude_input=True, exclude_input_prompt=True
    )
    report_body = outputs_only.from_notebook_node(report)[0] if report.cells else "<p>No cell produced output.</p>"
    params_body = exporter.from_notebook_node(params)[0] if params.cells else ""
    rest_body = exporter.from_notebook_node(rest)[0]
    css = _CSS + HtmlFormatter().get_style_defs(".highlight")
    body = f'<h2 class="lk-report">Report</h2>{report_body}'
    if params_body:
        body += (
            '<details class="lk-parameters"><summary>Parameters: the template defaults and what was passed '
            f"(collapsed)</summary>{params_body}</details>"
        )
    body += f'<h2 class="lk-cells">The notebook, cell by cell</h2>{rest_body}'
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<style>{css}</style></head><body>{body}</body></html>"
    )


PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})
#: Output types that make a cell part of the report (printed progress lines are not).
REPORT_OUTPUTS = frozenset({"execute_result", "display_data", "error"})


def _split(nb: Any) -> tuple[Any, Any, Any]:
    """Three notebooks: the report (cells with a result, a display or an error), the parameter cells, the rest."""
    import copy

    def part(cells: list[Any]) -> Any:
        out = copy.copy(nb)
        out.cells = cells
        return out

    report, params, rest = [], [], []
    for cell in nb.get("cells", []):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & PARAMETER_TAGS:
            params.append(cell)
            continue
        rest.append(cell)
        outputs = [o for o in cell.get("outputs", []) if o.get("output_type") in REPORT_OUTPUTS]
        if outputs and cell.get("cell_type") == "code":
            shown = copy.deepcopy(cell)
            shown["outputs"] = [o for o in shown["outputs"] if o.get("output_type") in REPORT_OUTPUTS]
            report.append(shown)
    return part(report), part(params), part(rest)


SAFE_TAGS = frozenset(
    {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "div", "dl", "dt", "em"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "small", "span", "strong", "sub"}
    | {"sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
)
#: Output types that are shown after cleaning; any other rich output (scripts, widgets, SVG) is dropped.
_MARKUP_MIMETYPES = ("text/html", "text/markdown")
_SAFE_MIMETYPES = ("text/plain", "image/png", "image/jpeg", "application/json")


def _clean_outputs(nb: Any) -> None:
    """Keep only safe output types; clean HTML outputs down to `SAFE_TAGS` with class attributes only (nh3:
    any other tag is dropped, and the content of `script` and `style` with it)."""
    import nh3

    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            for mime in list(data):
                if mime in _MARKUP_MIMETYPES:
                    value = data[mime]
                    text = "".join(value) if isinstance(value, list) else str(value)
                    data[mime] = nh3.clean(text, tags=set(SAFE_TAGS), attributes={"*": {"class"}}, link_rel=None)
                elif mime not in _SAFE_MIMETYPES:
                    del data[mime]


def notebook_html(path_text: str, home: Path) -> str:
    """The executed notebook rendered as a standalone, script-free HTML document."""
    path = resolve_notebook(path_text, home)
    return _render(str(path), path.stat().st_mtime_ns)


def iframe(document: str, *, title: str, height: int = 600) -> str:
    """An iframe showing `document` with every capability off."""
    return (
        f'<iframe class="lk-notebook" title="{html.escape(title, quote=True)}" sandbox="" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
        f'srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )
