"""Seeded fault schedules against real batches, with invariants checked against what the sandboxes counted.

    python bench/chaos.py --seed S --schedules N [--store sqlite|airtable|both] [--verbose]

Each schedule (reproducible from the seed and its number) builds a small workspace (1-2 clients, two where the
process fault needs them, 2-4 leads each; on SQLite, or on the Airtable sandbox with a master base and one base per
client), injects a seeded plan of faults through the sandbox's `/__sandbox/faults` control API: on Apify (lost or
late start answers, 5xx before or after acting, capacity refusals, HTML pages, truncated JSON, failing polls, logs,
dataset pages, INPUT reads and aborts, SUCCEEDED runs that skip targets) and, on Airtable schedules, on Airtable's
reads, creates, upserts and updates (answer lost or late after the server acted, 5xx before or after acting, 429
bursts, slow answers past the client's timeout); some schedules give the clients a spend cap that ends their run at
its charge cap. In some schedules a process fault: SIGKILL of every kernel while its actor run works, SIGTERM of the
batch, SIGKILL of the batch then `leadkit batch --resume` (in place, or in a new PID namespace under a new host name
via `unshare -pf --mount-proc -u`, as a restarted container: the bench then writes the dead holder's lease heartbeat
back by its TTL instead of waiting it out), a second batch racing the first on the same stream. It runs `leadkit
batch` for real (papermill kernels), then checks:

    runs-named       every actor run the Apify sandbox started is named in a ClientRun's events
    runs-settled     none is READY/RUNNING once the batches exited; each is read, aborted, failed or read-pending
    one-paid-run     no lead's target was bought by two SUCCEEDED runs
    no-processing    no lead is Processing
    evidence         no lead is Done or No Posts without a read dataset that covered it
    posts-kept       every lead with items in a read dataset is Done (or read-pending for that run)
    records          no Run or ClientRun is Running; no two ClientRuns for one run and client
    failures         every Failed or Stale ClientRun has a failure with a category and a hint
    one-lease        no two Runs of one stream were running at once (from their start and end, and for one never
                     ended, its records' last heartbeat): no two batches held the stream's lease together
    alerted          every Failed or Stale ClientRun's client is named by an alert the store recorded
    secrets          the schedule's canary token appears in no file of the workspace and no Airtable record

The last line is `schedules=N violations=V sqlite=A airtable=B faults_hit=F seed=S` (F: the faults the sandbox
reports as applied); the exit code is 0 when V = 0. A failing schedule prints its seed, number, plan and the broken
invariant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from leadkit.config import get_settings
from leadkit.demo import seed as seed_clients
from leadkit.harvest.harvester import READ_PENDING
from leadkit.harvest.posts import normalize_profile_url
from leadkit.models import ClientRunStatus, HarvestStatus, RunStatus
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

LEADKIT = str(Path(sys.executable).parent / "leadkit")
START = r"^/v2/acts/[^/]+/runs(\?|$)"

#: (name, path pattern, body pattern, modes) of the Apify calls a plan may hit.
APIFY_POINTS: list[tuple[str, str, str | None, list[str]]] = [
    (
        "start",
        START,
        "targetUrls",
        ["drop_after", "slow_after", "bad_gateway_after", "bad_gateway_502", "memory_limit_402", "html_200"],
    ),
    (
        "poll",
        r"^/v2/actor-runs/[^/?]+(\?|$)",
        None,
        ["server_500", "bad_gateway_502", "drop_connection", "truncated_json"],
    ),
    ("log", r"^/v2/actor-runs/[^/]+/log", None, ["server_500", "bad_gateway_502", "drop_connection"]),
    ("dataset", r"^/v2/datasets/[^/]+/items", None, ["server_500", "bad_gateway_502", "truncated_json"]),
    ("input", r"/records/INPUT", None, ["server_500", "drop_connection"]),
    ("list", r"^/v2/acts/[^/]+/runs\?", None, ["server_500"]),
    ("abort", r"/abort", None, ["server_500", "bad_gateway_502"]),
]
#: The Airtable record routes (not the meta API): `/v0/{base}/{table}[/{record}]`.
AIRTABLE_RECORDS = r"^/v0/app[^/]+/[^/?]+"
_NO_UPSERT = r"^(?![\s\S]*performUpsert)"
#: (name, body pattern, modes) of the Airtable calls a plan may hit (Airtable schedules only). Reads have no
#: body; a create's records carry fields and no id, an update's carry an id, an upsert says performUpsert.
AIRTABLE_POINTS: list[tuple[str, str, list[str]]] = [
    ("read", r"^$", ["server_500", "rate_limit_429", "slow", "drop_connection", "truncated_json"]),
    (
        "create",
        _NO_UPSERT + r'[\s\S]*"records":\s*\[\s*\{\s*"fields"',
        ["drop_after", "bad_gateway_after", "server_500", "rate_limit_429", "slow_after"],
    ),
    (
        "upsert",
        r"performUpsert",
        ["drop_after", "bad_gateway_after", "server_500", "rate_limit_429", "slow_after"],
    ),
    (
        "update",
        _NO_UPSERT + r'[\s\S]*"records":\s*\[\s*\{\s*"id"',
        ["drop_after", "bad_gateway_after", "server_500", "rate_limit_429", "slow_after"],
    ),
]
PROCESS_FAULTS = ["none", "none", "kill_kernel", "sigterm_batch", "sigkill_batch_resume", "restart_ns", "race"]
#: The process faults that need a second client (two kernels at once, two clients raced over).
_TWO_CLIENTS = {"kill_kernel", "race"}
#: The client timeouts the bench sets (seconds): a slow answer's delay is drawn past them at times.
APIFY_TIMEOUT_S = 3.0
AIRTABLE_TIMEOUT_S = 3.0


@dataclass
class Plan:
    seed: int
    number: int
    store: str
    clients: int
    leads: int
    actor_s: float
    faults: list[dict[str, Any]]
    process: str
    #: The clients' daily Apify spend cap (USD): small enough that a run ends at its charge cap, or None.
    charge_cap: float | None = None

    def describe(self) -> str:
        return json.dumps(self.__dict__, default=str)


@dataclass
class Outcome:
    plan: Plan
    violations: list[str] = field(default_factory=list)
    faults_hit: int = 0
    exits: list[int] = field(default_factory=list)
    #: What a failing schedule left (events, runs, requests, leads), printed with its violations.
    trace: list[str] = field(default_factory=list)


def make_plan(seed: int, number: int, store: str) -> Plan:
    rng = random.Random(f"{seed}/{number}")
    faults = []
    for _ in range(rng.randint(1, 3)):
        if store == "airtable" and rng.random() < 0.4:
            name, body, modes = rng.choice(AIRTABLE_POINTS)
            mode = rng.choice(modes)
            rule: dict[str, Any] = {"service": "airtable", "mode": mode, "path": AIRTABLE_RECORDS, "body": body}
            # a 429 comes in bursts; other faults once or a few times
            rule["times"] = rng.choice([2, 4, 6]) if mode == "rate_limit_429" else rng.choice([1, 2, 3])
            if mode in ("slow", "slow_after"):
                rule["delay_s"] = rng.choice([1.0, AIRTABLE_TIMEOUT_S + 1.0])
            faults.append(rule)
            continue
        name, path, apify_body, modes = rng.choice(APIFY_POINTS)
        mode = rng.choice(modes)
        rule = {"service": "apify", "mode": mode, "path": path, "times": rng.choice([1, 2, 3, 6])}
        if apify_body:
            rule["body"] = apify_body
        if mode == "slow_after":
            rule["delay_s"] = rng.choice([1.0, APIFY_TIMEOUT_S + 1.0])
        faults.append(rule)
    if rng.random() < 0.3:
        faults.append({"service": "apify", "mode": "skip_targets", "body": r"lead-0[13]/", "times": 1, "path": START})
    process = rng.choice(PROCESS_FAULTS)
    return Plan(
        seed=seed,
        number=number,
        store=store,
        clients=2 if process in _TWO_CLIENTS else rng.randint(1, 2),
        leads=rng.randint(2, 4),
        actor_s=rng.choice([0.3, 1.0, 2.0]),
        faults=faults,
        process=process,
        charge_cap=0.005 if rng.random() < 0.2 else None,
    )


def _tables(specs: Any) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": [f.meta() for f in t.fields]} for t in specs]


class Chaos:
    """One sandbox for every schedule; each schedule gets a fresh workspace, plan, stats and runs."""

    def __init__(self, root: Path, verbose: bool = False) -> None:
        self.root = root
        self.verbose = verbose
        self.sb = Sandbox(rate_limit=0)
        self.sb.start()

    def close(self) -> None:
        self.sb.stop()

    def run(self, plan: Plan) -> Outcome:
        sb = self.sb
        sb.reset()
        sb.apify.clear_runs()
        sb.apify.run_duration_s = plan.actor_s
        canary = f"tokCanary{plan.seed}x{plan.number}{random.Random(plan.number).getrandbits(40):x}"
        sb.state.tokens.add(canary)
        home = self.root / f"s{plan.seed}-{plan.number}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADKIT_", "AIRTABLE_", "APIFY_"))}
        env.update(
            {
                "LEADKIT_HOME": str(home),
                "APIFY_TOKEN": canary,
                "APIFY_API_URL": sb.apify_url,
                "APIFY_TIMEOUT_S": str(APIFY_TIMEOUT_S),
                "AIRTABLE_TIMEOUT_S": str(AIRTABLE_TIMEOUT_S),
                "LEADKIT_STALE_AFTER_S": "20",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            }
        )
        base_ids: list[str] | None = None
        master = ""
        if plan.store == "airtable":
            master = sb.airtable.create_base("Master", _tables(MASTER_TABLES))
            base_ids = [sb.airtable.create_base(f"Client {i}", _tables(CLIENT_TABLES)) for i in range(plan.clients)]
            sb.state.tokens.grant(sb.token, master)
            env.update(
                {
                    "LEADKIT_STORE": f"airtable://{master}",
                    "AIRTABLE_API_KEY": sb.token,
                    "AIRTABLE_ENDPOINT_URL": sb.airtable_url,
                    "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
                }
            )
        settings = get_settings(
            leadkit_home=home,
            leadkit_store=env.get("LEADKIT_STORE", ""),
            **({"airtable_api_key": sb.token, "airtable_endpoint_url": sb.airtable_url} if base_ids else {}),
        )
        ws = Workspace.create(home, settings=settings)
        clients = seed_clients(ws.store, plan.clients, leads_per_client=plan.leads, base_ids=base_ids)
        if plan.charge_cap is not None:  # a run is started with what is left of the cap and ends at it
            clients = [ws.store.save_client(replace(c, max_usd_per_day=plan.charge_cap)) for c in clients]
        ids = ",".join(c.client_id for c in clients)
        out = Outcome(plan)
        with httpx.Client(base_url=sb.apify_url, timeout=10) as control:
            for rule in plan.faults:
                control.post("/__sandbox/faults", json=rule).raise_for_status()
        args = [LEADKIT, "batch", "--workers", "2", "--clients", ids, "--timeout", "40", "--json"]
        try:
            out.exits = self._drive(plan, args, env, home, ws)
            time.sleep(0.2)  # an ABORTING run becomes ABORTED (the sandbox takes 0.1 s)
            sb.clear_faults()
            out.violations = check(sb, ws, canary, home, [master, *base_ids] if base_ids else None)
            if out.violations:
                out.trace = _trace(sb, ws)
        except Exception as exc:  # the bench's own failure is a violation too, named
            out.violations.append(f"bench: {type(exc).__name__}: {exc}")
        finally:
            sb.clear_faults()
            out.faults_hit = sum(1 for r in sb.stats()["requests"] if r.get("fault"))
            ws.close()
        return out

    def _drive(self, plan: Plan, args: list[str], env: dict[str, str], home: Path, ws: Workspace) -> list[int]:
        def run(extra: tuple[str, ...] = (), wrap: list[str] | None = None) -> subprocess.Popen[str]:
            base = args if not extra else [a for a in args if a not in ("--clients", args[args.index("--clients") + 1])]
            return subprocess.Popen(
                [*(wrap or []), *base, *extra],
                env=env,
                cwd=home,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        proc = run()
        exits: list[int] = []
        racer = None
        left: list[psutil.Process] = []
        if plan.process == "race":
            time.sleep(random.Random(plan.number).uniform(0.0, 2.0))
            racer = run()
        elif plan.process != "none":
            left = self._inject(plan.process, proc)
        exits.append(_finish(proc))
        if racer is not None:
            exits.append(_finish(racer))
        if plan.process in ("sigkill_batch_resume", "restart_ns"):
            # the kernels it leaves get SIGTERM (parent death) and abort their runs; once they are gone, the batch
            # is resumed (restart_ns: in a new PID namespace under a new host name, as a restarted container)
            _gone(left)
            # the bench's own reads and writes (nothing else is running now) hit none of the plan's faults, which
            # are left whole for the resumed batch
            with self.sb.faults_paused():
                runs = ws.store.list_runs()
                if runs and plan.process == "restart_ns" and UNSHARE:
                    _outlive_leases(ws)
            if runs and plan.process == "restart_ns" and UNSHARE:
                host = f"chaos-restart-{plan.number}"
                wrap = ["unshare", "-pf", "--mount-proc", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh"]
                exits.append(_finish(run(("--resume", runs[0].run_id), wrap=wrap)))
            elif runs:
                exits.append(_finish(run(("--resume", runs[0].run_id))))
        return exits

    def _inject(self, kind: str, proc: subprocess.Popen[str]) -> list[psutil.Process]:
        """Wait until an actor run is RUNNING (at most 30 s), then apply the process fault; returns the batch's
        processes (kernels) at that moment when the batch was killed, for the caller to wait for them."""
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None:
            if any(r["status"] == "RUNNING" for r in self.sb.apify.runs()):
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            return []
        time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        if kind == "kill_kernel":  # every kernel harvesting at that moment, as the OOM killer might
            for child in children:
                if "ipykernel" in " ".join(child.cmdline()):
                    child.kill()
        elif kind == "sigterm_batch":
            proc.send_signal(signal.SIGTERM)
        elif kind in ("sigkill_batch_resume", "restart_ns"):
            proc.send_signal(signal.SIGKILL)
            return children
        return []


def _unshare_works() -> bool:
    """`unshare -pf --mount-proc -u` runs here (root, or the kernel allows it); else restart_ns resumes in place."""
    try:
        return subprocess.run(["unshare", "-pf", "--mount-proc", "-u", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


UNSHARE = _unshare_works()


def _gone(processes: list[psutil.Process], limit_s: float = 30.0) -> None:
    """Wait (at most `limit_s`) for the processes a killed batch left to end."""
    psutil.wait_procs(processes, timeout=limit_s)


def _outlive_leases(ws: Workspace) -> None:
    """A restarted container comes back under a new host name, where nothing can tell whether the old holder of a
    stream's lease is alive: the lease is taken over only once its heartbeat is older than its TTL. The bench
    does not wait out the TTL: it writes the dead holder's heartbeat back by that much (compare-and-swap)."""
    for lease_name in (f"batch-stream-{n}" for n in range(1, 4)):
        held = ws.store.get_lease(lease_name)
        if held is not None:
            old = replace(held, heartbeat_at=held.heartbeat_at - timedelta(seconds=held.ttl_s + 1))
            ws.store.swap_lease(lease_name, held, old)


