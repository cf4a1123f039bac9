"""The default concurrency of a batch: from memory, whatever the store (issue 23)."""

from __future__ import annotations

import psutil
import pytest

from leadkit.batch import default_concurrency
from leadkit.batch.runner import KERNEL_MB, MAX_CONCURRENCY, MIN_CONCURRENCY


def from_memory() -> int:
    fits = psutil.virtual_memory().available // (KERNEL_MB * 2**20)
    return int(min(MAX_CONCURRENCY, max(MIN_CONCURRENCY, fits)))


def test_airtable_store_does_not_lower_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Airtable store paced at 2 requests a second, the default is still the memory-sized one (at least
    8): clients beyond Apify's capacity wait for a slot, and request pacing is shared by every kernel anyway."""
    monkeypatch.setenv("LEADKIT_STORE", "airtable://appMaster0000000")
    monkeypatch.setenv("AIRTABLE_MAX_REQUESTS_PER_S", "2")
    before = from_memory()
    n = default_concurrency()
    assert n >= MIN_CONCURRENCY > 2
    assert n in {before, from_memory()}
