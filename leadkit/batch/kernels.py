"""One client notebook executed on a warm, one-shot kernel of its own; the executed notebook in papermill's format.

A batch keeps a pool of kernels prepared ahead of need (`WarmPool`). Each kernel is forked from the batch's fork
server (`leadkit.batch.forkserver`: ipykernel, leadkit and the modules of the notebook's setup imported once) or,
with ``LEADKIT_KERNEL_START=spawn``, started as its own interpreter; then it runs the notebook's setup cells (the
leading code cells tagged ``setup``: imports, logging) and waits. A client takes a warm kernel, and the injected
parameters and the remaining cells run on it over the kernel's own client (connected and ready once, when it was
warmed: no second ``wait_for_ready``). A kernel serves one client and is then shut down; a replacement is warmed
while the others run (`NotebookJob.warm_ahead` says how many spares the batch still wants). A warm kernel that
died is discarded and replaced, never handed out. Isolation is that of one process per client.

The executed notebook stays the record: papermill parameterizes it (the injected-parameters cell with papermill's
tags and metadata), the setup cells carry the outputs and timings of their run in that same kernel, errors are kept
with papermill's error marker, and it is written once, at the end or on failure, not after every cell.

Each kernel lives in a thread of its own, which owns its asyncio loop and client; `START_GATE` lets one kernel per
core boot at once. The executed notebook carries the installed kernelspec of the kernel that ran it, so opening it
in the Lab changes nothing.

Crash safety: the fork server (started from one long-lived thread, see `leadkit.batch.forkserver`) dies with the
batch and every kernel with the server (``PR_SET_PDEATHSIG``; a batch that is PID 1 is a parent like any other).
A forked kernel shows as ``python -m ipykernel_launcher -f FILE`` in the process table, as a spawned one does.
Stopped (`stop_batch`: a signal), the batch hands out no kernel any more and stops the live ones, warm ones
included: SIGTERM (a harvesting kernel aborts its actor run and puts its leads back), then SIGKILL; a notebook
whose kernel was stopped is saved with the cells that ran.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import functools
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadkit.batch.forkserver import (
    LEADKIT_MODULES,
    ForkRefused,
    ForkServer,
    can_fork,
    spawn_kernel,
)
from leadkit.config import scrub

KERNEL_NAME = "python3"
KERNELS_LOG = "kernels.log"
#: The tag of a notebook's setup cells: they run when a kernel is warmed, before its client's parameters.
SETUP_TAG = "setup"
#: "fork" (from the fork server; the default on Linux) or "spawn" (a new interpreter per kernel).
START_ENV = "LEADKIT_KERNEL_START"
#: Warm kernels a batch keeps ready beyond those running, while clients remain: one per core (a warm-up is CPU).
WARM_SPARES = os.cpu_count() or 2
#: Boots of a kernel for one notebook that may fail in a row before a client is given the failure.
BOOT_ATTEMPTS = 3


@dataclass(frozen=True)
class NotebookJob:
    client_id: str
    input_path: str
    output_path: str
    parameters: dict[str, Any]
    env: dict[str, str]
    cwd: str
    timeout_s: float
    start_timeout_s: float
    #: Warm kernels the batch wants ready for the clients after this one (0: none; the last clients, dask).
    warm_ahead: int = 0
    return_notebook: bool = False


@dataclass
class NotebookResult:
    client_id: str
    ok: bool
    seconds: float
    kind: str = ""  # "", "exception", "dead_kernel", "timeout", "error", "stopped" (never started: batch stopped)
    message: str = ""
    cell: int | None = None
    notebook_json: str | None = None  # the executed notebook, when it must travel back (dask)
    status: str | None = None  # the ClientRun status the notebook published (see leadkit.notebook)


#: Kernels booting at once, one per core: a boot is mostly CPU, and the notebooks already running need the cores
#: too. Measured with bench/harvest_scale.py on an idle 2-core machine (48 clients, concurrency 32): with 4 per
#: core the first actor run started 12.3 s into the batch and the batch took 1.50 x the ideal; with 1 per core
#: 7.0 s and 1.28 x (the first kernels are ready sooner and reach Apify while the others boot).
STARTS_PER_CORE = 1
START_GATE = threading.BoundedSemaphore(STARTS_PER_CORE * (os.cpu_count() or 2))

#: How long an interrupted batch gives its kernels to abort their actor runs and put their leads back after
#: SIGTERM, before SIGKILL (an abort is one Apify request and one store write).
STOP_GRACE_S = 15.0


# ------------------------------------------------------------------------------------------ kernel processes
class KernelProcess:
    """A kernel process (forked by the server or spawned): its PID and how to stop it. On Linux it is held by a
    pidfd: signals reach this process and no other (never a later one with its PID), and its end is waited for
    without polling; elsewhere psutil stands in."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.popen = popen
        self._fd: int | None = None
        self._ps: Any = None
        try:
            self._fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            import psutil

            try:
                self._ps = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self._fd is not None:
            return not select.select([self._fd], [], [], 0)[0]  # readable once the process has ended
        import psutil

        try:
            return self._ps is not None and self._ps.is_running() and self._ps.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def signal(self, signum: int) -> None:
        if not self.alive():
            return
        try:
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, signum)
            elif self._ps is not None:
                self._ps.send_signal(signum)
        except Exception:  # gone meanwhile
            pass

    def wait(self, timeout: float) -> None:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=max(0.0, timeout))
            except subprocess.TimeoutExpired:
                pass
            return
        if self._fd is not None:
            select.select([self._fd], [], [], max(0.0, timeout))
            return
        deadline = time.monotonic() + max(0.0, timeout)
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL and wait until it has ended (a kernel whose client is done: nothing of it is kept)."""
        self.signal(signal.SIGKILL)
        self.wait(5.0)

    def close(self) -> None:
        """Let go of the pidfd (the process has been stopped)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_LIVE: set[KernelProcess] = set()  # every kernel process started and not yet stopped