#: A batch of a few clients that has not ended after this long is hung (a violation, not a slow machine).
BATCH_LIMIT_S = 420


def _finish(proc: subprocess.Popen[str]) -> int:
    """Wait for a batch; one that outlives BATCH_LIMIT_S is killed with its kernels and raises (a violation)."""
    try:
        proc.communicate(timeout=BATCH_LIMIT_S)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"hang: `{' '.join(map(str, proc.args))}` had not ended after {BATCH_LIMIT_S} s") from None
    return proc.returncode


def check(sb: Sandbox, ws: Workspace, canary: str, home: Path, base_ids: list[str] | None) -> list[str]:
    """The invariants (see the module) against the sandbox's own runs and request log, and the store."""
    bad: list[str] = []
    store = ws.store
    runs = sb.apify.runs()
    requests = sb.stats()["requests"]
    read_ok = {r["path"].split("/")[3] for r in requests if r["path"].endswith("/items") and r["status"] == 200}
    events = [e.message for e in store.list_events()]
    text = "\n".join(events)
    clients = store.list_clients()
    leads = {c.client_id: store.lead_base(c).list_leads() for c in clients}
    pending = "\n".join(lead.last_error or "" for ls in leads.values() for lead in ls if lead.last_error)
    read_runs = [r for r in runs if r["status"] == "SUCCEEDED" and r["defaultDatasetId"] in read_ok]
    for r in runs:
        if r["id"] not in text:
            bad.append(f"runs-named: Apify run {r['id']} ({r['status']}) is named in no ClientRun's events")
        if r["status"] in ("READY", "RUNNING"):
            bad.append(f"runs-settled: Apify run {r['id']} is {r['status']} after the batches exited")
        if r["status"] == "SUCCEEDED" and r not in read_runs and f"{READ_PENDING}: Apify run {r['id']}" not in pending:
            bad.append(f"runs-settled: Apify run {r['id']} SUCCEEDED, was paid, and was neither read nor kept")
    bought: Counter[str] = Counter()
    covered: dict[str, set[str]] = {}
    for r in read_runs:
        targets = sb.apify.run_input(r["id"]).get("targetUrls") or []
        bought.update(normalize_profile_url(u) for u in targets)
        for u in targets:
            covered.setdefault(normalize_profile_url(u), set()).add(r["id"])
    with_items: dict[str, str] = {}
    for r in read_runs:
        for item in _items(sb, r["defaultDatasetId"]):
            url = (item.get("query") or {}).get("targetUrl")
            if url:
                with_items[normalize_profile_url(url)] = r["id"]
    for url, n in bought.items():
        if n > 1:
            bad.append(f"one-paid-run: {url} was bought by {n} SUCCEEDED runs")
    for client_id, ls in leads.items():
        for lead in ls:
            key = normalize_profile_url(lead.profile_url)
            where = f"{client_id} {lead.profile_url}"
            if lead.harvest_status is HarvestStatus.PROCESSING:
                bad.append(f"no-processing: {where} is Processing")
            fresh = lead.harvest_run_id is not None  # touched by this schedule (demo leads start Done without one)
            if fresh and lead.harvest_status in (HarvestStatus.DONE, HarvestStatus.NO_POSTS) and key not in covered:
                bad.append(f"evidence: {where} is {lead.harvest_status} without a read dataset that covered it")
            if key in with_items and lead.harvest_status is not HarvestStatus.DONE:
                if f"{READ_PENDING}: Apify run {with_items[key]}" not in (lead.last_error or ""):
                    bad.append(
                        f"posts-kept: {where} has posts in read run {with_items[key]} but is {lead.harvest_status}"
                    )
    for run in store.list_runs():
        if run.status is RunStatus.RUNNING:
            bad.append(f"records: Run {run.run_id} is Running")
    records = store.list_client_runs()
    for key, n in Counter((r.run_id, r.client_id) for r in records).items():
        if n > 1:
            bad.append(f"records: {n} ClientRuns for {key}")
    for rec in records:
        if rec.status is ClientRunStatus.RUNNING:
            bad.append(f"records: ClientRun {rec.client_run_id} is Running")
        if rec.status in (ClientRunStatus.FAILED, ClientRunStatus.STALE) and rec.status is ClientRunStatus.FAILED:
            if rec.failure is None or not rec.failure.category or not rec.failure.hint:
                bad.append(f"failures: ClientRun {rec.client_run_id} failed without a categorised failure and hint")
    runs_of = store.list_runs()
    for i, one in enumerate(runs_of):
        for other in runs_of[i + 1 :]:
            if one.stream == other.stream and _overlap(_held(one, records), _held(other, records)):
                bad.append(
                    f"one-lease: runs {one.run_id} and {other.run_id} of stream {one.stream} were both running at "
                    "once (two batches held the stream's lease)"
                )
    alerted = {c for alert in store.list_alerts() for c in alert.clients}
    for rec in records:
        if rec.status in (ClientRunStatus.FAILED, ClientRunStatus.STALE) and rec.client_id not in alerted:
            bad.append(f"alerted: ClientRun {rec.client_run_id} is {rec.status} and no alert names its client")
    for path in home.rglob("*"):
        if path.is_file() and canary.encode() in path.read_bytes():
            bad.append(f"secrets: the canary token is in {path.relative_to(home)}")
    for base_id in base_ids or []:
        tables = CLIENT_TABLES if base_id != base_ids[0] else MASTER_TABLES  # type: ignore[index]
        for table in tables:
            if canary in json.dumps(sb.airtable.records(base_id, table.name), default=str):
                bad.append(f"secrets: the canary token is in Airtable table {table.name} of {base_id}")
    return bad


