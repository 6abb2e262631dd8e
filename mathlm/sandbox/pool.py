"""Host side of the sandbox: a pool of pre-started worker processes, reused across calls.

Each worker (worker.py) is a separate Python started with a scrubbed environment, in a
session and a private base directory of its own; it has the allowed modules imported and
forks one throwaway child per program. The host only ever exchanges JSON with workers
(length-prefixed frames on their stdin/stdout): it never compiles, unpickles or evaluates
anything a program produced.

There are two kinds of workers, in two pools: with the scientific modules (sympy, numpy,
mpmath) imported, and without. Forking a worker that holds them costs about three times as
much, and most PoT programs use only the standard library; a job goes to the scientific
kind when its text names one of those modules.

Dispatch is a select() loop in the calling thread over the workers it has leased from the
pool. A worker that dies mid-job is replaced and the job retried once on a fresh worker
(a program cannot kill its worker, so a death is the machine's doing, not the program's);
a worker that stays silent past the job's deadline plus ``HOST_GRACE`` is killed with its
whole process group and replaced, and the job reported as a timeout. Other jobs never
notice. Several threads may run jobs at once: each leases its own workers.
"""
from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mathlm.sandbox.audit_policy import OPTIONAL_MODULES
from mathlm.sandbox.protocol import FrameReader, encode_frame

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
STARTUP_TIMEOUT = 120.0  # importing sympy on a busy machine
HOST_GRACE = 5.0  # the worker kills an overrunning program itself after 0.5 s
LAYERS = ("audit_hook", "seccomp", "landlock", "rlimits", "namespaces")  # what a test may switch off
MAX_ANSWER_BYTES = 64 * 2**20
MAX_ERROR_CHARS = 2000
STATUSES = ("ok", "error", "timeout", "memory", "forbidden", "output_limit")


_reported_missing: set[str] = set()  # what this process has already said is unavailable
KERNEL_LAYERS = ("landlock", "seccomp", "capabilities_dropped", "private_root")
NAMESPACES = ("ipc", "net", "pid", "mount")


def report_missing_layers(layers: dict) -> None:
    """Say once per process which kernel layers this machine does not give the sandbox (the
    others stay on: the sandbox falls back to them)."""
    missing = [name for name in KERNEL_LAYERS if not layers.get(name)]
    missing += [f"{name} namespace" for name in NAMESPACES if name not in layers.get("namespaces", ())]
    new = [name for name in missing if name not in _reported_missing]
    if new:
        _reported_missing.update(new)
        warnings.warn(f"mathlm.sandbox: this machine does not allow {', '.join(new)}; programs run "
                      f"with the other layers only (see docs/sandbox.md)", RuntimeWarning, stacklevel=3)


def sandbox_environment(home: str) -> dict[str, str]:
    """The whole environment of a worker: nothing of the host's (no tokens, no proxies)."""
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # same str hashes (set order) in every worker: replays agree
        "PYTHONIOENCODING": "utf-8", "PYTHONNOUSERSITE": "1",
        # single-threaded numerics: a worker forks, and a program may start no thread
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
    }


