"""Kernel processes for a batch: forked from a server that has imported the heavy modules once, or spawned.

A Jupyter kernel that starts from nothing spends most of its start-up importing (the interpreter, IPython,
ipykernel, then leadkit and what the notebook's setup cells import): about 0.5-0.8 s of CPU each. The fork server
is a single-threaded process, started once per batch, that imports those modules and then forks one child per
kernel; the child points its standard streams at the run's kernels.log, takes the kernel's environment and working
folder, and becomes an ordinary ipykernel (`IPKernelApp`) on the connection file the batch wrote. Modules are
shared copy-on-write; nothing else is: a child is a new process with its own interpreter state.

The server forks before any thread exists in it (`fork` refuses when it finds one), reaps its children as they
end (so their CPU time counts in the batch's children's usage), and dies with the batch (``PR_SET_PDEATHSIG``);
every child dies with the server the same way. A child rewrites its command line in place to ``PYTHON -m
ipykernel_launcher -f CONNECTION_FILE ...``, what a spawned kernel shows: whatever looks for the batch's kernels
in the process table (an operator's ``pgrep -f ipykernel``, a test) finds forked ones too, and never the server.
`spawn_kernel` starts a kernel the ordinary way, for comparison and for platforms without fork.

Both the server and spawned kernels are started from one long-lived thread of the batch (`launch`), which never
ends: ``PR_SET_PDEATHSIG`` fires when the *thread* that started a process ends, so a kernel started from a
short-lived thread would be told its parent died while the batch still runs. A batch that is PID 1 (a
container's entrypoint) is a parent like any other: the server and a spawned kernel compare their parent with
the batch's PID, not with 1.

Protocol on the server's stdin/stdout: one JSON object a line each way. ``{"op": "import", "modules": [...]}``
answers ``{"imported": [...], "failed": [...]}``; ``{"op": "fork", "env": {...}, "cwd": ..., "log": ...,
"connection_file": ..., "argv": [...]}`` answers ``{"pid": N}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

#: ipykernel options of every batch kernel: no IPython history database (a one-shot kernel never reads it back,
#: and many kernels writing ~/.ipython's history.sqlite at once contend for it).
KERNEL_ARGS = ("--HistoryManager.enabled=False",)

#: What the server imports before its first fork: ipykernel's application (IPython, zmq, tornado, jupyter_client)
#: and what a kernel imports while it initialises (the debugger's debugpy alone is half of a forked kernel's
#: start-up otherwise; psutil comes with jupyter_client's look-up of local addresses).
BASE_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "psutil",
    "jupyter_client.localinterfaces",
    "pdb",
    "faulthandler",
    "IPython.extensions",
    "IPython.extensions.storemagic",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.utils.wildcard",
    "tornado.platform.asyncio",
)


def prepare_server() -> None:
    """Import `BASE_MODULES` and fill the caches a kernel's start-up fills (local addresses): done once in the
    server, inherited by every fork. Starts no thread."""
    import importlib

    for module in BASE_MODULES:
        importlib.import_module(module)
    from jupyter_client import localinterfaces

    localinterfaces.localhost()
    _freeze()


def _freeze() -> None:
    """Move what is imported so far out of the garbage collector's sight: a forked kernel's collections then do
    not touch (and copy) the server's pages."""
    import gc

    gc.collect()
    gc.freeze()


#: Modules leadkit's client workflow imports lazily while it runs (store, records, eligibility, harvesting):
#: imported once in the server when a notebook's setup imports leadkit, instead of once in every kernel.
LEADKIT_MODULES = (
    "leadkit",
    "leadkit.workflow",
    "leadkit.workspace",
    "leadkit.records",
    "leadkit.history",
    "leadkit.store.sqlite",
    "leadkit.store.airtable",
    "leadkit.harvest.harvester",
    "leadkit.harvest.apify",
    "leadkit.capacity",
    "leadkit.notebook",
    "leadkit.logs",
    "IPython.display",
)

