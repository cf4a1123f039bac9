"""The README's "Airtable, from an account to a first batch", followed step by step against `leadkit sandbox
--bases 2` (a real sandbox process on loopback): provision, init --store, clients import with the base column,
leads import, batch; what landed is read back from the sandbox over its HTTP API, not from leadkit."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

LEADKIT = str(Path(sys.executable).parent / "leadkit")
README = Path(__file__).resolve().parents[2] / "README.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SandboxProcess:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc = proc
        self.text = "\n".join(lines)

    def value(self, pattern: str) -> str:
        match = re.search(pattern, self.text, re.M)
        assert match, self.text
        return match.group(1)


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[SandboxProcess]:
    airtable, apify = free_port(), free_port()
    log = tmp_path / "sandbox.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [LEADKIT, "sandbox", "--bases", "2", "--airtable-port", str(airtable), "--apify-port", str(apify)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text()
            if "leadkit init --store" in text or proc.poll() is not None:
                break
            time.sleep(0.1)
        yield SandboxProcess(proc, log.read_text().splitlines())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_readme_airtable_section_end_to_end(sandbox_process: SandboxProcess, tmp_path: Path) -> None:
    section = README.read_text().split("### Airtable, from an account to a first batch", 1)[1].split("\n## ", 1)[0]
    for step in ("airtable provision --base", "--kind client", "init --store airtable://", "client_id,name,base"):
        assert step in section, step  # what this test does is what the README says

    sb = sandbox_process
    master = sb.value(r"Try-out bases:\s+master (app\w+);")
    clients = sb.value(r"Try-out bases:.*clients (.+)$").split(", ")
    token = sb.value(r"^Token: (\S+)$")
    airtable_url = sb.value(r"^Airtable sandbox: (\S+)")
    apify_url = sb.value(r"^Apify sandbox:\s+(\S+)")
    assert len(clients) == 2 and master not in clients
    home = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADKIT_", "AIRTABLE_", "APIFY_"))}
    env.update(
        {
            "LEADKIT_HOME": str(home),
            "AIRTABLE_API_KEY": token,
            "AIRTABLE_ENDPOINT_URL": airtable_url,
            "APIFY_TOKEN": token,
            "APIFY_API_URL": apify_url,
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
    )

    def leadkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([LEADKIT, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        return done

    # the lines `leadkit sandbox --bases` printed are the commands that follow
    assert f"leadkit airtable provision --base {master}" in sb.text
    step = leadkit("airtable", "provision", "--base", master)
    assert step.returncode == 0, step.stderr
    for base in clients:
        assert f"leadkit airtable provision --kind client --base {base}" in sb.text
        step = leadkit("airtable", "provision", "--kind", "client", "--base", base)
        assert step.returncode == 0, step.stderr
    step = leadkit("init", "--store", f"airtable://{master}")
    assert step.returncode == 0, step.stdout + step.stderr
    (tmp_path / "clients.csv").write_text(
        f"client_id,name,base\nVandelay-Industries,Vandelay,{clients[0]}\nPendant-Publishing,Pendant,{clients[1]}\n"
    )
    step = leadkit("clients", "import", str(tmp_path / "clients.csv"))
    assert step.returncode == 0, step.stderr
    (tmp_path / "leads.csv").write_text(
        "client_id,LinkedIn URL,First Name,Last Name,Company\n"
        + "".join(
            f"Vandelay-Industries,https://www.linkedin.com/in/vandelay-lead-{n}/,Art,Lead{n},Latex\n" for n in (1, 2)
        )
        + "".join(
            f"Pendant-Publishing,https://www.linkedin.com/in/pendant-lead-{n}/,Elaine,Lead{n},Pendant\n"
            for n in (1, 2, 3)
        )
    )
    step = leadkit("leads", "import", str(tmp_path / "leads.csv"))
    assert step.returncode == 0, step.stderr
    batch = leadkit("batch", timeout=300)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    runs = leadkit("runs", "--json")
    assert runs.returncode == 0 and '"status": "Completed"' in runs.stdout

    # read back from the sandbox itself: each client's leads are in its own base, harvested
    with httpx.Client(base_url=airtable_url, headers={"Authorization": f"Bearer {token}"}) as http:
        for base, prefix, count in ((clients[0], "vandelay", 2), (clients[1], "pendant", 3)):
            rows = http.get(f"/v0/{base}/Leads").json()["records"]
            urls = [r["fields"].get("LinkedIn Profile URL") or str(r["fields"]) for r in rows]
            assert len(rows) == count and all(prefix in u for u in urls), urls
        master_clients = http.get(f"/v0/{master}/Clients").json()["records"]
        assert len(master_clients) == 2
