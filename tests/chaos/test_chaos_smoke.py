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


@pytest.mark.timeout(600)
def test_fixed_schedules_keep_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    chaos = _chaos()
    # seed 3: #0 SQLite, failing polls and dataset pages under a charge cap; #12 SQLite, a batch SIGKILL then
    # --resume; #3 Airtable, a burst of 429s on reads; #37 Airtable, a lost create answer under a charge cap
    counts = chaos.run_schedules(3, 40, "both", only=[0, 12, 3, 37])
    out = capsys.readouterr().out
    assert counts["schedules"] == 4 and counts["sqlite"] == 2 and counts["airtable"] == 2
    assert counts["violations"] == 0, out
    assert counts["faults_hit"] > 0, "the plans' faults were applied, as the sandbox counts them"


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_longer_fixed_schedules_keep_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    """make chaos: a kernel SIGKILL, a restart in a new PID namespace and host name, a racing batch, Airtable
    updates and creates answered late or lost."""
    chaos = _chaos()
    counts = chaos.run_schedules(3, 40, "both", only=[20, 21, 23, 15, 16, 17])
    out = capsys.readouterr().out
    assert counts["schedules"] == 6
    assert counts["violations"] == 0, out


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_the_schedules_of_seed_20261209_that_broke_an_invariant_keep_every_invariant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """make chaos: what seed 20261209 found (each broke an invariant before its fix, run alone too): #3 Airtable,
    a killed kernel's SUCCEEDED run whose INPUT answered 500 (runs-settled); #19 Airtable, the bench's own read
    after a batch SIGKILL hit a truncated-JSON fault; #30 SQLite, SIGTERM during the abort of a run whose poll
    was not JSON (runs-settled)."""
    chaos = _chaos()
    counts = chaos.run_schedules(20261209, 60, "both", only=[3, 19, 30])
    out = capsys.readouterr().out
    assert counts["schedules"] == 3
    assert counts["violations"] == 0, out


def test_a_plan_is_reproducible_from_its_seed_and_number() -> None:
    chaos = _chaos()
    assert chaos.make_plan(7, 3, "sqlite") == chaos.make_plan(7, 3, "sqlite")
    assert chaos.make_plan(7, 3, "sqlite") != chaos.make_plan(8, 3, "sqlite")
