"""The Apify slots (lock files): a client keeps its slot across its runs, and gives it back at the end; the
batches of one account share its slots."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from leadkit.capacity import SLOTS_ENV, KeptSlot, SlotSpec, account_slot_dir, apify_slot, file_slot
from leadkit.errors import RateLimitError


def test_a_kept_slot_is_taken_once_and_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APIFY_TOKEN", raising=False)  # no account known: the batch's own folder
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


def test_batches_of_one_account_share_its_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two batches (two workspaces, each with its own slot folder and limit) spending one Apify account hold no
    more runs at once than the larger limit; another account has slots of its own."""
    monkeypatch.setenv("APIFY_TOKEN", f"apify_api_{tmp_path.name}")
    first = SlotSpec(limit=3, path=str(tmp_path / "workspace-a" / "apify-slots"))
    second = SlotSpec(limit=2, path=str(tmp_path / "workspace-b" / "apify-slots"))
    assert account_slot_dir(first) == account_slot_dir(second)
    inside, peak, lock = 0, 0, threading.Lock()

    def client(spec: SlotSpec) -> None:
        nonlocal inside, peak
        for _ in range(4):
            with apify_slot(spec=spec, timeout_s=30):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                threading.Event().wait(0.02)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=client, args=(spec,)) for spec in [first, second] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak <= 3  # sized per batch (each its own folder), the two would hold up to 5
    shared = account_slot_dir(first)
    monkeypatch.setenv("APIFY_TOKEN", "apify_api_another_account")
    assert account_slot_dir(first) != shared
    monkeypatch.delenv("APIFY_TOKEN")
    assert account_slot_dir(first) == Path(first.path)  # no account known: the batch's own folder