def _trace(sb: Sandbox, ws: Workspace) -> list[str]:
    """The store's events and leads and the sandbox's runs and requests, in order, to read a failing schedule by."""
    lines = [
        f"event {e.at:%H:%M:%S.%f} {e.client_id or '-'} {e.stage} {e.kind} {e.message[:300]}"
        for e in ws.store.list_events()
    ]
    lines += [f"apify-run {r['id']} {r['status']} {r['startedAt']} {r['finishedAt']}" for r in sb.apify.runs()]
    lines += [
        f"request {time.strftime('%H:%M:%S', time.localtime(r['time']))}.{int(r['time'] % 1 * 1000):03d} "
        f"{r['service']} {r['method']} {r['path'][:90]} {r['status']} {r['fault'] or ''}"
        for r in sb.stats()["requests"]
    ]
    for client in ws.store.list_clients():
        for lead in ws.store.lead_base(client).list_leads():
            lines.append(
                f"lead {client.client_id} {lead.profile_url} {lead.harvest_status} {(lead.last_error or '')[:200]}"
            )
    return lines


def _held(run: Any, records: list[Any]) -> tuple[float, float]:
    """When a batch ran `run`, as the store recorded it: from the Run's start to its end (or, not ended, to the last
    start, heartbeat or end of its ClientRuns)."""
    mine = [r for r in records if r.run_id == run.run_id]
    times = [run.started_at, *(r.heartbeat_at for r in mine), *(r.ended_at for r in mine if r.ended_at)]
    end = run.ended_at or max(times)
    return run.started_at.timestamp(), end.timestamp()


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _items(sb: Sandbox, dataset_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{sb.apify_url}/v2/datasets/{dataset_id}/items",
        params={"clean": 1},
        headers={"Authorization": f"Bearer {sb.token}"},
    )
    resp.raise_for_status()
    return [i for i in resp.json() if isinstance(i, dict)]


