"""Crash logs: the traceback of an unexpected error, kept private and free of secrets.

A crash log (`leadkit-error-<time>-<pid>.log` in the temporary folder: the workspace may be what is broken) is
written 0600, names itself on its first line, and holds the command line with every argument that looks like a
secret replaced by `***`: the value of an option such as `--token`, `--basic-auth`, `--password` or
`--api-key` (as `--token T` or `--token=T`), the password and the token-like query values of a URL. Known secret
settings are scrubbed from the traceback as everywhere (`leadkit.config.scrub`).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from leadkit.config import scrub
from leadkit.private import PRIVATE_FILE

__all__ = ["crash_log_path", "redact_argv", "write_crash_log"]

#: Option names whose value is a secret (matched on the name without dashes, underscores or case).
_SECRET_OPTION = re.compile(r"(token|auth|password|passwd|secret|apikey|key|credential)", re.IGNORECASE)
#: Query parameter names whose value is a secret.
_SECRET_PARAM = re.compile(r"(token|auth|password|passwd|pass|secret|key|signature|sig|credential)", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def crash_log_path() -> Path:
    """Where the traceback of an unexpected error goes: a new file in the temporary folder."""
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime())
    return Path(tempfile.gettempdir()) / f"leadkit-error-{stamp}-{os.getpid()}.log"


def _redact_url(match: re.Match[str]) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return match.group(0).split("://", 1)[0] + "://***"


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The arguments with each secret-looking value replaced by `***` (see the module's docstring)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if arg.startswith("-"):
            name, eq, _value = arg.partition("=")
            if _SECRET_OPTION.search(name.lstrip("-").replace("-", "").replace("_", "")):
                if eq:
                    out.append(f"{name}=***")
                else:
                    out.append(arg)
                    hide_next = True
                continue
        out.append(_URL.sub(_redact_url, arg))
    return out


def write_crash_log(exc: BaseException, argv: Sequence[str], path: Path | None = None) -> Path:
    """Write `exc`'s traceback to a new private file (0600 from its creation on) and return its path. The
    first line names the file; the second is the command line, redacted. Raises OSError when it cannot be
    written."""
    where = path or crash_log_path()
    text = _URL.sub(_redact_url, scrub("".join(traceback.format_exception(exc))))
    command = scrub(" ".join(["leadkit", *redact_argv(argv)]))
    body = f"leadkit crash log: {where}\n{_URL.sub(_redact_url, command)}\n{text}"
    fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, body.encode("utf-8", "replace"))
    finally:
        os.close(fd)
    return where
