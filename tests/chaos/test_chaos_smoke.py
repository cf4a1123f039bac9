"""A small fixed set of the chaos bench's schedules (bench/chaos.py) in the normal suite: real batches against the
sandboxes under seeded faults, every invariant checked against the sandbox's own counts and the store."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def _chaos():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("leadkit_bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_fixed_schedules_keep_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    chaos = _chaos()
    # seed 3: #2 SQLite, failing dataset pages and skipped targets; #36 SQLite, a batch SIGTERM while runs work;
    # #24 SQLite, a batch SIGKILL then --resume; #37 Airtable, failing polls
    counts = chaos.run_schedules(3, 40, "both", only=[2, 36, 24, 37])
    out = capsys.readouterr().out
    assert counts["schedules"] == 4 and counts["sqlite"] == 3 and counts["airtable"] == 1
    assert counts["violations"] == 0, out
    assert counts["faults_hit"] > 0, "the plans' faults were applied, as the sandbox counts them"


def test_a_plan_is_reproducible_from_its_seed_and_number() -> None:
    chaos = _chaos()
    assert chaos.make_plan(7, 3, "sqlite") == chaos.make_plan(7, 3, "sqlite")
    assert chaos.make_plan(7, 3, "sqlite") != chaos.make_plan(8, 3, "sqlite")
