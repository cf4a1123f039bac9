"""Progress of a batch: clients done, failed, left and an ETA; tqdm's bar on a terminal, plain lines otherwise
(a cron log or a pipe)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Clients done, failed, left and an ETA."""

    def __init__(self, total: int, *, stream: Any = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="client", desc="batch", dynamic_ncols=True)

    def update(self, client_id: str, status: str, seconds: float) -> None:
        self.done += 1
        if status not in ("Completed", "Skipped"):
            self.failed += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.failed} failed; {client_id}: {status}", refresh=False)
            self.bar.update(1)
            return
        left = self.total - self.done
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * left if self.done else 0.0
        self.stream.write(
            f"[{self.done}/{self.total}] {client_id}: {status} in {seconds:.1f}s "
            f"({self.failed} failed, {left} left, ETA {eta:.0f}s)\n"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
