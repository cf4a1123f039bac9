"""Serve the Panel dashboard (`dashboards/app.py`) for a workspace, on loopback unless told otherwise.

`serve_dashboard` blocks until Ctrl-C (the `leadkit dashboard` command and the end of `leadkit demo`);
`start_dashboard` serves on a background thread and returns a handle with `.url` and `.stop()` (tests, bench).
With `basic_auth="user:password"` every page and the websocket need a login (Panel's basic auth: a login form and
a signed cookie), so a request without credentials gets no data; the form returns to the page asked for.
`decide_login` takes the login from LEADKIT_DASHBOARD_AUTH (environment, ./.env, the workspace's .env) and refuses
a non-loopback address without one.

Panel is imported only here, when a dashboard is served: `import leadkit` stays cheap.
"""

from __future__ import annotations

import importlib
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from leadkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from leadkit.workspace import Workspace

TITLE = "leadkit dashboard"


def dashboards_dir() -> Path:
    """The folder holding the Panel app (the installed `dashboards` package, or the checkout's)."""
    from leadkit.resources import dashboards_dir as found

    return found()


def load_app_module() -> ModuleType:
    """Import `dashboards.app` from where `dashboards_dir()` found it."""
    root = str(dashboards_dir().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("dashboards.app")


def parse_basic_auth(value: str) -> dict[str, str]:
    """`user:password` as Panel's users mapping; anything else is refused."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise DataError(
            "--basic-auth must be USER:PASSWORD (a user name, a colon, then a non-empty password); "
            "the value given is not in that form"
        )
    return {user.strip(): password}


def is_loopback(address: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Login:
    """The dashboard's login as decided from the options and the settings: `basic_auth` (None: no login) and the
    warnings to print."""

    basic_auth: str | None
    warnings: list[str] = field(default_factory=list)


def decide_login(address: str, option: str | None, *, no_login: bool, home: Path | str | None = None) -> Login:
    """The login the dashboard asks for: `--basic-auth` (`option`) when given, else LEADKIT_DASHBOARD_AUTH from
    the environment, ./.env or the workspace's .env (`home`). A login on the command line works, with a warning
    (every user of the host sees it in `ps`). A non-loopback address without a login is refused (ConfigError,
    exit 2) unless `no_login` insists."""
    from leadkit.config import DashboardSettings, load

    warnings = []
    if option is not None:
        parse_basic_auth(option)
        warnings.append(
            "warning: --basic-auth on the command line is visible to every user of this host (`ps`); put "
            "LEADKIT_DASHBOARD_AUTH=USER:PASSWORD in the workspace's .env (mode 600) or the environment instead"
        )
        auth: str | None = option
    else:
        secret = load(DashboardSettings, home).leadkit_dashboard_auth
        auth = secret.get_secret_value() if secret is not None and secret.get_secret_value() else None
        if auth is not None:
            try:
                parse_basic_auth(auth)
            except DataError:
                raise DataError(
                    "LEADKIT_DASHBOARD_AUTH must be USER:PASSWORD (a user name, a colon, then a non-empty password); "
                    "the value set is not in that form (not shown)"
                ) from None
    if no_login:
        if auth is not None:
            warnings.append("warning: --no-login: serving without the login that LEADKIT_DASHBOARD_AUTH sets")
        auth = None
        if not is_loopback(address):
            warnings.append(
                f"warning: serving on {address} with no login (--no-login): anyone who can reach it sees client "
                "names, run records and failures, and can change failure triage"
            )
    elif auth is None and not is_loopback(address):
        raise ConfigError(
            f"refusing to serve the dashboard on {address} without a login: anyone who can reach it would see "
            "client names, run records and failures",
            hint="Set LEADKIT_DASHBOARD_AUTH=USER:PASSWORD in the workspace's .env or the environment (and put a "
            "TLS proxy in front of a shared dashboard), or pass --no-login to serve it open anyway.",
        )
    return Login(auth, warnings)


def check_address(address: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise DataError(f"--port {port} is not a TCP port; use 0 (any free port) to 65535")
    if not address.strip():
        raise DataError("--address is empty; use 127.0.0.1 (loopback) or the interface address to listen on")


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _make_server(
    ws: Workspace, *, port: int, address: str, basic_auth: str | None, refresh_s: float | None, loop: Any = None
) -> Any:
    """A Panel (Bokeh) server, not started, whose websocket accepts pages loaded from its own address."""
    from panel.io.server import get_server

    check_address(address, port)
    extra: dict[str, Any] = {}
    if basic_auth is not None:
        extra = {
            "basic_auth": parse_basic_auth(basic_auth),
            "cookie_secret": secrets.token_urlsafe(32),
            # Panel's own login page loads its logo from a CDN; this one is self-contained
            "basic_login_template": str(dashboards_dir() / "login.html"),
        }
    module = load_app_module()
    options = {} if refresh_s is None else {"refresh_s": refresh_s}

    def app() -> Any:
        return module.create_app(ws, **options)

    if port == 0:
        port = _free_port(address)
    if address in ("0.0.0.0", "::"):
        origins = [f"*:{port}"]
    else:
        origins = sorted({f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    try:
        return get_server(
            app,
            port=port,
            address=address,
            loop=loop,
            show=False,
            start=False,
            title=TITLE,
            verbose=False,
            websocket_origin=origins,
            **extra,
        )
    except OSError as exc:
        raise ConfigError(
            f"the dashboard could not listen on {address}:{port}: {exc.strerror or exc}",
            hint="Pick another --port, or stop what already listens there.",
        ) from exc


@dataclass
class DashboardHandle:
    """A dashboard served on a background thread."""

    url: str
    port: int
    _server: Any = field(repr=False)
    _loop: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its thread (idempotent)."""
        if not self._thread.is_alive():
            return

        def _stop() -> None:
            self._server.stop()
            self._loop.stop()

        self._loop.add_callback(_stop)
        self._thread.join(timeout)

    def __enter__(self) -> DashboardHandle:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_dashboard(
    ws: Workspace,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    basic_auth: str | None = None,
    refresh_s: float | None = None,
) -> DashboardHandle:
    """Serve the dashboard on a background thread (port 0: any free port) and return once it listens."""
    from tornado.ioloop import IOLoop

    check_address(address, port)
    load_app_module()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = IOLoop(make_current=True)
        try:
            server = _make_server(ws, port=port, address=address, basic_auth=basic_auth, refresh_s=refresh_s, loop=loop)
            server.start()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            loop.close()
            return
        box.update(server=server, loop=loop)
        ready.set()
        loop.start()
        loop.close(all_fds=True)

    thread = threading.Thread(target=run, name="leadkit-dashboard", daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in box:
        raise box["error"]
    if "server" not in box:
        raise ConfigError(f"the dashboard did not start on {address}:{port} within 60 s")
    server = box["server"]
    url = f"http://{address}:{server.port}/"
    return DashboardHandle(url=url, port=server.port, _server=server, _loop=box["loop"], _thread=thread)


def serve_dashboard(
    ws: Workspace,
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    basic_auth: str | None = None,
    open_message: bool = True,
    show: bool = False,
    refresh_s: float | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C."""
    server = _make_server(ws, port=port, address=address, basic_auth=basic_auth, refresh_s=refresh_s)
    url = f"http://{address}:{server.port}/"
    if open_message:
        login = " (log in with the LEADKIT_DASHBOARD_AUTH user and password)" if basic_auth else ""
        print(f"dashboard: {url}{login}  (workspace {ws.home}; Ctrl-C to stop)", flush=True)
    server.start()
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if open_message:
            print("dashboard stopped", flush=True)
