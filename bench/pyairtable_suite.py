"""pyairtable's own integration suite (its repository's `tests/integration`), run against the Airtable sandbox.

The suite of the pyairtable version installed here is fetched into `bench/out/pyairtable-suite/<version>/` (never
into the repository): from its sdist if that carries `tests/integration` (pyairtable's sdists so far do not), else
from the repository's archive of that tag, else from `--source`, a local clone of pyairtable or a copy of its
`tests/integration` folder (the tag named after the version is used when the clone has it, else its HEAD, and the
run says which). A fresh sandbox gets the base, tables and fields the suite's conftest and tests expect (the base,
table and field IDs its conftest names are given to them, in process); pyairtable in the pytest process is pointed at the sandbox
by a plugin (this module, `-p pyairtable_suite`) that makes the sandbox the default `endpoint_url` of `Api`, the
one thing the suite's conftest does not read from the environment.

Skipped, each named with its reason: the enterprise and webhook tests (the sandbox serves neither API) and the
attachment uploads (`upload_attachment`, the content API). Everything else runs. Rate limits are off by default
(`--rate-limit N` turns Airtable's per-base limit on): the suite fires its requests back to back, as it does at
Airtable, and the sandbox's limiter is the documented strict one (a 30 s penalty).

    .venv/bin/python bench/pyairtable_suite.py [--source PATH] [--rate-limit N] [-- PYTEST ARGS]

Not part of `make test`: a clean CI clone reaches only package registries, where the suite is not published.
Last line: `passed=P failed=F skipped=S`; the exit code is pytest's (1 when a test failed).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "out" / "pyairtable-suite"
ARCHIVE_URL = "https://github.com/gtalarico/pyairtable/archive/refs/tags/{version}.tar.gz"
TOKEN = "patPyairtableSuite.0000000000000000000000000000000000000000000000000000000000000000"
ENDPOINT_ENV = "LEADKIT_PYAIRTABLE_SUITE_ENDPOINT"

#: What the suite's conftest hard-codes: the base, its name, the main table and the field IDs it asserts.
BASE_ID = "appaPqizdsNHDvlEm"
BASE_NAME = "Test Wrapper"
TABLE_ID = "tblfbOcVkVnnKxurq"

#: Tests the sandbox cannot serve, by node-id pattern, with the reason printed as the skip.
SKIPS = [
    (re.compile(r"test_integration_enterprise\.py"), "enterprise API: not served by the sandbox"),
    (re.compile(r"test_integration_webhooks\.py"), "webhooks API: not served by the sandbox"),
    (re.compile(r"::test_integration_upload_attachment\b"), "attachment upload (content API): not served"),
    (re.compile(r"::test_attachments_upload\b"), "attachment upload (content API): not served"),
]


ADDRESS_ID, CONTACT_ID, EVERYTHING_ID = "tblAddress0000001", "tblContact0000001", "tblEverything0001"


def _tables() -> list[dict[str, Any]]:
    """The base's tables as the suite uses them, each link after the table it points to (whose twin field,
    named after the linking table, the sandbox adds: Contact gets "Address", Address gets "Everything")."""
    choices = {"choices": [{"name": "Todo"}, {"name": "Done"}]}
    link = "multipleRecordLinks"
    return [
        {
            "id": TABLE_ID,
            "name": "TEST_TABLE",
            "fields": [
                {"id": "fldzbVdWW4xJdZ1em", "name": "text", "type": "singleLineText"},
                {"id": "fldFLyuxGuWobyMV2", "name": "number", "type": "number", "options": {"precision": 8}},
                {"name": "boolean", "type": "checkbox"},
                {"name": "datetime", "type": "dateTime"},
                {"id": "fld5VP9oPeCpvIumr", "name": "attachment", "type": "multipleAttachments"},
            ],
        },
        {
            "id": CONTACT_ID,
            "name": "Contact",
            "fields": [
                {"name": "First Name", "type": "singleLineText"},
                {"name": "Last Name", "type": "singleLineText"},
                {"name": "Email", "type": "email"},
                {"name": "Registered", "type": "checkbox"},
                {"name": "Birthday", "type": "date"},
                {"name": "Last Access", "type": "dateTime"},
            ],
        },
        {
            "id": ADDRESS_ID,
            "name": "Address",
            "fields": [
                {"name": "Street", "type": "singleLineText"},
                _num("Number", 0),
                {"name": "Contact", "type": link, "options": {"linkedTableId": CONTACT_ID}},
            ],
        },
        {"name": "EVERYTHING", "fields": [{"name": "Name", "type": "singleLineText"}]},
        {
            "id": EVERYTHING_ID,
            "name": "Everything",
            "fields": [
                {"name": "Name", "type": "singleLineText"},
                {"name": "Notes", "type": "richText"},
                {"name": "Assignee", "type": "singleCollaborator"},
                {"name": "Watchers", "type": "multipleCollaborators"},
                {"name": "Status", "type": "singleSelect", "options": choices},
                {"name": "Attachments", "type": "multipleAttachments"},
                {"name": "Done", "type": "checkbox"},
                {"name": "Tags", "type": "multipleSelects", "options": choices},
                {"name": "Date", "type": "date"},
                {"name": "DateTime", "type": "dateTime"},
                {"name": "Duration (h:mm)", "type": "duration", "options": {"durationFormat": "h:mm"}},
                {"name": "Duration (h:mm:ss.s)", "type": "duration", "options": {"durationFormat": "h:mm:ss.S"}},
                {"name": "Phone", "type": "phoneNumber"},
                {"name": "Email", "type": "email"},
                {"name": "URL", "type": "url"},
                _num("Integer", 0),
                _num("Decimal 1", 1),
                _num("Decimal 2", 2),
                _num("Number", 3),
                {"name": "Autonumber", "type": "autoNumber"},
                {"name": "Dollars", "type": "currency", "options": {"precision": 2, "symbol": "$"}},
                {"name": "Percent", "type": "percent", "options": {"precision": 0}},
                {"name": "Stars", "type": "rating", "options": {"max": 5}},
                {"name": "Barcode", "type": "barcode"},
                {"name": "Open URL", "type": "button", "options": {"label": "Open", "url": "'https://example.com'"}},
                {"name": "Formula Int", "type": "formula", "options": {"formula": "1 + 2"}},
                {"name": "Formula Float", "type": "formula", "options": {"formula": "1 / 4"}},
                {"name": "Formula Text", "type": "formula", "options": {"formula": "'text'"}},
                {"name": "Formula Error", "type": "formula", "options": {"formula": "ERROR()"}},
                {"name": "Formula NaN", "type": "formula", "options": {"formula": "SQRT(-1)"}},
                {"name": "Created", "type": "createdTime"},
                {"name": "Created By", "type": "createdBy"},
                {"name": "Last Modified", "type": "lastModifiedTime"},
                {"name": "Last Modified By", "type": "lastModifiedBy"},
                {"name": "Address", "type": link, "options": {"linkedTableId": ADDRESS_ID}},
                {
                    "name": "Link to Self",
                    "type": link,
                    "options": {"linkedTableId": EVERYTHING_ID, "prefersSingleRecordLink": True},
                },
                {"name": "Link to Self (Count)", "type": "count", "options": {"recordLinkFieldId": "Link to Self"}},
                {"name": "Count", "type": "count", "options": {"recordLinkFieldId": "Address"}},
                _through("Lookup Int", "multipleLookupValues", "Formula Int"),
                _through("Lookup Error", "multipleLookupValues", "Formula Error"),
                _through("Rollup Int", "rollup", "Formula Int", "SUM(values)"),
                _through("Rollup Error", "rollup", "Formula Int", "ERROR()"),
            ],
        },
    ]


def _num(name: str, precision: int) -> dict[str, Any]:
    return {"name": name, "type": "number", "options": {"precision": precision}}


def _through(name: str, type_: str, field: str, formula: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"recordLinkFieldId": "Link to Self", "fieldIdInLinkedTable": field}
    if formula is not None:
        options["formula"] = formula
    return {"name": name, "type": type_, "options": options}


# ------------------------------------------------------------------------------------------------ the suite


def _extract(tar: tarfile.TarFile, dest: Path) -> bool:
    """Copy `<top>/tests/integration/*` out of an archive into `dest`; False if it has none."""
    members = [m for m in tar.getmembers() if m.isfile() and "/tests/integration/" in f"/{m.name}"]
    if not members:
        return False
    dest.mkdir(parents=True, exist_ok=True)
    for member in members:
        name = member.name.split("/tests/integration/", 1)[-1]
        if "/" in name or not name.endswith((".py", ".txt", ".json")):
            continue
        data = tar.extractfile(member)
        if data is not None:
            (dest / name).write_bytes(data.read())
    return True


def _from_sdist(version: str, dest: Path) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "-d", tmp]
        if subprocess.run([*pip, f"pyairtable=={version}"], capture_output=True).returncode != 0:
            return False
        for sdist in Path(tmp).glob("pyairtable-*.tar.gz"):
            with tarfile.open(sdist) as tar:
                if _extract(tar, dest):
                    return True
    return False


def _from_archive(version: str, dest: Path) -> bool:
    try:
        with urllib.request.urlopen(ARCHIVE_URL.format(version=version), timeout=20) as resp:
            data = resp.read()
    except OSError:
        return False
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return _extract(tar, dest)


def _from_source(source: Path, version: str, dest: Path) -> str:
    """Copy the suite from a local clone (a git directory or work tree) or a copy of `tests/integration`."""
    folder = source / "tests" / "integration"
    if (source / "conftest.py").is_file():
        folder = source
    if folder.is_dir() and not (source / "HEAD").is_file():
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("__pycache__"))
        return f"the folder {folder}"
    git = ["git", f"--git-dir={source / '.git' if (source / '.git').exists() else source}"]
    tags = subprocess.run([*git, "tag", "--list", version], capture_output=True, text=True).stdout.split()
    ref = version if tags else "HEAD"
    blob = subprocess.run([*git, "archive", "--prefix=pyairtable/", ref, "tests/integration"], capture_output=True)
    if blob.returncode != 0:
        raise SystemExit(f"--source {source}: no tests/integration at {ref}: {blob.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(blob.stdout)) as tar:
        _extract(tar, dest)
    commit = subprocess.run([*git, "rev-parse", "--short", ref], capture_output=True, text=True).stdout.strip()
    return f"{source} at {ref} ({commit})" + ("" if tags else f": it has no tag {version}")


def fetch_suite(version: str, source: Path | None) -> tuple[Path, str]:
    """The folder holding the suite for `version`, fetched into the cache if it is not there yet."""
    dest = CACHE / version / "integration"
    origin_file = dest.parent / "ORIGIN"
    if (dest / "conftest.py").is_file() and origin_file.is_file() and source is None:
        return dest, origin_file.read_text().strip() + " (cached)"
    shutil.rmtree(dest, ignore_errors=True)
    if source is not None:
        origin = _from_source(source, version, dest)
    elif _from_sdist(version, dest):
        origin = f"the sdist of pyairtable {version}"
    elif _from_archive(version, dest):
        origin = f"the archive of tag {version}"
    else:
        raise SystemExit(
            f"pyairtable {version}'s tests/integration could not be fetched: its sdist has none and the repository "
            "archive could not be downloaded. Pass --source PATH (a clone of pyairtable)."
        )
    if not (dest / "conftest.py").is_file():
        raise SystemExit(f"no conftest.py in the suite fetched from {origin}")
    origin_file.write_text(origin + "\n")
    return dest, origin


# --------------------------------------------------------------------------------------------- the sandbox


def build_base(sandbox: Any) -> None:
    """Create, in a fresh sandbox and in process, the base the suite expects (with the IDs its conftest names, and
    the field types only Airtable's interface makes: autoNumber, button, count, lookup, rollup)."""
    sandbox.airtable.create_base(BASE_NAME, _tables(), base_id=BASE_ID)


def run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from leadkit_sandbox.server import Sandbox

    version = importlib.metadata.version("pyairtable")
    suite, origin = fetch_suite(version, args.source)
    print(f"pyairtable {version}: tests/integration from {origin}", flush=True)
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sandbox:
        build_base(sandbox)
        sandbox.set_rate_limit(args.rate_limit, 30)  # the set-up above is not the suite's: it is not counted
        env = {
            **os.environ,
            "AIRTABLE_API_KEY": TOKEN,
            ENDPOINT_ENV: sandbox.airtable_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        }
        cmd = [sys.executable, "-m", "pytest", "-p", "pyairtable_suite", "-p", "no:randomly", "-p", "no:cacheprovider"]
        cmd += ["-q", "-rs", "--rootdir", str(suite), "-c", os.devnull, str(suite), *pytest_args]
        lines: list[str] = []
        with subprocess.Popen(
            cmd, env=env, cwd=suite, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # shown as it comes, kept for the counts
                sys.stdout.write(line)
                sys.stdout.flush()
                lines.append(line.strip())
    counts = {k: 0 for k in ("passed", "failed", "skipped", "error", "errors")}
    summary = next((line for line in reversed(lines) if line), "")
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
        counts[word] += int(number)
    failed = counts["failed"] + counts["error"] + counts["errors"]
    print(f"passed={counts['passed']} failed={failed} skipped={counts['skipped']}")
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a local clone of pyairtable (or a copy of tests/integration)")
    parser.add_argument("--rate-limit", type=float, default=0, help="requests/s per base (0: off, the default)")
    args = parser.parse_args(argv)
    if args.source is not None and not args.source.exists():
        print(f"--source {args.source}: no such file or folder", file=sys.stderr)
        return 2
    if args.rate_limit < 0:
        print(f"--rate-limit {args.rate_limit}: must be >= 0", file=sys.stderr)
        return 2
    return run(args, pytest_args)


# ------------------------------------------------------------------------------ the plugin in pytest's process


def pytest_configure(config: Any) -> None:
    """Make the sandbox the default endpoint of every `pyairtable.Api` the suite builds."""
    endpoint = os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return
    from pyairtable.api import api as api_module

    original = api_module.Api.__init__

    @functools.wraps(original)
    def init(self: Any, api_key: str, **kwargs: Any) -> None:
        kwargs.setdefault("endpoint_url", endpoint)
        original(self, api_key, **kwargs)

    api_module.Api.__init__ = init  # type: ignore[method-assign]
    config.addinivalue_line("markers", "integration: pyairtable's integration tests")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import pytest

    for item in items:
        for pattern, reason in SKIPS:
            if pattern.search(item.nodeid):
                item.add_marker(pytest.mark.skip(reason=reason))


if __name__ == "__main__":
    sys.exit(main())
