"""The batch's Apify slots (lock files): a client keeps its slot across its runs, and gives it back at the end."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from leadkit.capacity import SLOTS_ENV, KeptSlot, SlotSpec, file_slot
from leadkit.errors import RateLimitError


def test_a_kept_slot_is_taken_once_and_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SLOTS_ENV, SlotSpec(limit=1, path=str(tmp_path)).to_env())
    slot = KeptSlot()
    slot.take(timeout_s=1)
    slot.take(timeout_s=0)  # the second run of the same client: no wait, it holds the one slot already
    assert slot.held
    with pytest.raises(RateLimitError), file_slot(tmp_path, 1, timeout_s=0.3):
        pass  # another client finds no free slot while this one holds it
    slot.release()
    assert not slot.held
    with file_slot(tmp_path, 1, timeout_s=0.3) as number:
        assert number == 0  # free again once released


def test_slots_never_exceed_the_limit(tmp_path: Path) -> None:
    inside, peak, lock = 0, 0, threading.Lock()

    def client() -> None:
        nonlocal inside, peak
        for _ in range(5):
            with file_slot(tmp_path, 3, timeout_s=30):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                threading.Event().wait(0.02)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak <= 3  # never more than the limit (8 threads would all be inside without the locks)
