"""Sandboxed execution of model-written Python (Program-of-Thought and tool-integrated
reasoning): the code nobody has read runs millions of times during RFT sampling and RL
rollouts, so it must not be able to harm the host, and must not be slow.

    >>> from mathlm.sandbox import run_python, run_many, Session
    >>> run_python("from fractions import Fraction\\nprint(Fraction(1, 3) + Fraction(1, 6))").stdout
    '1/2\\n'
    >>> [r.status for r in run_many(["print(1/0)", "while True: pass"], timeout=1.0)]
    ['error', 'timeout']
    >>> with Session() as s:
    ...     s.run("x = 6 * 7"), s.run("print(x)")
    ('', '42')

Design (docs/sandbox.md has the full story and the measured figures):

- A pool of pre-started worker processes (pool.py) with the allowed modules imported (two
  kinds: with sympy/numpy/mpmath for programs that name them, without for the rest, whose
  forks are ~3x cheaper). Each worker forks a zygote (zygote.py) before it sees any job;
  the zygote forks a throwaway child per program, so no program's data reaches the next.
  The child reads its job, enters the sandbox, runs it and reports to the worker, which
  kills it at its deadline; the zygote reaps it. Status and run time come from the exit
  status and the worker's clock, never from what the program wrote.
- Containment in layers. Kernel layers, which no Python trick lifts: separate processes
  (own session, scrubbed environment, no inherited descriptors); new IPC, network, pid and
  mount namespaces once per worker, with a root that holds only the read-only library;
  no capabilities; rlimits; Landlock and a seccomp filter (no process, thread, exec, socket,
  signal to others, file-system change, scheduling change, IPC, inotify) where the kernel
  has them. Python layers, advisory (a program can switch them off): an import allowlist
  and an audit hook (audit_policy.py). Then an output cap and a wall-clock kill.
  ``sandbox_layers()`` says which are active on this machine.
- A ``Session`` holds no process: each ``run`` replays the session's earlier blocks (output
  discarded) in a fresh child before running the new one. Programs are deterministic
  (``random`` and ``numpy.random`` start from seed 0, str hashing is fixed), so a replay
  rebuilds the same variables.
"""
from __future__ import annotations

import atexit
import dataclasses
import math
import os
import reprlib
import threading
from typing import Sequence

from mathlm.sandbox.audit_policy import ALLOWED_MODULES, OPTIONAL_MODULES
from mathlm.sandbox.pool import STATUSES, Job, WorkerPool

__all__ = ["ExecResult", "run_python", "run_many", "Session", "run_sessions", "close_pool",
           "sandbox_layers", "STATUSES", "MAX_CODE_CHARS", "ALLOWED_MODULES", "OPTIONAL_MODULES"]

