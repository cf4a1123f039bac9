"""`leadkit airtable provision` (and `check`) in a folder that is not a workspace yet writes nothing there, so the
README's next step, `leadkit init --store airtable://<base>` in that folder, works; once it is a workspace, their
requests are counted in its tally like every other Airtable request (as many as the sandbox received)."""

from __future__ import annotations

import json
from pathlib import Path

from leadkit_sandbox.server import Sandbox

from .test_onboarding_leftovers import airtable_env, leadkit, sandbox, tree

__all__ = ["sandbox"]


def test_provision_before_init_leaves_the_folder_empty_and_init_then_works(sandbox: Sandbox, tmp_path: Path) -> None:
    folder = tmp_path / "new-workspace"
    folder.mkdir()
    env = airtable_env(sandbox, folder)
    master = sandbox.airtable.create_base(
        "Master", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    provisioned = leadkit("airtable", "provision", "--base", master, env=env)
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    checked = leadkit("airtable", "check", "--base", master, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tree(folder) == {}, "provision and check wrote into a folder that is not a workspace"

    made = leadkit("init", "--store", f"airtable://{master}", env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "already a leadkit workspace" not in made.stdout and "refusing" not in made.stderr

    tally = folder / "airtable-usage.json"
    counted_before = _requests(tally, master)
    sandbox.state.stats.reset()
    assert leadkit("airtable", "check", "--base", master, env=env).returncode == 0
    sent = sandbox.state.stats.count(base=master)
    assert sent > 0 and _requests(tally, master) == counted_before + sent  # a workspace now: counted there


def _requests(tally: Path, base: str) -> int:
    if not tally.exists():
        return 0
    months = json.loads(tally.read_text())["months"]
    return sum(int(m.get("requests", {}).get(base, 0)) for m in months.values())
