"""The batch end to end through the CLI: exit codes, --stream, progress lines, prune, sweep."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from leadkit.batch import prune
from leadkit.models import ClientRunStatus, Source, utcnow
from leadkit.runids import RunId

from .conftest import Env


def test_exit_0_when_all_complete_with_progress_lines_notebooks_and_log(batch_env: Env) -> None:
    out = batch_env.cli("batch", "--stages", "eligibility", "--clients", "Acme-Co,Hooli,Soylent")
    assert out.returncode == 0, out.stderr
    assert "[3/3]" in out.stderr and "left" in out.stderr and "ETA" in out.stderr  # plain lines off a terminal
    (run,) = batch_env.ws.store.list_runs()
    assert run.status.value == "Completed"
    records = batch_env.ws.store.list_client_runs(run_id=run.run_id)
    assert sorted(r.client_id for r in records) == ["Acme-Co", "Hooli", "Soylent"]
    run_dir = batch_env.ws.run_dir(run.run_id)
    for r in records:
        assert r.notebook == str(run_dir / f"{r.client_id}.ipynb") and Path(r.notebook).is_file()
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert {line["client_id"] for line in lines} >= {"Acme-Co", "Hooli", "Soylent"}  # kernels log there too


def test_exit_1_when_a_client_fails(batch_env: Env, notebook_factory: Callable[[str], Path]) -> None:
    notebook = notebook_factory("if client_id == 'Globex':\n    raise RuntimeError('nope')\n")
    out = batch_env.cli("batch", "--stages", "eligibility", "--clients", "Globex,Hooli", "--notebook", str(notebook))
    assert out.returncode == 1, out.stderr
    assert "hint for Globex" in out.stderr


def test_exit_2_before_any_run_when_harvesting_needs_a_missing_token(batch_env: Env) -> None:
    out = batch_env.cli("batch", "--clients", "Acme-Co,Hooli")  # Acme-Co may be harvested; no APIFY_TOKEN
    assert out.returncode == 2, out.stderr
    assert "APIFY_TOKEN" in out.stderr
    assert batch_env.ws.store.list_runs() == []
    # the same batch without harvesting, or only with clients that cannot be harvested, needs no token
    assert batch_env.cli("batch", "--clients", "Hooli,Umbrella-Corp", "--json").returncode == 0


def test_stream_takes_the_clients_of_that_processing_stream(batch_env: Env) -> None:
    store = batch_env.ws.store
    for client_id in ("Hooli", "Soylent"):
        store.save_client(replace(store.get_client(client_id), stream=2))
    out = batch_env.cli("batch", "--stream", "2", "--stages", "eligibility", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert sorted(c["client_id"] for c in data["clients"]) == ["Hooli", "Soylent"]
    assert store.get_run(data["run_id"]).stream == 2


def test_prune_removes_old_notebooks_and_logs_and_keeps_records(batch_env: Env) -> None:
    ws = batch_env.ws
    assert batch_env.cli("batch", "--stages", "eligibility", "--clients", "Hooli").returncode == 0
    (run,) = ws.store.list_runs()
    run_dir = ws.run_dir(run.run_id)
    files = sorted(run_dir.iterdir())
    assert {f.name for f in files} == {"Hooli.ipynb", "log.jsonl", "kernels.log"}
    assert prune(ws, timedelta(days=30)).removed == []  # fresh files stay
    old = time.time() - 31 * 86400
    for f in files:
        os.utime(f, (old, old))
    running = ws.records.start_run(stream=3)
    running_dir = ws.run_dir(running.run_id)
    running_dir.mkdir()
    (running_dir / "log.jsonl").write_text("{}\n")
    os.utime(running_dir / "log.jsonl", (old, old))

    out = batch_env.cli("prune", "--older-than", "30d", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(report["removed"]) == [str(f) for f in files]
    assert report["kept_running"] == [running.run_id]
    assert not run_dir.exists() and (running_dir / "log.jsonl").exists()
    assert ws.store.get_client_run(run.run_id, "Hooli") is not None  # records stay
    assert batch_env.cli("prune", "--older-than", "soon").returncode == 2


def test_sweep_marks_running_records_without_a_fresh_heartbeat_stale(batch_env: Env) -> None:
    ws = batch_env.ws
    run = ws.records.start_run()
    (record,) = ws.records.open_many(RunId.parse(run.run_id), ["Hooli"], Source.BATCH)
    record.heartbeat_at = utcnow() - timedelta(hours=1)
    ws.store.save_client_run(record)
    out = batch_env.cli("sweep", "--older-than", "15m", "--json")
    assert out.returncode == 0, out.stderr
    (swept,) = json.loads(out.stdout)["swept"]
    assert swept["client_run_id"] == record.client_run_id and "no heartbeat for" in swept["reason"]
    assert ws.store.get_client_run(run.run_id, "Hooli").status is ClientRunStatus.STALE
