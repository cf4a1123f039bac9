"""Progress of a batch: clients done, failed, left and an ETA."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Clients done, failed, left and an ETA: a bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, *, stream: Any = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, client_id: str, status: str, seconds: float) -> None:
        self.done += 1
        if status not in ("Completed", "Skipped"):
            self.failed += 1
        if not self.enabled:
            return
        left = self.total - self.done
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * left if self.done else 0.0
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r[{bar}] {self.done}/{self.total} done, {self.failed} failed, {left} left, ETA {eta:4.0f}s "
                f"({client_id}: {status})\x1b[K"
            )
            if left == 0:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"[{self.done}/{self.total}] {client_id}: {status} in {seconds:.1f}s "
                f"({self.failed} failed, {left} left, ETA {eta:.0f}s)\n"
            )
        self.stream.flush()