_LIVE_LOCK = threading.Lock()
#: Set while a batch is stopping (`stop_batch`): no kernel is handed out any more; cleared when the next batch starts.
_STOPPING = threading.Event()
#: Why a notebook never ran: the batch was stopped before its kernel was ready.
NOT_STARTED = "the batch was stopped before this notebook started"


def batch_starting() -> None:
    """A batch starts: notebooks may start again (after an earlier batch of this process was stopped)."""
    _STOPPING.clear()


def stop_batch(grace_s: float = STOP_GRACE_S) -> None:
    """The batch is stopping (a signal): no kernel is handed out from now on (clients waiting for one are told
    `NOT_STARTED`), and the live kernels are stopped (`kill_all`), warm ones included."""
    _STOPPING.set()
    POOL.wake()
    kill_all(grace_s)


def kill_all(grace_s: float = STOP_GRACE_S) -> None:
    """Stop every live kernel of this process, warm ones included (an interrupted batch): SIGTERM first, so a
    kernel that is harvesting aborts its actor run and releases its leads (see
    `leadkit.harvest.harvester.terminate_on_sigterm`), then SIGKILL for any still alive after `grace_s`."""
    with _LIVE_LOCK:
        processes = list(_LIVE)
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace_s)
    for process in processes:
        process.wait(max(0.0, deadline - time.monotonic()))
        if process.alive():
            process.signal(signal.SIGKILL)


def stop_leftovers() -> None:
    """Once every notebook has run: stop the warm kernels nobody took and the fork server."""
    POOL.close()
    kill_all(grace_s=2.0)