def scratch_root() -> str | None:
    """Where the private directories go: a memory file system when there is one (creating
    and removing a directory per program costs milliseconds on some disks), else the
    default temporary directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def worker_sys_path() -> list[str]:
    """The host's import path without the current directory, so workers see the same
    installed packages (sympy, numpy) as the host."""
    return [p for p in sys.path if p and os.path.isabs(p) and os.path.exists(p)]


@dataclass(frozen=True)
class Job:
    """One program for a worker. ``history`` holds a session's earlier blocks, replayed
    (output discarded) within ``replay_timeout`` before ``code`` runs within ``timeout``."""

    code: str
    timeout: float
    memory_mb: int
    max_output: int
    history: tuple[str, ...] = ()
    replay_timeout: float = 0.0
    disable: tuple[str, ...] = ()  # layers switched off: for the tests of each layer only

    def __post_init__(self):
        unknown = sorted(set(self.disable) - set(LAYERS))
        if unknown:
            raise ValueError(f"unknown sandbox layers {unknown}; expected some of {list(LAYERS)}")

    def frame(self) -> bytes:
        return encode_frame(json.dumps({
            "code": self.code, "history": list(self.history), "timeout": self.timeout,
            "replay_timeout": self.replay_timeout, "memory_mb": self.memory_mb,
            "max_output": self.max_output, "disable": list(self.disable)}).encode())

    @property
    def scientific(self) -> bool:
        """Whether the program needs a worker with sympy/numpy/mpmath loaded. Decided on the
        text: a program that imports them without naming them finds them refused."""
        return any(name in text for text in (self.code, *self.history) for name in OPTIONAL_MODULES)

    @property
    def host_deadline(self) -> float:
        return self.timeout + self.replay_timeout + HOST_GRACE


def answer(status: str, error: str, elapsed: float = 0.0, stdout: str = "") -> dict:
    return {"status": status, "stdout": stdout, "error": error, "elapsed": elapsed}


def _valid_text(value: object, limit: int) -> str:
    """A str the tokenizer can take: cut to ``limit``, no lone surrogates (replaced)."""
    text = value if isinstance(value, str) else ""
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def held_to_job(received: dict, job: Job, measured: float) -> dict:
    """The worker's answer as the host keeps it: whatever it says, a known status, text cut to
    the job's limits and valid UTF-8, and a finite run time within [0, measured] (what this
    process saw between sending the job and reading the answer)."""
    status = received.get("status")
    if status not in STATUSES:
        return answer("error", f"SystemError: the sandbox worker answered status {str(status)[:40]!r}",
                      elapsed=measured)
    elapsed = received.get("elapsed")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not (
            math.isfinite(elapsed) and 0.0 <= elapsed <= measured):
        elapsed = measured
    return answer(status, _valid_text(received.get("error"), MAX_ERROR_CHARS), float(elapsed),
                  _valid_text(received.get("stdout"), job.max_output))


class WorkerProcess:
    """One worker: its process, its pipes, its private base directory."""

    def __init__(self, scientific: bool):
        self.base_dir = tempfile.mkdtemp(prefix="mathlm-sandbox-", dir=scratch_root())
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-B", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=self.base_dir, env=sandbox_environment(self.base_dir),
            start_new_session=True, close_fds=True)
        self.reader = FrameReader(max_frame=MAX_ANSWER_BYTES)
        self.info: dict = {}
        self.send_frame(encode_frame(json.dumps({"sys_path": worker_sys_path(),
                                                 "scientific": scientific}).encode()))

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send_frame(self, data: bytes) -> bool:
        """False when the worker is gone."""
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def read_answers(self) -> list[dict] | None:
        """The complete answers that arrived (maybe none yet); None when the worker is gone."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            return None
        frames = self.reader.feed(chunk)
        if self.reader.overflow:
            return None
        return [json.loads(frame) for frame in frames]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready = select.select([self], [], [], max(remaining, 0))[0]
            answers = self.read_answers() if ready else None
            if answers:
                self.info = answers[0]
                break
            if answers is None:
                detail = self.proc.stderr.read().decode(errors="replace")[-4000:] if ready else ""
                self.kill()
                why = "exited" if ready else f"was not ready after {timeout:g} s"
                raise RuntimeError(f"sandbox worker {why} while starting: {detail or '(no output)'}")
        self.proc.stderr.close()
        if not self.info.get("ready"):
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start:\n{self.info.get('error', '')}")

    def kill(self) -> None:
        """Kill the worker and anything still in its process group; remove its directory."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._release_files()

    def close(self) -> None:
        """Polite stop (end of input), then kill."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def _release_files(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.base_dir, ignore_errors=True)


