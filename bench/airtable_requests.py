"""Requests per client run of a real batch on the Airtable backend, on the harvest path (through the sandbox).

A 30-client batch (`leadkit.batch.run_batch`, papermill kernels included) runs against a sandbox whose master
base and 20 client bases were provisioned by leadkit. Every client is due and has leads waiting: each harvest
submits two batches of leads to the (sandbox) Apify actor and writes the posts back. Every request the sandbox
receives during the batch is counted: to the master base (reads, heartbeats, lease, the Run's own, meta) and to
client bases, divided by the number of client runs, beside the floor: ceil(records / 10) per write (open the
ClientRuns in upserts of 10, insert and finish the Run, save each ClientRun once) and one read of each client's
leads.

    .venv/bin/python bench/airtable_requests.py [--clients 30] [--workers 2] [--actor-run-s 2.5]
        [--progress-save-s S]

A Running ClientRun's progress saves wait for its next save or heartbeat (AIRTABLE_PROGRESS_SAVE_S, default
300 s): a client run shorter than that writes its record twice (open and end), a longer one about once more per
300 s; `--progress-save-s 0` shows what writing each progress save at once costs.

The master figure is a per-client part (the ClientRun's own writes) plus a per-batch part (the lease, the Run,
the client list) shared by the batch's clients; both are printed.

Last line: `master_requests_per_client_run=X`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.models import Client, NewLead
from leadkit.store.airtable import AirtableStore, make_api
from leadkit.store.provision import provision
from leadkit.store.schema import MAX_RECORDS_PER_REQUEST
from leadkit_sandbox.server import Sandbox

LEADS_PER_BATCH = 5
#: Each Apify run lasts this long (a client run of two batches takes a few seconds: its progress saves are held
#: until its end, as in any client run shorter than AIRTABLE_PROGRESS_SAVE_S).
ACTOR_RUN_S = 2.5
BATCHES = 2
EMPTY_TABLE = [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--actor-run-s", type=float, default=ACTOR_RUN_S, help="how long each (sandbox) Apify actor run lasts"
    )
    parser.add_argument(
        "--progress-save-s",
        type=float,
        default=None,
        help="AIRTABLE_PROGRESS_SAVE_S for the batch (default: leadkit's); 0 writes every progress save at once",
    )
    args = parser.parse_args(argv)
    n = args.clients

    from leadkit.batch import run_batch
    from leadkit.workspace import Workspace

    with Sandbox(rate_limit=0) as sandbox, tempfile.TemporaryDirectory(prefix="leadkit-bench-") as home:
        sandbox.apify.run_duration_s = args.actor_run_s
        master = sandbox.airtable.create_base("Master Clients", EMPTY_TABLE)
        settings = Settings(
            leadkit_home=Path(home),
            leadkit_store=f"airtable://{master}",
            airtable_api_key=SecretStr(sandbox.token),
            airtable_endpoint_url=sandbox.airtable_url,
            airtable_rate_limit_wait_s=1.0,
            apify_api_url=sandbox.apify_url,
            apify_token=SecretStr(sandbox.token),
            **({} if args.progress_save_s is None else {"airtable_progress_save_s": args.progress_save_s}),
        )
        api = make_api(settings)
        provision(api, master, "master")
        store = AirtableStore(master, settings, api=api)
        client_bases: set[str] = set()
        for i in range(n):
            base_id = sandbox.airtable.create_base(f"Client {i}", EMPTY_TABLE)
            provision(api, base_id, "client")
            client_bases.add(base_id)
            client = Client(
                client_id=f"Client-{i:02d}",
                name=f"Client {i}",
                service_level=2,
                post_access=True,
                daily_target=1000,
                batch_size=LEADS_PER_BATCH,
                max_batches=BATCHES,
                base_id=base_id,
            )
            store.save_client(client)
            store.lead_base(client).import_leads(
                [
                    NewLead(f"https://www.linkedin.com/in/client{i:02d}-lead{j:02d}/", f"Lead {j}", "Acme-Co")
                    for j in range(LEADS_PER_BATCH * BATCHES)
                ]
            )

        ws = Workspace.open(home, settings=settings)
        sandbox.state.stats.reset()
        started = time.monotonic()
        result = run_batch(ws, workers=args.workers, progress=False)
        seconds = time.monotonic() - started
        requests = sandbox.stats()["requests"]
        ws.close()

    runs = len(result.records)
    if runs != n:
        print(f"expected {n} client runs, the batch made {runs}", file=sys.stderr)
        return 1
    to_master = [r for r in requests if r["base"] == master]
    to_clients = [r for r in requests if r["base"] in client_bases]
    statuses = Counter(r.status.value for r in result.records)
    harvested = sum(int(r.metrics.get("profiles_submitted", 0)) for r in result.records)
    by_kind = Counter(f"{r['method']} {_kind(r['path'])}" for r in to_master)
    master_floor = (math.ceil(runs / MAX_RECORDS_PER_REQUEST) + 2 + runs) / runs
    client_floor = 1.0

    print(
        f"batch {result.run.run_id}: {runs} client runs in {seconds:.1f} s; statuses {dict(statuses)}; "
        f"{harvested} profiles submitted to Apify"
    )
    if harvested < runs * LEADS_PER_BATCH * BATCHES:
        print("the clients did not harvest every lead: this is not the harvest path", file=sys.stderr)
        return 1
    print(f"master base: {len(to_master)} requests: " + ", ".join(f"{k} {v}" for k, v in by_kind.most_common()))
    print(f"client bases: {len(to_clients)} requests")
    own = sum(1 for r in to_master if "Client Run Results" in r["path"])
    print(
        f"master base: {own / runs:.2f} requests per client run for its own record, "
        f"{len(to_master) - own} per batch for the rest (lease, Run, clients)"
    )
    print(f"{'':24}{'per client run':>16}{'floor':>8}")
    print(f"{'master base':24}{len(to_master) / runs:>16.2f}{master_floor:>8.2f}")
    print(f"{'client bases':24}{len(to_clients) / runs:>16.2f}{client_floor:>8.2f}")
    print(f"master_requests_per_client_run={len(to_master) / runs:.2f} floor={master_floor:.2f} goal<=3")
    return 0


def _kind(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if "meta" in parts:
        return "meta"
    return parts[2] if len(parts) > 2 else path


if __name__ == "__main__":
    sys.exit(main())