try:
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform == "linux" else None
except OSError:
    _LIBC = None

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when the thread that started it ends; `parent` is the PID it was started
    by (the batch, which may be PID 1): any other parent means that one died before the prctl took effect."""
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


#: Room the server's command line keeps for a child's rewritten one (`_retitle`): a connection file's path and
#: the kernel's options are longer than the server's own arguments.
TITLE_ROOM = 160


def _retitle(words: Sequence[str]) -> None:
    """Linux: overwrite this process's argument area (what /proc/PID/cmdline, ps and psutil show) with `words`,
    within its original length (cut to fit). As setproctitle does: the words joined by spaces and ended by a NUL,
    the area's last byte not NUL, so the kernel shows the text up to that NUL (psutil splits it at the spaces).
    Python keeps its own copy of the arguments."""
    if _LIBC is None:
        return
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of stat(5)
    except (OSError, IndexError, ValueError):
        return
    size = end - start
    if size <= 1:
        return
    data = b" ".join(w.encode() for w in words)[: size - 2] + b"\0"
    ctypes.memmove(start, data.ljust(size - 1, b"\0") + b" ", size)


def can_fork() -> bool:
    """The fork server works here: Linux (fork, and PR_SET_PDEATHSIG for crash safety)."""
    return sys.platform == "linux" and _LIBC is not None


# ------------------------------------------------------------------------------------------------ server side
def _child(request: dict[str, Any], server_pid: int) -> None:
    """In the forked child: become an ipykernel on `request`'s connection file. Never returns."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the kernel's own subprocesses are waited for as usual
        die_with_parent(server_pid)
        argv = ["-f", request["connection_file"], *request.get("argv", [])]
        _retitle([sys.executable, "-m", "ipykernel_launcher", *argv])
        out = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(server_pid)  # as a kernel manager's kernels have it
        sys.argv = ["ipykernel_launcher", *argv]
        if sys.path and sys.path[0] != "":
            sys.path.insert(0, "")  # as `python -m ipykernel_launcher` has it: the working folder first
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve() -> None:
    """The server's loop: answer import and fork requests from stdin until it closes. Its first argument is the
    batch's PID (it dies with the batch)."""
    die_with_parent(int(sys.argv[1]))

    def reap(signum: int, frame: Any) -> None:
        # waited for, not ignored: their CPU time counts in the server's (and so the batch's) children's usage
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap)  # children are reaped as they end: no zombies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the batch, which stops the kernels
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe
    server_pid = os.getpid()
    import importlib

    prepare_server()
    for line in requests:
        request = json.loads(line)
        reply: dict[str, Any]
        if request.get("op") == "import":
            imported, failed = [], []
            for module in request.get("modules", []):
                try:
                    importlib.import_module(module)
                    imported.append(module)
                except Exception as exc:  # the kernel's own import will fail and say so in the notebook
                    failed.append(f"{module}: {type(exc).__name__}: {exc}")
            _freeze()
            reply = {"imported": imported, "failed": failed}
        elif request.get("op") == "fork":
            if threading.active_count() > 1:
                reply = {"error": f"the fork server has {threading.active_count()} threads; cannot fork safely"}
            else:
                replies.flush()
                pid = os.fork()
                if pid == 0:
                    _child(request, server_pid)
                reply = {"pid": pid}
        else:
            reply = {"error": f"unknown request {request.get('op')!r}"}
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()


# ------------------------------------------------------------------------------------------------ batch side
_T = TypeVar("_T")
_LAUNCHES: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
_LAUNCHER_LOCK = threading.Lock()
_LAUNCHER: list[threading.Thread] = []


def _launcher() -> None:
    while True:
        start, answer = _LAUNCHES.get()
        try:
            answer.put((True, start()))
        except BaseException as exc:  # handed back to the caller
            answer.put((False, exc))


def launch(start: Callable[[], _T]) -> _T:
    """Run `start` (a `subprocess.Popen`) in the batch's launcher thread, which lives as long as the process: the
    parent-death signal of what it starts fires when the batch ends, not when a worker thread does."""
    with _LAUNCHER_LOCK:
        if not _LAUNCHER or not _LAUNCHER[0].is_alive():
            _LAUNCHER[:] = [threading.Thread(target=_launcher, name="leadkit-kernel-launcher", daemon=True)]
            _LAUNCHER[0].start()
    answer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    _LAUNCHES.put((start, answer))
    ok, value = answer.get()
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class ForkServer:
    """The batch's handle on its fork server (started from the launcher thread), one request at a time."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._lock = threading.Lock()
        self._imported: set[str] = set()
        batch = os.getpid()

        def start() -> subprocess.Popen[bytes]:
            with open(log_path, "ab") as log:
                return subprocess.Popen(
                    [sys.executable, "-c", _SERVE, str(batch), " " * TITLE_ROOM],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,  # no preexec_fn: Python code between fork and exec of a threaded
                )  # process can deadlock; the server sets PR_SET_PDEATHSIG itself, first thing

        self.proc: subprocess.Popen[bytes] = launch(start)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        with self._lock:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError(f"the kernel fork server ended (exit code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def preload(self, modules: Sequence[str]) -> None:
        """Import `modules` in the server (once each), so that forked kernels find them imported."""
        todo = [m for m in modules if m not in self._imported]
        if todo:
            self._ask({"op": "import", "modules": todo})
            self._imported.update(todo)

    def fork(self, env: dict[str, str], cwd: str, log: Path, connection_file: str) -> int:
        """A kernel process on `connection_file`; its PID."""
        answer = self._ask(
            {
                "op": "fork",
                "env": env,
                "cwd": cwd,
                "log": str(log),
                "connection_file": connection_file,
                "argv": list(KERNEL_ARGS),
            }
        )
        if "pid" not in answer:
            raise ForkRefused(str(answer.get("error", answer)))
        return int(answer["pid"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the server (its children die with it: PR_SET_PDEATHSIG)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkRefused(RuntimeError):
    """The server would not fork (a thread appeared in it): the batch spawns its kernels instead."""


_SERVE = "from leadkit.batch.forkserver import serve; serve()"


def spawn_kernel(env: dict[str, str], cwd: str, log: IO[bytes], connection_file: str) -> subprocess.Popen[bytes]:
    """A kernel started the ordinary way (from the launcher thread), dying with the batch."""
    batch = str(os.getpid())
    return launch(
        lambda: subprocess.Popen(
            [sys.executable, "-c", _SPAWNED, "-f", connection_file, *KERNEL_ARGS],
            env={**env, "JPY_PARENT_PID": batch},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    )


#: A spawned kernel sets PR_SET_PDEATHSIG itself once it runs (no preexec_fn: Python code between fork and exec
#: in the batch, which has a thread per kernel, can deadlock on a lock another thread held at the fork), and ends
#: when its parent is no longer the batch (JPY_PARENT_PID; the batch may be PID 1).
_SPAWNED = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGKILL)\n"
    "    if os.getppid() != int(os.environ['JPY_PARENT_PID']): os._exit(1)\n"
    "sys.argv[0] = 'ipykernel_launcher'\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()\n"
)