MAX_CODE_CHARS = 100_000  # a longer program is answered with an error result, not run
MAX_TIMEOUT = 3600.0


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What became of one program.

    ``status`` is one of STATUSES; ``stdout`` what it printed (cut at the output limit; kept
    when the program is stopped by its time limit, a denial or a MemoryError, lost only when
    its process had to be killed from outside); ``error`` the last line of the traceback,
    e.g. ``"ZeroDivisionError: division by zero"`` ("" when ok); ``elapsed`` its run time
    in seconds (wall clock, without the replay of a session's earlier blocks).
    """

    status: str
    stdout: str
    error: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def output_text(self) -> str:
        """The text of the ```output block that follows the program in a solution: what it
        printed, then the error line when it failed, without trailing newlines."""
        text = self.stdout
        if not self.ok:
            text = (text + ("" if not text or text.endswith("\n") else "\n") + self.error)
        return text.rstrip("\n")


# ---------------------------------------------------------------------------- validation

def _check_limits(timeout: float, memory_mb: int, max_output: int, name: str = "timeout") -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout <= MAX_TIMEOUT):
        raise ValueError(f"{name} ({timeout!r}) must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or not 16 <= memory_mb <= 2**20:
        raise ValueError(f"memory_mb ({memory_mb!r}) must be an integer number of MiB in [16, {2**20}]")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
        raise ValueError(f"max_output ({max_output!r}) must be a non-negative integer number of characters")


def _check_code(code: object, where: str = "code") -> None:
    if not isinstance(code, str):
        raise ValueError(f"{where} must be a str of Python source, got {type(code).__name__}: "
                         f"{reprlib.repr(code)}")


def _too_long(code: str) -> ExecResult | None:
    if len(code) <= MAX_CODE_CHARS:
        return None
    return ExecResult("error", "", f"ValueError: the program has {len(code)} characters, over the "
                                   f"limit of {MAX_CODE_CHARS}", 0.0)


def _result(answer: dict) -> ExecResult:
    status = answer.get("status")
    assert status in STATUSES, f"sandbox worker answered status {status!r}, expected one of {STATUSES}"
    return ExecResult(status, str(answer["stdout"]), str(answer["error"]), float(answer["elapsed"]))


# ---------------------------------------------------------------------------- the pool

_pools: dict[bool, WorkerPool] = {}  # scientific or not -> pool
_pools_lock = threading.Lock()


def _get_pool(scientific: bool) -> WorkerPool:
    with _pools_lock:
        pool = _pools.get(scientific)
        if pool is None or pool.pid != os.getpid():
            pool = _pools[scientific] = WorkerPool(scientific)
        return pool


def close_pool() -> None:
    """Stop the worker processes (the next call starts new ones). Runs at interpreter exit."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_pool)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _run_jobs(jobs: list[Job], workers: int | None = None) -> list[ExecResult]:
    """Each kind of job on its own kind of worker, one kind after the other."""
    results: list[ExecResult | None] = [None] * len(jobs)
    for scientific in (False, True):
        indices = [i for i, job in enumerate(jobs) if job.scientific == scientific]
        if indices:
            answers = _get_pool(scientific).run([jobs[i] for i in indices], workers or _default_workers())
            for i, answer in zip(indices, answers):
                results[i] = _result(answer)
    return results  # type: ignore[return-value]


def sandbox_layers() -> dict:
    """Which containment layers the workers enforce on this machine, e.g.
    ``{'process': True, 'rlimits': True, 'landlock': True, 'landlock_abi': 7,
    'seccomp': True, 'audit_hook': True, 'namespaces': ['ipc', 'net', 'pid', 'mount'],
    'private_root': True, 'capabilities_dropped': True}`` (starts a worker if needed)."""
    _run_jobs([Job("", timeout=1.0, memory_mb=64, max_output=0)], workers=1)
    return dict(_get_pool(False).info.get("layers", {}))


# ---------------------------------------------------------------------------- public API

def run_python(code: str, timeout: float = 5.0, memory_mb: int = 512, max_output: int = 65536) -> ExecResult:
    """Run one program in the sandbox and return what became of it.

    ``timeout``: wall-clock seconds; ``memory_mb``: memory the program may allocate on top of
    the worker's own (address space); ``max_output``: characters of stdout kept (more is
    status ``output_limit``). A program that does not compile is an ``error`` result.
    """
    _check_code(code)
    return run_many([code], timeout=timeout, memory_mb=memory_mb, max_output=max_output)[0]


def run_many(codes: Sequence[str], timeout: float = 5.0, workers: int | None = None,
             memory_mb: int = 512, max_output: int = 65536) -> list[ExecResult]:
    """Run many independent programs over the worker pool; results in input order.

    ``workers``: how many run at once (default: the CPUs this process may use).
    """
    if isinstance(codes, str):
        raise ValueError("codes must be a sequence of programs, got a single str")
    codes = list(codes)
    _check_limits(timeout, memory_mb, max_output)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or
                                not 1 <= workers <= 256):
        raise ValueError(f"workers ({workers!r}) must be None or an integer in [1, 256]")
    for i, code in enumerate(codes):
        _check_code(code, f"codes[{i}]")
    results: list[ExecResult | None] = [_too_long(code) for code in codes]
    todo = [i for i, r in enumerate(results) if r is None]
    jobs = [Job(codes[i], float(timeout), memory_mb, max_output) for i in todo]
    for i, result in zip(todo, _run_jobs(jobs, workers)):
        results[i] = result
    return results  # type: ignore[return-value]


class Session:
    """The python blocks of one mixed CoT/PoT solution, run in order with shared variables.

    ``run(code)`` returns the text for the ```output block that follows the block (see
    ``ExecResult.output_text``); ``last_result`` is its ExecResult. Each call may take
    ``timeout`` seconds, all calls together ``total_timeout``; ``memory_mb`` and
    ``max_output`` apply per call.

    A Session holds no process: it keeps the source of its earlier blocks and has them
    replayed, output discarded, before each new block (in a fresh sandboxed child from the
    shared pool). Blocks that ended in ``ok`` or ``error`` are replayed (an error stops its
    block at the same line again); blocks that were killed (timeout, memory, forbidden,
    output_limit) are not, so their partial effects are lost. The replay may take twice the
    blocks' first run time plus 1 s on top of ``timeout``; a call whose replay overruns that
    is a timeout whose time counts against ``total_timeout``. Not thread-safe (one session,
    one thread at a time; different sessions on different threads are fine).
    """

    def __init__(self, timeout: float = 5.0, total_timeout: float = 30.0, memory_mb: int = 512,
                 max_output: int = 65536):
        _check_limits(timeout, memory_mb, max_output)
        _check_limits(total_timeout, memory_mb, max_output, name="total_timeout")
        self.timeout, self.total_timeout = float(timeout), float(total_timeout)
        self.memory_mb, self.max_output = memory_mb, max_output
        self.blocks: list[str] = []  # replayed before each new block
        self.replay_seconds = 0.0  # what those blocks took the first time
        self.used_seconds = 0.0  # counted against total_timeout
        self.last_result: ExecResult | None = None
        self.closed = False
        self._cut_by_budget = False  # the pending call may run for less than ``timeout``

    def run(self, code: str) -> str:
        return run_sessions([self], [code])[0]

    def _job_or_result(self, code: str) -> Job | ExecResult:
        if self.closed:
            raise ValueError("Session.run() on a closed session")
        _check_code(code)
        too_long = _too_long(code)
        if too_long is not None:
            return too_long
        remaining = self.total_timeout - self.used_seconds
        if remaining < 1e-3:
            return ExecResult("timeout", "", f"{self._budget_error} is used up", 0.0)
        self._cut_by_budget = remaining < self.timeout
        return Job(code, min(self.timeout, remaining), self.memory_mb, self.max_output,
                   history=tuple(self.blocks),
                   replay_timeout=2.0 * self.replay_seconds + 1.0 if self.blocks else 0.0)

    @property
    def _budget_error(self) -> str:
        return f"TimeoutError: the session's total time limit of {self.total_timeout:g} s"

    def _record(self, code: str, result: ExecResult) -> str:
        if result.status == "timeout" and self._cut_by_budget:
            result = dataclasses.replace(result, error=f"{self._budget_error} ran out")
        self._cut_by_budget = False
        self.last_result = result
        # held to [0, timeout + grace] by the worker's and the host's clocks; never the program's
        spent = min(max(result.elapsed, 0.0), self.total_timeout) if math.isfinite(result.elapsed) else self.timeout
        self.used_seconds += spent
        if result.status in ("ok", "error"):
            self.blocks.append(code)
            self.replay_seconds += spent
        return result.output_text

    def close(self) -> None:
        self.closed = True
        self.blocks.clear()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Session(blocks={len(self.blocks)}, used={self.used_seconds:.3f}s/"
                f"{self.total_timeout:g}s, closed={self.closed})")


def run_sessions(sessions: Sequence[Session], codes: Sequence[str], workers: int | None = None) -> list[str]:
    """``[s.run(c) for s, c in zip(sessions, codes)]``, but all blocks at once over the pool:
    for a batch of rollouts that reached a python block at the same step."""
    sessions, codes = list(sessions), list(codes)
    if len(sessions) != len(codes):
        raise ValueError(f"got {len(sessions)} sessions and {len(codes)} codes; expected as many of each")
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("a session appears twice; its blocks must run one after the other")
    pending = [s._job_or_result(c) for s, c in zip(sessions, codes)]
    todo = [i for i, p in enumerate(pending) if isinstance(p, Job)]
    done = dict(zip(todo, _run_jobs([pending[i] for i in todo], workers)))
    return [s._record(c, done.get(i, pending[i])) for i, (s, c) in enumerate(zip(sessions, codes))]
