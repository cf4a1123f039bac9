"""Pacing across bases (50 requests/s per token) and across the workers of a dask cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from leadkit.store.airtable.pacing import PACE_MARGIN_S, RequestPacer

ENDPOINT = "http://127.0.0.1:1"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_token_pace_holds_across_bases(tmp_path: Path) -> None:
    fake = FakeTime()
    pacer = RequestPacer(
        5.0, token_rate=8.0, token_key="k", directory=tmp_path, clock=fake.clock, sleep=fake.sleep, dask=False
    )
    bases = [f"app{i:014d}" for i in range(4)]
    delays = [pacer.wait(ENDPOINT, bases[i % 4]) for i in range(16)]
    assert delays[:8] == [0.0] * 8  # 2 per base: no base is over 5, the token is at 8
    assert delays[8] == pytest.approx(1.0 + PACE_MARGIN_S)
    other = RequestPacer(5.0, token_rate=8.0, token_key="other", directory=tmp_path, clock=fake.clock, dask=False)
    assert other.wait(ENDPOINT, "appZZZZZZZZZZZZZZ") == 0.0  # another token has its own pace


def _book_in_worker(directory: str, n: int) -> list[float]:
    """On a dask worker: n requests through a pacer with a folder of its own (so only dask can share)."""
    from leadkit.store.airtable.pacing import RequestPacer

    seen: list[float] = []

    def clock() -> float:  # called once per booking, under the schedule's lock
        seen.append(time.time())
        return seen[-1]

    pacer = RequestPacer(3.0, token_rate=3.0, token_key="dask", directory=Path(directory), clock=clock)
    assert pacer.dask
    booked = []
    for _ in range(n):
        delay = pacer.wait(ENDPOINT, "appDaskBase000000")
        booked.append(seen[-1] + delay)
    return booked


def test_dask_workers_share_one_pace(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [
            client.submit(_book_in_worker, str(tmp_path / f"w{i}"), 6, pure=False, workers=[w])
            for i, w in enumerate(sorted(client.scheduler_info()["workers"]))
        ]
        sent = sorted(t for f in futures for t in f.result(timeout=120))
    assert len(sent) == 12
    # 3 a second over both workers: any 4 requests in a row are booked more than a second apart
    assert all(sent[i + 3] - sent[i] >= 1.0 for i in range(len(sent) - 3)), sent
