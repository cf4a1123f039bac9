"""Real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP server that takes JSON webhooks."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)

    def url(self, secret: str = "") -> str:
        auth = f"leadkit:{secret}@" if secret else ""
        return f"mailto://{auth}127.0.0.1:{self.port}?to=ops@example.com&from=leadkit@example.com"

    def bodies(self) -> list[str]:
        out = []
        for m in self.messages:
            part = m.get_payload(decode=True) if not m.is_multipart() else m.get_payload(0).get_payload(decode=True)
            out.append(part.decode() if isinstance(part, bytes) else str(part))
        return out


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.box.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


def _accept(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(free_port())
    controller = Controller(
        _Handler(box),
        hostname="127.0.0.1",
        port=box.port,
        auth_require_tls=False,
        authenticator=_accept,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Webhook:
    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    failing: bool = False

    def url(self, path: str = "/alerts") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def titles(self) -> list[str]:
        return [p.get("title", "") for p in self.posts]


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not hook.failing:
                hook.posts.append(body)
                hook.paths.append(self.path)
            self.send_response(503 if hook.failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def channel(url: str) -> str:
    """The name leadkit shows and records for a channel URL (Apprise's privacy URL, or a fingerprint)."""
    from leadkit.alerts.channels import parse_channels

    return parse_channels(url)[0].name


def forget_alerts(store: Any) -> None:
    """As if every alert's window had passed: the alert rows and their dedupe claims are gone (SQLite store)."""
    store.db.conn.execute("DELETE FROM alerts")
    store.db.conn.execute("DELETE FROM leases WHERE name LIKE 'alert:%'")
