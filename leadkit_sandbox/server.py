"""Start the Airtable and Apify sandboxes together, in-process (`Sandbox`) or in the foreground (CLI)."""

from __future__ import annotations

import secrets
import signal
import sys
import threading
from contextlib import AbstractContextManager
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from leadkit_sandbox.airtable import AirtableApp
from leadkit_sandbox.core import ServiceApp, SharedState, serve_app, stop_server


def _load_apify(state: SharedState) -> ServiceApp | None:
    try:
        from leadkit_sandbox.apify import ApifyApp
    except ImportError:
        return None
    app: ServiceApp = ApifyApp(state)
    return app


def generate_token() -> str:
    return "tok" + secrets.token_hex(16)


class Sandbox:
    """Both sandbox servers on loopback with shared tokens, faults and stats.

    `Sandbox(tokens=["tok1", "tok2=appA,appB"])`; with no tokens, one is generated (`.token`).
    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        tokens: list[str] | None = None,
        host: str = "127.0.0.1",
        airtable_port: int = 0,
        apify_port: int = 0,
        rate_limit: float = 5,
        penalty_s: float = 30,
        token_rate_limit: float | None = None,
        *,
        actor_seconds: float | None = None,
        apify_max_runs: int | None = None,
    ) -> None:
        specs = list(tokens) if tokens else [generate_token()]
        self.host = host
        self.state = SharedState()
        self.token = self.state.tokens.add(specs[0])
        for spec in specs[1:]:
            self.state.tokens.add(spec)
        self.airtable = AirtableApp(self.state, rate_limit, penalty_s, token_rate_limit=token_rate_limit)
        apify: Any = _load_apify(self.state)
        if apify is not None and actor_seconds is not None:
            apify.run_duration_s = actor_seconds
        if apify is not None and apify_max_runs is not None:
            apify.max_runs = apify_max_runs
        self.apify: Any = apify
        self._ports = (airtable_port, apify_port)
        self._servers: list[ThreadingHTTPServer] = []
        self.airtable_url = ""
        self.apify_url = ""

    def start(self) -> Sandbox:
        if self._servers:
            return self
        airtable_port, apify_port = self._ports
        server = serve_app(self.airtable, self.state, self.host, airtable_port)
        self._servers.append(server)
        self.airtable_url = f"http://{self.host}:{server.server_address[1]}"
        if self.apify is not None:
            try:
                server = serve_app(self.apify, self.state, self.host, apify_port)
            except OSError:
                self.stop()
                raise
            self._servers.append(server)
            self.apify_url = f"http://{self.host}:{server.server_address[1]}"
        return self

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            stop_server(server)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def tokens(self) -> list[str]:
        return self.state.tokens.tokens()

    def set_rate_limit(self, n: float, penalty_s: float | None = None) -> None:
        """Requests per second per base (0: off) and the penalty after going over; resets windows."""
        self.airtable.set_rate_limit(n, self.airtable.limiter.penalty_s if penalty_s is None else penalty_s)

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule (same keys as `POST /__sandbox/faults`); ValueError if it is malformed."""
        return self.state.faults.add(rule).to_dict()

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def faults_paused(self) -> AbstractContextManager[None]:
        """A context in which no fault rule applies; the rules apply again after it, with the uses they had left."""
        return self.state.faults.paused()

    def stats(self) -> dict[str, Any]:
        return self.state.stats.snapshot()

    def reset(self) -> None:
        """Clear faults and stats and lift rate-limit penalties (data and tokens are kept)."""
        self.clear_faults()
        self.state.stats.reset()
        self.airtable.set_rate_limit(self.airtable.limiter.rate, self.airtable.limiter.penalty_s)
        self.airtable.set_token_rate_limit(self.airtable.token_limiter.rate)


def serve_forever(
    host: str = "127.0.0.1",
    airtable_port: int = 8701,
    apify_port: int = 8702,
    tokens: list[str] | None = None,
    rate_limit: float = 5,
    penalty_s: float = 30,
    *,
    actor_seconds: float | None = None,
    apify_max_runs: int | None = None,
) -> None:
    """Serve both sandboxes in the foreground until Ctrl-C, printing the URLs and tokens."""
    if rate_limit < 0 or penalty_s < 0:
        raise ValueError(f"--rate-limit ({rate_limit}) and --penalty-s ({penalty_s}) must be >= 0.")
    sandbox = Sandbox(
        tokens,
        host,
        airtable_port,
        apify_port,
        rate_limit,
        penalty_s,
        actor_seconds=actor_seconds,
        apify_max_runs=apify_max_runs,
    ).start()
    limit = f"{rate_limit:g} req/s per base, {penalty_s:g} s penalty" if rate_limit else "off"
    print(f"Airtable sandbox: {sandbox.airtable_url}  (pyairtable endpoint_url; API under /v0)")
    if sandbox.apify_url:
        print(f"Apify sandbox:    {sandbox.apify_url}  (API under /v2)")
    else:
        print("Apify sandbox:    not available (leadkit_sandbox.apify does not import)")
    print(f"Rate limit:       {limit}")
    generated = not tokens
    for token in sandbox.tokens:
        print(f"Token{' (generated)' if generated else ''}: {token}")
    if sandbox.apify is not None:
        print(f"Apify runs:       {sandbox.apify.run_duration_s:g} s each, at most {sandbox.apify.max_runs} at once")
    print("Faults and stats: POST/DELETE /__sandbox/faults, GET/DELETE /__sandbox/stats. Ctrl-C stops.")
    sys.stdout.flush()
    # Ctrl-C stops it even when its parent ignored SIGINT (a shell's background job, a test process): ignored
    # signals are inherited, and the sandbox would run on
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
