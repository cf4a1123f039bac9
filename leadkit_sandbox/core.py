"""The sandbox core: a loopback HTTP server that hosts one service app, with shared state.

Each service (Airtable, Apify) is a `ServiceApp` whose `handle` maps a `Request` to a `Response`.
`serve_app` runs it on a `ThreadingHTTPServer` (HTTP/1.1, keep-alive, Content-Length) and adds
what both services share: the `/__sandbox/...` control routes, request statistics and fault
injection. Tokens, fault rules and stats live in one `SharedState`, so either port controls both.
"""

from __future__ import annotations

import json as _json
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SERVICES = ("airtable", "apify")

FAULT_MODES = (
    "html_200",
    "html_401",
    "html_404",
    "json_401",
    "json_403",
    "json_404",
    "timeout_408",
    "rate_limit_429",
    "server_500",
    "bad_gateway_502",
    "slow",
    "truncated_json",
    "drop_connection",
    # the request is acted on (a run started, a record created), then the answer is lost or late
    "slow_after",
    "drop_after",
    "bad_gateway_after",
    # a refusal for want of capacity (Apify: actor-memory-limit-exceeded)
    "memory_limit_402",
    # handed to the app, which applies it to the parts of the request the rule's `body` matches
    "skip_targets",
)

#: Modes applied after the app has acted on the request.
AFTER_MODES = frozenset({"slow_after", "drop_after", "bad_gateway_after"})
#: Modes the app itself applies (it sees the rule as `Request.fault`).
APP_MODES = frozenset({"skip_targets"})

#: Status code answered by each fault mode that answers with an error page or body.
FAULT_STATUS = {
    "html_200": 200,
    "html_401": 401,
    "html_404": 404,
    "json_401": 401,
    "json_403": 403,
    "json_404": 404,
    "timeout_408": 408,
    "rate_limit_429": 429,
    "server_500": 500,
    "bad_gateway_502": 502,
    "bad_gateway_after": 502,
    "memory_limit_402": 402,
}

DEFAULT_SLOW_S = 2.0
_MISSING: Any = object()


class BadRequest(Exception):
    """The request cannot be understood (invalid JSON, malformed parameter): answered with a 400."""


class ApiError(Exception):
    """Raised by an app to answer at once with a JSON error (status, body, extra headers)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Request:
    """One HTTP request as the apps see it.

    `path` is the path as sent (still percent-encoded, no query string): table names may hold an
    encoded `/`, so apps split first and decode each segment (`segments()`).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""
    #: The fault rule of an app-applied mode (APP_MODES) that matched this request, for the app to apply.
    fault: FaultRule | None = None

    @property
    def target(self) -> str:
        """Path plus query string, as fault rules see it."""
        return f"{self.path}?{self.raw_query}" if self.raw_query else self.path

    def segments(self) -> list[str]:
        """The decoded path segments, without empty ones from leading or trailing slashes."""
        return [unquote(s) for s in self.path.split("/") if s]

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self, default: Any = _MISSING) -> Any:
        """The body parsed as JSON; `default` when the body is empty (if given), else BadRequest."""
        if not self.body.strip():
            if default is not _MISSING:
                return default
            raise BadRequest("The request body is empty; a JSON body is required.")
        try:
            return _json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}") from None

    def bearer_token(self) -> str | None:
        """The token from `Authorization: Bearer ...`, else from `?token=`."""
        auth = self.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        tokens = self.query.get("token")
        return tokens[0] if tokens and tokens[0] else None

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    body = _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8", dict(headers or {}))


def html_page(status: int) -> Response:
    """An HTML page such as a proxy, a login wall or a single-page app serves where JSON was expected."""
    title = {200: "Sign in", 401: "401 Unauthorized", 404: "404 Not Found"}.get(status, f"Error {status}")
    body = (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>This is not the API you are looking for.</p></body></html>\n"
    )
    return Response(status, body.encode(), "text/html; charset=utf-8")


class ServiceApp:
    """Base of a service app: subclasses set `service` and implement `handle`."""

    service: str = "generic"

    def handle(self, req: Request) -> Response:
        return json_response(404, {"error": "NOT_FOUND"})

    def error_body(self, status: int, mode: str) -> dict[str, Any]:
        """This service's JSON error body for a status (used by fault modes and generic errors)."""
        return {"error": {"type": mode.upper(), "message": f"Sandbox error {status} ({mode})"}}

    def base_of(self, req: Request) -> str | None:
        """The base (or other rate-limit unit) a request addresses, for stats and rate limits."""
        return None

    def bad_request(self, message: str) -> Response:
        body = self.error_body(400, "bad_request")
        if isinstance(body.get("error"), dict):
            body["error"]["message"] = message
        return json_response(400, body)