_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def _zmq_context() -> Any:
    """One zmq context for every kernel client of the batch (thread-safe; each client's sockets stay in its
    kernel's thread): no context and I/O thread made and torn down per kernel."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            import zmq.asyncio

            _CONTEXT = zmq.asyncio.Context()
        return _CONTEXT


def _kernel_client_class() -> Any:
    from jupyter_client.asynchronous.client import AsyncKernelClient

    class ProcessKernelClient(AsyncKernelClient):  # type: ignore[misc]
        """A kernel client that knows its kernel's process (no kernel manager): nbclient asks it whether the
        kernel is alive while a cell runs."""

        process: KernelProcess | None = None

        async def is_alive(self) -> bool:  # type: ignore[override]
            return self.process is not None and self.process.alive()

    return ProcessKernelClient


# ---------------------------------------------------------------------------------------------- notebooks
@dataclass
class PreparedNotebook:
    """A notebook as a warm kernel needs it: the parsed notebook and how many of its leading cells are setup."""

    path: str
    nb: Any  # as papermill loads it
    setup_cells: int  # the leading cells (markdown between them included) up to the last setup code cell
    modules: list[str] = field(default_factory=list)  # what the fork server imports before forking kernels

    @classmethod
    def load(cls, path: str) -> PreparedNotebook:
        from papermill.iorw import load_notebook_node

        nb = load_notebook_node(path)
        prefix = 0
        sources: list[str] = []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if SETUP_TAG not in cell.metadata.get("tags", []):
                break
            prefix = index + 1
            sources.append(cell.source)
        return cls(path, nb, prefix, _imported_modules(sources))


def _imported_modules(sources: list[str]) -> list[str]:
    """The top-level modules the setup cells import (plus leadkit's lazily imported ones when they import
    leadkit); lines of IPython syntax (magics, shell escapes) are left out."""
    names: list[str] = []
    for source in sources:
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
    if any(n == "leadkit" or n.startswith("leadkit.") for n in names):
        names += LEADKIT_MODULES
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------- warm kernels
_Key = tuple[str, str, tuple[tuple[str, str], ...], float]


def _key(job: NotebookJob) -> _Key:
    return job.input_path, job.cwd, tuple(sorted(job.env.items())), job.start_timeout_s


class WarmKernel:
    """One kernel, from its boot to its one client's end, in a thread of its own (which owns the kernel's
    asyncio loop and client). `ready` is set once it is warm (or failed: `error`)."""

    def __init__(self, pool: WarmPool, key: _Key, job: NotebookJob, notebook: PreparedNotebook) -> None:
        self.pool = pool
        self.key = key
        self.notebook = notebook
        self.env = {**_inherited_env(), **job.env}
        self.cwd = job.cwd
        self.start_timeout_s = job.start_timeout_s
        self.process: KernelProcess | None = None
        self.error: str | None = None  # the kernel could not be warmed (it never ran client code)
        self.setup_failed_at: int | None = None  # a setup cell raised: the client's record shows it
        self.ready = threading.Event()
        self.client: Any = None
        self.setup_nb: Any = None
        self.language_info: dict[str, Any] | None = None
        self._inbox: queue.Queue[NotebookJob | None] = queue.Queue(maxsize=1)
        self._outbox: queue.Queue[NotebookResult] = queue.Queue(maxsize=1)
        self._connection_file = ""
        self.thread = threading.Thread(target=self._life, name="leadkit-kernel", daemon=True)
        self.thread.start()

    # -------------------------------------------------------------- the kernel's thread
    def _life(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._boot())
            except BaseException as exc:
                self.error = scrub(f"{type(exc).__name__}: {exc}") or type(exc).__name__
            self.ready.set()
            self.pool._warmed(self)
            job = self._inbox.get()
            if job is not None:
                try:
                    result = self._run(job)
                except BaseException as exc:  # a bug here: recorded, never lost
                    result = NotebookResult(job.client_id, False, 0.0, "error", scrub(f"{type(exc).__name__}: {exc}"))
                # The kernel has ended before its client is settled: one whose cell timed out (nbclient's own
                # timeout leaves it running) could otherwise still start or read an actor run after the batch
                # aborted its runs and released its leads.
                if self.process is not None:
                    self.process.stop()
                self._outbox.put(result)
        finally:
            self._shutdown(loop)
            loop.close()

    async def _boot(self) -> None:
        from jupyter_client.connect import write_connection_file
        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NotebookExecutionManager

        self._connection_file, _ = write_connection_file(
            str(Path(self.pool.connection_dir()) / f"kernel-{uuid.uuid4().hex}.json"),
            ip="127.0.0.1",
            key=uuid.uuid4().hex.encode(),
        )
        with START_GATE:
            self.process = self.pool.start_process(self.env, self.cwd, self._connection_file, self.notebook)
            with _LIVE_LOCK:
                _LIVE.add(self.process)
            kc = _kernel_client_class()(connection_file=self._connection_file, context=_zmq_context())
            kc.load_connection_file()
            kc.process = self.process
            kc.allow_stdin = False
            kc.start_channels(hb=False)  # whether the kernel lives is asked of its process
            self.client_channels = kc
            await kc.wait_for_ready(timeout=self.start_timeout_s)
        nb = copy.deepcopy(self.notebook.nb)
        nb_man = NotebookExecutionManager(nb, output_path=None, progress_bar=False)
        nb_man.notebook_start()
        client = PapermillNotebookClient(
            nb_man,
            timeout=self.start_timeout_s,
            kernel_name=KERNEL_NAME,
            log=logging.getLogger("papermill"),
            shutdown_kernel="immediate",
        )
        client.kc = kc
        client.reset_execution_trackers()
        self.client, self.setup_nb = client, nb
        for index in range(self.notebook.setup_cells):
            if await self._run_cell(client, nb_man, index) is False:
                self.setup_failed_at = index
                break
        reply = await client.async_wait_for_reply(kc.kernel_info())
        self.language_info = (reply or {}).get("content", {}).get("language_info")

    @staticmethod
    async def _run_cell(client: Any, nb_man: Any, index: int) -> bool:
        """Run one code cell as papermill does (metadata, timings); False when it raised."""
        from nbclient.exceptions import CellExecutionError

        cell = nb_man.nb.cells[index]
        if cell.cell_type != "code":
            return True
        nb_man.cell_start(cell, index)
        try:
            await client.async_execute_cell(cell, index)
        except CellExecutionError as exc:
            nb_man.cell_exception(cell, cell_index=index, exception=exc)
            return False
        finally:
            nb_man.cell_complete(cell, cell_index=index)
        return True

    def _run(self, job: NotebookJob) -> NotebookResult:
        import papermill
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        started = time.monotonic()
        if self.error is not None:
            return NotebookResult(
                job.client_id,
                False,
                0.0,
                "dead_kernel",
                f"no kernel could be warmed for the notebook ({BOOT_ATTEMPTS} attempts): {self.error}",
            )
        timed_out = threading.Event()
        process = self.process

        def kill_on_timeout() -> None:
            timed_out.set()
            if process is not None:
                process.signal(signal.SIGKILL)

        watchdog = threading.Timer(job.timeout_s, kill_on_timeout)
        watchdog.daemon = True
        watchdog.start()

        def failed(kind: str, message: str, cell: int | None = None) -> NotebookResult:
            return NotebookResult(job.client_id, False, time.monotonic() - started, kind, scrub(message), cell)

        try:
            executed = self._papermill(job, {**job.parameters, "deadline_at": time.time() + job.timeout_s})
            return NotebookResult(job.client_id, True, time.monotonic() - started, status=published_status(executed))
        except papermill.PapermillExecutionError as exc:
            return failed("exception", f"cell {exc.cell_index} raised {exc.ename}: {exc.evalue}", exc.cell_index)
        except (DeadKernelError, CellTimeoutError, TimeoutError, RuntimeError) as exc:
            if timed_out.is_set() or isinstance(exc, CellTimeoutError):
                return failed("timeout", f"the notebook ran past its timeout of {job.timeout_s:g} s")
            if isinstance(exc, DeadKernelError) or "dead" in str(exc).lower():
                return failed("dead_kernel", f"the kernel died while running the notebook: {exc}")
            return failed("error", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # papermill/nbclient errors of other kinds: recorded, never lost
            return failed("error", f"{type(exc).__name__}: {exc}")
        finally:
            watchdog.cancel()

    def _papermill(self, job: NotebookJob, parameters: dict[str, Any]) -> Any:
        """papermill's `execute_notebook`, step by step, on the notebook parsed once per batch (not read and
        validated again per client): parameters injected, papermill's metadata, run by the warm engine, errors
        marked, written once. `deadline_at` in `parameters`: the kernel's time budget ends where the watchdog's
        does (wall clock: the kernel is another process)."""
        from papermill.engines import papermill_engines
        from papermill.execute import prepare_notebook_metadata, raise_for_execution_errors, remove_error_markers
        from papermill.parameterize import parameterize_notebook

        nb = parameterize_notebook(
            copy.deepcopy(self.notebook.nb), parameters, kernel_name=KERNEL_NAME, language="python", engine_name=ENGINE
        )
        nb = remove_error_markers(prepare_notebook_metadata(nb, job.input_path, job.output_path))
        spec = kernelspec_metadata(KERNEL_NAME)
        if spec is not None:
            nb.metadata["kernelspec"] = dict(spec)
        nb = papermill_engines.execute_notebook_with_engine(
            ENGINE,
            nb,
            input_path=job.input_path,
            output_path=None,  # not saved after every cell
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            warm=self,
            record_path=job.output_path,
            execution_timeout=job.timeout_s,
        )
        raise_for_execution_errors(nb, job.output_path)  # writes the notebook with papermill's error marker
        write_record(nb, job.output_path)
        return nb

    def execute_rest(self, nb_man: Any, execution_timeout: float | None, record_path: str | None) -> None:
        """In the kernel's thread, from papermill's engine: carry the setup cells' run into the client's notebook,
        then run the injected parameters and the remaining cells; on an error that ends the run, write the
        notebook as it stands before raising."""
        loop = asyncio.get_event_loop()
        try:
            loop.run_until_complete(self._execute_rest(nb_man, execution_timeout))
        except BaseException:
            if record_path:
                nb_man.notebook_complete()
                write_record(nb_man.nb, record_path)
            raise

    async def _execute_rest(self, nb_man: Any, execution_timeout: float | None) -> None:
        client = self.client
        client.nb = nb_man.nb
        client.nb_man = nb_man
        client.timeout = execution_timeout
        cells = nb_man.nb.cells
        carried = 0  # setup cells of the warm run matched, in order, to the record's cells
        todo: list[int] = []
        for index, cell in enumerate(cells):
            injected = "injected-parameters" in cell.metadata.get("tags", [])
            if not injected and carried < self.notebook.setup_cells:
                warm = self.setup_nb.cells[carried]
                carried += 1
                if cell.cell_type == "code":
                    cell.outputs = warm.outputs
                    cell.execution_count = warm.execution_count
                    cell.metadata.papermill = warm.metadata.papermill
                    if "execution" in warm.metadata:
                        cell.metadata["execution"] = warm.metadata["execution"]
                    if warm.metadata.papermill.get("exception"):
                        nb_man.nb.metadata.papermill["exception"] = True
                continue
            todo.append(index)
        if self.setup_failed_at is None:
            for index in todo:
                if await self._run_cell(client, nb_man, index) is False:
                    break
        if self.language_info:
            nb_man.nb.metadata["language_info"] = self.language_info

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        kc = getattr(self, "client_channels", None)
        if kc is not None:
            try:
                kc.stop_channels()
            except Exception:  # the channels of a dead kernel
                pass
        if self.process is not None:
            self.process.stop()
            with _LIVE_LOCK:
                _LIVE.discard(self.process)
            self.process.close()
        if self._connection_file:
            Path(self._connection_file).unlink(missing_ok=True)

    # -------------------------------------------------------------- the pool's and the client's side
    def alive(self) -> bool:
        return self.error is None and self.process is not None and self.process.alive()

    def run(self, job: NotebookJob) -> NotebookResult:
        """Hand `job` to this kernel (once) and wait for its result."""
        self._inbox.put(job)
        return self._outbox.get()

    def discard(self) -> None:
        """Shut this kernel down without a client (the thread ends once it is warm)."""
        try:
            self._inbox.put_nowait(None)
        except queue.Full:
            pass


@functools.lru_cache(maxsize=8)
def kernelspec_metadata(kernel_name: str) -> dict[str, str] | None:
    """The notebook's `kernelspec` metadata for the kernel that runs it, as JupyterLab writes it (name, the
    installed spec's display name and language); None when the spec cannot be read. An executed notebook whose
    kernelspec differs from the installed one (a notebook saying "Python 3" where ipykernel installs "Python 3
    (ipykernel)") is marked modified by the Lab as soon as its kernel connects. Read once per process."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except (NoSuchKernel, OSError, ValueError):  # no readable spec of that name: the notebook keeps its own
        return None
    return {"display_name": str(spec.display_name), "language": str(spec.language), "name": kernel_name}


def write_record(nb: Any, path: str) -> None:
    """Write the executed notebook as papermill does (nbformat's JSON of the notebook's own version), without
    nbformat's schema validation of the whole notebook on every write (an eighth of the batch's own CPU per client):
    its cells are papermill's, nbclient's and nbformat's own constructions."""
    from nbformat import v4

    Path(path).write_text(v4.nbjson.writes(nb), encoding="utf-8")


def _inherited_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEADKIT_ALERT_URLS"}  # channel secrets stay out


class WarmPool:
    """Warm kernels, keyed by notebook, working folder, environment and start timeout; one per client."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[_Key, list[WarmKernel]] = {}
        self._booting: dict[_Key, int] = {}
        self._waiting: dict[_Key, int] = {}
        self._failures: dict[_Key, int] = {}
        self._notebooks: dict[str, PreparedNotebook] = {}
        self._server: ForkServer | None = None
        self._server_lock = threading.Lock()
        self._connection_dir: str | None = None
        self._fork_refused = False  # the server would not fork (a thread appeared in it): spawned kernels instead
        #: Counts kept for tests and benches: kernels warmed, handed out, and found dead while warm.
        self.warmed = 0
        self.handed_out = 0
        self.dead_while_warm = 0

    # ---------------------------------------------------------------- kernels
    def connection_dir(self) -> str:
        with self._server_lock:
            if self._connection_dir is None:
                self._connection_dir = tempfile.mkdtemp(prefix="leadkit-kernels-")  # private (0700)
            return self._connection_dir

    def start_process(
        self, env: dict[str, str], cwd: str, connection_file: str, notebook: PreparedNotebook
    ) -> KernelProcess:
        """A kernel process on `connection_file`: forked from the fork server, or spawned."""
        log = Path(cwd) / KERNELS_LOG
        if os.environ.get(START_ENV, "fork") != "spawn" and can_fork() and not self._fork_refused:
            with self._server_lock:
                if self._server is None or not self._server.alive():
                    self._server = ForkServer(_inherited_env(), log)
                server = self._server
            server.preload(notebook.modules)
            try:
                return KernelProcess(server.fork(env, cwd, log, connection_file))
            except ForkRefused as exc:
                self._fork_refused = True
                logging.getLogger("leadkit.batch").warning("kernels are spawned for the rest of the batch: %s", exc)
        with open(log, "ab") as out:  # the kernels' own output (warnings, a crash's last words)
            popen = spawn_kernel(env, cwd, out, connection_file)
        return KernelProcess(popen.pid, popen)

    def _notebook(self, path: str) -> PreparedNotebook:
        with self._server_lock:
            if path not in self._notebooks:
                self._notebooks[path] = PreparedNotebook.load(path)
            return self._notebooks[path]

    def _boot(self, key: _Key, job: NotebookJob) -> None:
        """Start warming one more kernel for `key` (the caller holds the condition)."""
        self._booting[key] = self._booting.get(key, 0) + 1
        WarmKernel(self, key, job, self._notebook(job.input_path))

    def _warmed(self, kernel: WarmKernel) -> None:
        with self._cond:
            self._booting[kernel.key] -= 1
            if _STOPPING.is_set():  # warmed after the batch was stopped: nobody will take it
                kernel.discard()
            elif kernel.error is None:
                self.warmed += 1
                self._failures[kernel.key] = 0
                self._ready.setdefault(kernel.key, []).append(kernel)
            else:
                self._failures[kernel.key] = self._failures.get(kernel.key, 0) + 1
                if self._failures[kernel.key] >= BOOT_ATTEMPTS:
                    self._ready.setdefault(kernel.key, []).append(kernel)  # its client is told why
                else:
                    kernel.discard()
            self._cond.notify_all()

    def take(self, job: NotebookJob) -> WarmKernel | None:
        """A warm kernel for `job` (waiting for one to be warmed when none is ready), never one that died
        while warm; then more are warmed until `job.warm_ahead` spares are ready or on their way. None once the
        batch is stopping (`stop_batch`)."""
        key = _key(job)
        with self._cond:
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                while True:
                    if _STOPPING.is_set():
                        return None
                    ready = self._ready.get(key, [])
                    while ready:
                        kernel = ready.pop(0)
                        if kernel.error is not None:
                            self._failures[key] = 0
                            return kernel
                        if kernel.alive():
                            self.handed_out += 1
                            return kernel
                        self.dead_while_warm += 1
                        kernel.discard()
                    if self._booting.get(key, 0) < self._waiting[key]:
                        self._boot(key, job)
                    self._cond.wait()
            finally:
                self._waiting[key] -= 1
                spares = len(self._ready.get(key, [])) + self._booting.get(key, 0) - self._waiting[key]
                for _ in range(0 if _STOPPING.is_set() else job.warm_ahead - spares):
                    self._boot(key, job)

    def wake(self) -> None:
        """Wake the clients waiting for a kernel (the batch is stopping: they are handed none)."""
        with self._cond:
            self._cond.notify_all()

    def warm(self, job: NotebookJob, count: int) -> None:
        """Start warming `count` kernels for jobs like `job` ahead of any client."""
        with self._cond:
            for _ in range(count):
                self._boot(_key(job), job)

    def ready_kernels(self, job: NotebookJob) -> list[WarmKernel]:
        """The kernels warm and waiting for jobs like `job` (for tests)."""
        with self._cond:
            return list(self._ready.get(_key(job), []))

    def close(self) -> None:
        """Discard every warm kernel (waiting for those still booting) and stop the fork server."""
        with self._cond:
            while any(self._booting.values()):
                self._cond.wait(timeout=1.0)
            kernels = [k for ready in self._ready.values() for k in ready]
            self._ready.clear()
            self._failures.clear()
            self._notebooks.clear()
            self._fork_refused = False
        for kernel in kernels:
            kernel.discard()
        for kernel in kernels:
            kernel.thread.join(timeout=10)
        with self._server_lock:
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._connection_dir is not None:
                shutil.rmtree(self._connection_dir, ignore_errors=True)
                self._connection_dir = None


POOL = WarmPool()
ENGINE = "leadkit-warm"


def _register_engine() -> None:
    """A papermill engine that runs a notebook on a warm kernel (papermill passes `warm` through): papermill still
    parameterizes the notebook, keeps its metadata and errors and writes the record."""
    from papermill.engines import Engine, papermill_engines

    if ENGINE in papermill_engines._engines:
        return

    class WarmKernelEngine(Engine):
        @classmethod
        def execute_managed_notebook(  # type: ignore[override]
            cls,
            nb_man: Any,
            kernel_name: str,
            warm: WarmKernel | None = None,
            execution_timeout: float | None = None,
            record_path: str | None = None,
            **kwargs: Any,
        ) -> Any:
            assert warm is not None, "the leadkit-warm engine runs only on a warm kernel"
            warm.execute_rest(nb_man, execution_timeout, record_path)
            return nb_man.nb

    papermill_engines.register(ENGINE, WarmKernelEngine)


def published_status(notebook: Any) -> str | None:
    """The ClientRun status a notebook published with `leadkit.notebook.publish_result`, if any."""
    from leadkit.notebook import RESULT_MIMETYPE

    for cell in reversed(notebook.get("cells", [])):
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get(RESULT_MIMETYPE)
            if isinstance(data, dict) and isinstance(data.get("status"), str):
                return str(data["status"])
    return None


def execute_notebook(job: NotebookJob) -> NotebookResult:
    """Run one client notebook on a warm kernel of its own (taken from `POOL`, shut down afterwards), with a
    whole-notebook timeout."""
    _register_engine()
    started = time.monotonic()
    kernel = POOL.take(job) if not _STOPPING.is_set() else None
    if kernel is None:
        return NotebookResult(job.client_id, False, time.monotonic() - started, "stopped", NOT_STARTED)
    if _STOPPING.is_set():  # stopped while this kernel was handed out: `stop_batch` may have missed its client
        kernel.discard()
        return NotebookResult(job.client_id, False, time.monotonic() - started, "stopped", NOT_STARTED)
    result = kernel.run(job)
    result.seconds = time.monotonic() - started
    if job.return_notebook and Path(job.output_path).exists():
        result.notebook_json = Path(job.output_path).read_text(encoding="utf-8")
    return result


def execute_notebook_remote(job: NotebookJob) -> NotebookResult:
    """On a dask worker: run into a temporary folder and send the executed notebook back to the coordinator.
    Secrets are not in the job: the worker's kernels read them from the worker's own environment."""
    with tempfile.TemporaryDirectory(prefix="leadkit-dask-") as tmp:
        local = Path(tmp) / Path(job.output_path).name
        remote_job = NotebookJob(
            client_id=job.client_id,
            input_path=job.input_path,
            output_path=str(local),
            parameters=job.parameters,
            env=job.env,
            cwd=tmp,
            timeout_s=job.timeout_s,
            start_timeout_s=job.start_timeout_s,
            warm_ahead=0,
            return_notebook=True,
        )
        return execute_notebook(remote_job)
