"""Local Airtable-compatible and Apify-compatible API servers with fault injection.

`Sandbox` (in `leadkit_sandbox.server`) starts both on loopback; importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadkit_sandbox.server import Sandbox, serve_forever

__all__ = ["Sandbox", "serve_forever"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from leadkit_sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module 'leadkit_sandbox' has no attribute {name!r}")