class TokenRegistry:
    """Token -> the base IDs it may use (None: every base). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, set[str] | None] = {}

    def add(self, spec: str) -> str:
        """Add a token from a CLI spec: `T` (every base) or `T=appA,appB` (only those); returns T."""
        token, sep, bases = spec.partition("=")
        token = token.strip()
        if not token:
            raise ValueError(f"Invalid token spec {spec!r}: expected TOKEN or TOKEN=appA,appB.")
        allowed = {b.strip() for b in bases.split(",") if b.strip()} if sep else None
        if sep and not allowed:
            raise ValueError(f"Invalid token spec for {token[:3]}...: no base IDs after '='.")
        with self._lock:
            self._tokens[token] = allowed
        return token

    def grant(self, token: str, base_id: str) -> None:
        """Let `token` use `base_id` (a no-op for a token that may use every base)."""
        with self._lock:
            allowed = self._tokens.setdefault(token, set())
            if allowed is not None:
                allowed.add(base_id)

    def known(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._tokens

    def allows(self, token: str | None, base_id: str) -> bool:
        with self._lock:
            if token is None or token not in self._tokens:
                return False
            allowed = self._tokens[token]
            return allowed is None or base_id in allowed

    def tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)


@dataclass
class FaultRule:
    service: str
    mode: str
    times: int = 1
    path: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    delay_s: float = 0.0
    id: int = 0
    hits: int = 0

    def matches(self, service: str, target: str, body_text: str) -> bool:
        if service != self.service:
            return False
        if self.path is not None and not self.path.search(target):
            return False
        return self.body is None or bool(self.body.search(body_text))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "mode": self.mode,
            "times": self.times,
            "path": self.path.pattern if self.path else None,
            "body": self.body.pattern if self.body else None,
            "delay_s": self.delay_s,
            "hits": self.hits,
        }


_RULE_KEYS = {"service", "mode", "times", "path", "body", "delay_s"}


class FaultRegistry:
    """Fault rules, applied in the order they were added. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1

    @staticmethod
    def parse(rule: Any) -> FaultRule:
        """Validate a rule given as a dict; ValueError names what is wrong and what is accepted."""
        if not isinstance(rule, dict):
            raise ValueError(f"A fault rule must be a JSON object, got {type(rule).__name__}.")
        unknown = sorted(set(rule) - _RULE_KEYS)
        if unknown:
            raise ValueError(f"Unknown fault rule keys {unknown}; accepted: {sorted(_RULE_KEYS)}.")
        service = rule.get("service")
        if service not in SERVICES:
            raise ValueError(f"Fault rule 'service' is {service!r}; accepted: {list(SERVICES)}.")
        mode = rule.get("mode")
        if mode not in FAULT_MODES:
            raise ValueError(f"Fault rule 'mode' is {mode!r}; accepted: {list(FAULT_MODES)}.")
        times = rule.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or (times < 1 and times != -1):
            raise ValueError(f"Fault rule 'times' is {times!r}; accepted: a positive integer, or -1 (until cleared).")
        patterns: dict[str, re.Pattern[str] | None] = {}
        for key in ("path", "body"):
            value = rule.get(key)
            if value is None:
                patterns[key] = None
                continue
            if not isinstance(value, str):
                raise ValueError(f"Fault rule {key!r} must be a regular expression string, got {value!r}.")
            try:
                patterns[key] = re.compile(value)
            except re.error as exc:
                raise ValueError(f"Fault rule {key!r} is not a valid regular expression ({exc}): {value!r}.") from None
        delay = rule.get("delay_s", DEFAULT_SLOW_S if mode in ("slow", "slow_after") else 0.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            raise ValueError(f"Fault rule 'delay_s' is {delay!r}; accepted: a number of seconds from 0 to 3600.")
        return FaultRule(service, mode, times, patterns["path"], patterns["body"], float(delay))

    def add(self, rule: Any) -> FaultRule:
        parsed = self.parse(rule)
        with self._lock:
            parsed.id = self._next_id
            self._next_id += 1
            self._rules.append(parsed)
        return parsed

    def clear(self) -> int:
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No rule applies for the duration; after it, the rules apply again with the uses they had left (before
        any added meanwhile). For a harness's own requests between the runs it injects faults into."""
        with self._lock:
            held, self._rules = self._rules, []
        try:
            yield
        finally:
            with self._lock:
                self._rules[:0] = held

    def take(self, service: str, path_with_query: str, body_text: str) -> FaultRule | None:
        """The first rule matching this request, counting one use (a used-up rule is dropped)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, path_with_query, body_text):
                    rule.hits += 1
                    if rule.times > 0:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    return rule
            return None


class Stats:
    """Counts of requests by service, base, method and path, plus the most recent requests."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._counters: dict[str, Counter[str]] = {}
        self._total = 0

    def record(
        self, service: str, base: str | None, method: str, path: str, status: int, fault: str | None = None
    ) -> None:
        entry = {
            "service": service,
            "base": base,
            "method": method,
            "path": path,
            "status": status,
            "fault": fault,
            "time": time.time(),
        }
        keys = {
            "by_service": service,
            "by_base": base or "-",
            "by_method": method,
            "by_path": f"{method} {path}",
            "by_status": str(status),
        }
        with self._lock:
            self._total += 1
            self._recent.append(entry)
            for name, key in keys.items():
                self._counters.setdefault(name, Counter())[key] += 1

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._counters.clear()
            self._total = 0

    def snapshot(self) -> dict[str, Any]:
        """Totals by service, base, method, "METHOD path" and status, and the recent requests."""
        with self._lock:
            snap: dict[str, Any] = {"total": self._total}
            for name in ("by_service", "by_base", "by_method", "by_path", "by_status"):
                snap[name] = dict(self._counters.get(name, {}))
            snap["requests"] = list(self._recent)
            return snap

    def count(
        self,
        service: str | None = None,
        base: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> int:
        """How many recent requests match (path is a regular expression searched in the path)."""
        pattern = re.compile(path) if path is not None else None
        with self._lock:
            return sum(
                1
                for e in self._recent
                if (service is None or e["service"] == service)
                and (base is None or e["base"] == base)
                and (method is None or e["method"] == method)
                and (pattern is None or pattern.search(e["path"]))
            )


class RateLimiter:
    """A sliding one-second window per key; over the limit, the key is penalised for `penalty_s`.

    During the penalty every request is refused (Airtable's behaviour); `rate` 0 turns limiting off.
    """

    def __init__(self, rate: float = 5, penalty_s: float = 30) -> None:
        self._lock = threading.Lock()
        self.rate = rate
        self.penalty_s = penalty_s
        self._hits: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def configure(self, rate: float, penalty_s: float) -> None:
        if rate < 0 or penalty_s < 0:
            raise ValueError(f"Rate limit {rate} and penalty {penalty_s} must both be >= 0.")
        with self._lock:
            self.rate = rate
            self.penalty_s = penalty_s
            self._hits.clear()
            self._blocked_until.clear()

    def check(self, key: str) -> float:
        """Count one request for `key`: 0.0 if allowed, else the seconds of penalty left."""
        now = time.monotonic()
        with self._lock:
            if self.rate <= 0:
                return 0.0
            until = self._blocked_until.get(key, 0.0)
            if now < until:
                return until - now
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - 1.0:
                hits.popleft()
            if len(hits) >= self.rate:
                hits.clear()
                self._blocked_until[key] = now + self.penalty_s
                return self.penalty_s
            hits.append(now)
            return 0.0


class SharedState:
    """What the Airtable and Apify servers share: tokens, fault rules and stats."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self.tokens = TokenRegistry()
        self.faults = FaultRegistry()
        self.stats = Stats()
        for spec in tokens:
            self.tokens.add(spec)


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: ServiceApp, state: SharedState) -> None:
        self.app = app
        self.state = state
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections the client closed are routine here; anything else goes to stderr."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        """Stop serving and close every open connection, keep-alive ones included."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "leadkit-sandbox"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one write, flushed in `_send`
    server: _SandboxHTTPServer

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # the client went away (timed out, dropped): nothing left to tell it
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: request stats go to /__sandbox/stats, not to stderr."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        app, state = self.server.app, self.server.state
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(json_response(400, app.error_body(400, "bad_request")))
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_query=split.query,
        )
        if req.path.startswith("/__sandbox/") or req.path == "/__sandbox":
            self._send(_control(req, state))
            return
        try:
            base = app.base_of(req)
        except Exception:
            base = None
        display_path = unquote(req.path)
        rule = state.faults.take(app.service, req.target, req.text())
        if rule is not None and rule.mode in APP_MODES:
            req.fault, rule = rule, None
        if rule is not None and rule.mode in AFTER_MODES:
            resp = self._call_app(app, req)
            state.stats.record(app.service, base, req.method, display_path, resp.status, rule.mode)
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.mode == "slow_after":
                self._send(resp)
            else:
                self._send_fault(app, "drop_connection" if rule.mode == "drop_after" else rule.mode)
            return
        if rule is not None:
            state.stats.record(app.service, base, req.method, display_path, FAULT_STATUS.get(rule.mode, 200), rule.mode)
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.mode != "slow":
                self._send_fault(app, rule.mode)
                return
        resp = self._call_app(app, req)
        if rule is None:
            state.stats.record(
                app.service, base, req.method, display_path, resp.status, req.fault.mode if req.fault else None
            )
        self._send(resp)

    @staticmethod
    def _call_app(app: ServiceApp, req: Request) -> Response:
        try:
            return app.handle(req)
        except BadRequest as exc:
            return app.bad_request(str(exc))
        except ApiError as exc:
            return json_response(exc.status, exc.body, exc.headers)
        except Exception:
            print(
                f"leadkit sandbox: unexpected error in {app.service} handling {req.method} {req.path}", file=sys.stderr
            )
            traceback.print_exc(file=sys.stderr)
            return json_response(500, app.error_body(500, "server_500"))

    def _send_fault(self, app: ServiceApp, mode: str) -> None:
        if mode == "drop_connection":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode == "truncated_json":
            full = _json.dumps({"records": [{"id": "rec" + "0" * 14, "fields": {"Name": "truncated"}}]}).encode()
            self.close_connection = True
            self._send(Response(200, full[: len(full) // 2], "application/json; charset=utf-8"))
            return
        status = FAULT_STATUS[mode]
        if mode.startswith("html_"):
            self._send(html_page(status))
            return
        headers = {"Retry-After": "1"} if status == 429 else {}
        self._send(json_response(status, app.error_body(status, mode), headers))

    def _send(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _control(req: Request, state: SharedState) -> Response:
    """The `/__sandbox/...` routes: fault rules and stats, no token needed."""
    route = req.path.rstrip("/")
    if route == "/__sandbox/faults":
        if req.method == "GET":
            return json_response(200, {"faults": [r.to_dict() for r in state.faults.rules()]})
        if req.method == "DELETE":
            return json_response(200, {"cleared": state.faults.clear()})
        if req.method == "POST":
            try:
                payload = req.json()
                rules = payload if isinstance(payload, list) else [payload]
                for rule in rules:  # validate them all before adding any
                    FaultRegistry.parse(rule)
            except (BadRequest, ValueError) as exc:
                return json_response(400, {"error": {"type": "INVALID_FAULT_RULE", "message": str(exc)}})
            added = [state.faults.add(r) for r in rules]
            body: dict[str, Any] = {"faults": [r.to_dict() for r in added]}
            if not isinstance(payload, list):
                body["fault"] = added[0].to_dict()
            return json_response(201, body)
    elif route == "/__sandbox/stats":
        if req.method == "GET":
            return json_response(200, state.stats.snapshot())
        if req.method == "DELETE":
            state.stats.reset()
            return json_response(200, {"reset": True})
    elif route == "/__sandbox/health":
        return json_response(200, {"ok": True})
    else:
        return json_response(404, {"error": "NOT_FOUND"})
    return json_response(405, {"error": {"type": "METHOD_NOT_ALLOWED", "message": f"{req.method} {route}"}})


def serve_app(app: ServiceApp, state: SharedState, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve `app` on (host, port) in a daemon thread; `server.server_address[1]` is the port.

    Stop it with `server.shutdown(); server.server_close()` (or `stop_server`).
    """
    server = _SandboxHTTPServer((host, port), app, state)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name=f"sandbox-{app.service}", daemon=True)
    thread.start()
    return server


def stop_server(server: ThreadingHTTPServer) -> None:
    """Stop a server from `serve_app`, closing open keep-alive connections too."""
    if isinstance(server, _SandboxHTTPServer):
        server.stop()
    else:
        server.shutdown()
        server.server_close()