class WorkerPool:
    """Workers shared by every call in this process (see the module docstring)."""

    def __init__(self, scientific: bool):
        self.scientific = scientific  # the kind of worker: with sympy/numpy/mpmath or without
        self.pid = os.getpid()  # a forked host must not talk to its parent's workers
        self._cond = threading.Condition()
        self._idle: list[WorkerProcess] = []
        self._size = 0  # idle + leased
        self._closed = False
        self.info: dict = {}  # what the first worker reported: allowed modules, layers

    # ------------------------------------------------------------------ leasing
    def _lease(self, wanted: int, limit: int) -> list[WorkerProcess]:
        """Up to ``wanted`` workers (at least one), starting new ones while the pool has fewer
        than ``limit``; waits while others hold them all."""
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the sandbox pool is closed")
                taken, self._idle = self._idle[:wanted], self._idle[wanted:]
                to_start = max(0, min(wanted - len(taken), limit - self._size))
                self._size += to_start
                if taken or to_start:
                    break
                self._cond.wait()
        started: list[WorkerProcess] = []
        try:
            for _ in range(to_start):
                started.append(WorkerProcess(self.scientific))
            for worker in started:  # they import in parallel; wait for each in turn
                worker.wait_ready()
        except BaseException:
            for worker in started:
                worker.kill()
            self._release(taken, dead=to_start)
            raise
        if started:
            self.info = started[0].info
            report_missing_layers(self.info.get("layers", {}))
        return taken + started

    def _release(self, workers: list[WorkerProcess], dead: int = 0) -> None:
        with self._cond:
            self._size -= dead
            if self._closed:
                for worker in workers:
                    worker.close()
                self._size -= len(workers)
            else:
                self._idle.extend(workers)
            self._cond.notify_all()

    def _replace(self, worker: WorkerProcess) -> WorkerProcess | None:
        worker.kill()
        try:
            fresh = WorkerProcess(self.scientific)
            fresh.wait_ready()
            return fresh
        except RuntimeError:
            with self._cond:
                self._size -= 1
                self._cond.notify_all()
            return None

    # ------------------------------------------------------------------ running
    def run(self, jobs: list[Job], workers: int) -> list[dict]:
        """Answers (status, stdout, error, elapsed) for ``jobs``, in order, on at most
        ``workers`` workers at once."""
        if not jobs:
            return []
        leased = self._lease(min(workers, len(jobs)), workers)
        idle, busy = list(leased), {}
        try:
            results = self._dispatch(jobs, idle, busy)
        finally:
            for worker in busy:  # interrupted mid-job: its late answer must never be misread
                worker.kill()
            self._release(idle, dead=len(busy))
        return results

    def _dispatch(self, jobs: list[Job], idle: list[WorkerProcess], busy: dict) -> list[dict]:
        results: list[dict | None] = [None] * len(jobs)
        queue, deaths = deque(range(len(jobs))), [0] * len(jobs)

        def lost(worker: WorkerProcess, index: int) -> None:
            """The worker died under job ``index``: replace it, retry the job once."""
            deaths[index] += 1
            if deaths[index] < 2:
                queue.appendleft(index)
            else:
                results[index] = answer("error", "SystemError: the sandbox worker died twice "
                                                 "while running this program")
            fresh = self._replace(worker)
            if fresh is not None:
                idle.append(fresh)

        while queue or busy:
            while idle and queue:
                worker, index = idle.pop(), queue.popleft()
                if worker.send_frame(jobs[index].frame()):
                    sent = time.monotonic()
                    busy[worker] = (index, sent + jobs[index].host_deadline, sent)
                else:
                    lost(worker, index)
            if not busy:
                if queue and not idle:
                    raise RuntimeError("no sandbox worker could be started")
                continue
            wait = min(deadline for _, deadline, _ in busy.values()) - time.monotonic()
            for worker in select.select(list(busy), [], [], max(wait, 0.0))[0]:
                answers = worker.read_answers()
                if answers == []:
                    continue  # part of a large answer
                index, _, sent = busy.pop(worker)
                if answers is None:
                    lost(worker, index)
                else:
                    results[index] = held_to_job(answers[0], jobs[index], time.monotonic() - sent)
                    idle.append(worker)
            now = time.monotonic()
            for worker, (index, deadline, _) in list(busy.items()):
                if now >= deadline:  # the worker itself should have answered long ago
                    del busy[worker]
                    job = jobs[index]
                    results[index] = answer("timeout", f"TimeoutError: time limit of {job.timeout:g} s "
                                                       f"exceeded", elapsed=job.timeout)
                    fresh = self._replace(worker)
                    if fresh is not None:
                        idle.append(fresh)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        with self._cond:
            if os.getpid() != self.pid:  # inherited by fork: the workers are the parent's
                self._idle.clear()
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()
