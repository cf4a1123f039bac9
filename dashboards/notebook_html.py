"""Executed notebooks as safe HTML: nbconvert's HTMLExporter with sanitised output, shown in a sandboxed iframe.

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
    # Outputs are cleaned above with a list of tags that keeps tables and headings (nbconvert's own sanitiser
    # escapes <p>, <h1> and <th>, which garbles the notebook); markdown cells are the notebook's own source.
    exporter = HTMLExporter(template_name="basic", embed_images=True, sanitize_html=False)
    body, _ = exporter.from_notebook_node(nb)
    css = _CSS + HtmlFormatter().get_style_defs(".highlight")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<style>{css}</style></head><body>{body}</body></html>"
    )


SAFE_TAGS = frozenset(
    {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "div", "dl", "dt", "em"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "small", "span", "strong", "sub"}
    | {"sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
)
#: Output types that are shown after cleaning; any other rich output (scripts, widgets, SVG) is dropped.
_MARKUP_MIMETYPES = ("text/html", "text/markdown")
_SAFE_MIMETYPES = ("text/plain", "image/png", "image/jpeg", "application/json")


def _clean_outputs(nb: Any) -> None:
    """Keep only safe output types; clean HTML outputs down to `SAFE_TAGS` with class attributes only."""
    import bleach

    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            for mime in list(data):
                if mime in _MARKUP_MIMETYPES:
                    value = data[mime]
                    text = "".join(value) if isinstance(value, list) else str(value)
                    data[mime] = bleach.clean(text, tags=SAFE_TAGS, attributes={"*": ["class"]})
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
