"""Private by default: what leadkit writes holds tokens (the workspace's `.env`) or client data (stores, executed
notebooks, logs), so no user of the host outside the owner (and, when asked, the owner's group) reads it.

Every `leadkit` command runs with `UMASK` added to its umask (so a kernel it starts, a SQLite file, a log line's
file and a crash log are created without the world's bits); `leadkit init` makes the workspace 0700 (0750 with
`--group`) and writes `.env` 0600 from its creation on.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The mode of a workspace folder `leadkit init` creates: its owner only (client data, executed notebooks, logs).
PRIVATE_DIR = 0o700
#: The mode with `leadkit init --group`: its group may read it too.
GROUP_DIR = 0o750
#: The mode of the workspace's `.env` (tokens, alert channel URLs, the dashboard login).
PRIVATE_FILE = 0o600
#: The umask leadkit's commands run with: nothing they create is readable by every user of the host.
UMASK = 0o027


def private_umask() -> int:
    """Make this process create files no user outside its group can read, and no one else can write (adds
    `UMASK`'s bits to the current umask); returns the previous umask."""
    previous = os.umask(UMASK)
    os.umask(previous | UMASK)
    return previous


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new or existing file that only its owner can read (mode 0600 from its creation on: no
    moment where another user could open it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as fh:
            fh.write(text)
    finally:
        os.close(fd)