def run_schedules(
    seed: int, schedules: int, store: str = "both", *, verbose: bool = False, only: list[int] | None = None
) -> dict[str, int]:
    """Run `schedules` schedules from `seed` (or only the numbers in `only`); prints each failing one; returns the
    summary's counts."""
    kinds = {"sqlite": ["sqlite"], "airtable": ["airtable"], "both": ["sqlite", "airtable"]}[store]
    counts = {"schedules": 0, "violations": 0, "sqlite": 0, "airtable": 0, "faults_hit": 0}
    with tempfile.TemporaryDirectory(prefix="leadkit-chaos-") as tmp:
        chaos = Chaos(Path(tmp), verbose)
        try:
            for number in only if only is not None else range(schedules):
                plan = make_plan(seed, number, kinds[number % len(kinds)])
                started = time.monotonic()
                out = chaos.run(plan)
                counts["schedules"] += 1
                counts[plan.store] += 1
                counts["faults_hit"] += out.faults_hit
                counts["violations"] += len(out.violations)
                if out.violations or verbose:
                    print(
                        f"schedule seed={seed} number={number} store={plan.store} exits={out.exits} "
                        f"faults_hit={out.faults_hit} {time.monotonic() - started:.1f}s plan={plan.describe()}",
                        flush=True,
                    )
                    for v in out.violations:
                        print(f"  VIOLATION {v}", flush=True)
                    if verbose:
                        for line in out.trace:
                            print(f"    {line}", flush=True)
        finally:
            chaos.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--schedules", type=int, default=20)
    parser.add_argument("--store", choices=["sqlite", "airtable", "both"], default="both")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--only", type=int, action="append", help="run only this schedule number (repeatable)")
    opts = parser.parse_args(argv)
    if opts.schedules < 1:
        parser.error(f"--schedules is {opts.schedules}; accepted: 1 or more")
    c = run_schedules(opts.seed, opts.schedules, opts.store, verbose=opts.verbose, only=opts.only)
    print(
        f"schedules={c['schedules']} violations={c['violations']} sqlite={c['sqlite']} airtable={c['airtable']} "
        f"faults_hit={c['faults_hit']} seed={opts.seed}"
    )
    return 0 if c["violations"] == 0 else 1


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
