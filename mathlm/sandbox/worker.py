"""The sandbox worker: a pre-started Python that forks one throwaway child per program.

pool.py starts it as ``python -s -B worker.py`` with a scrubbed environment, in a session of
its own, inside a private base directory. Its life:

1. it reads its configuration from the host (sys.path; with or without the scientific
   modules sympy, numpy, mpmath, which make every fork ~3x dearer), imports the allowed
   modules and warms them up (a few typical computations, so that lazy imports and caches
   are done once here rather than in every program), finds out which kernel layers work on
   this machine (a probe child tries each), snapshots the shared state that programs could
   poison (the allowed modules in sys.modules, builtins), and freezes its heap
   (``gc.freeze``: forked children then share its pages instead of copying them);
2. it starts two zygotes (zygote.py) before any job reaches it: one in new namespaces, for
   every program, and a plain one for the tests that switch the namespaces off. A zygote
   never holds a program's data, so every child starts from the same clean memory;
3. for every job it makes a job pipe and a result pipe and has a zygote fork a child with
   their ends. The child reads its job, enters the sandbox - stdio to /dev/null and every
   other descriptor closed, a private directory as working directory, rlimits, Landlock,
   seccomp, the import guard and the audit hook - runs the program and reports on the
   pipe; the worker watches its own clock, kills the child (by pidfd) when it overruns,
   and judges the result from the wait status the zygote sends once it reaped the child.

The worker never runs untrusted code and trusts nothing a child wrote: a result frame only
adds text to the status the exit code says, and the run time is the worker's own clock.
Whatever a program does to modules, builtins, threads or signal handlers dies with its
process. Standard library only (numpy and sympy are optional).
"""
from __future__ import annotations

import builtins
import gc
import importlib
import io
import math
import os
import select
import shutil
import signal
import sys
import time
import traceback

# This file runs as a script: its folder is sys.path[0], its neighbours import by name.
import audit_policy
import kernel_guards
import protocol
import zygote

# Exit codes of a child; statuses that the child cannot fake by writing a result frame.
EXIT_REPORTED, EXIT_FORBIDDEN, EXIT_MEMORY, EXIT_TIMEOUT, EXIT_OUTPUT, EXIT_SETUP = 0, 77, 78, 79, 80, 81
EXIT_STATUS = {EXIT_FORBIDDEN: "forbidden", EXIT_MEMORY: "memory", EXIT_TIMEOUT: "timeout",
               EXIT_OUTPUT: "output_limit"}
HARD_KILL_GRACE = 0.5  # seconds between the child's own timer and SIGKILL from the worker
KILL_REAP_TIMEOUT = 5.0  # a zygote that has not reaped a killed child by then is broken
MAX_ERROR_CHARS = 2000
RANDOM_SEED = 0  # every program starts from the same random state: results reproduce


def timeout_error(seconds: float) -> str:
    return f"TimeoutError: time limit of {round(seconds, 3):g} s exceeded"


def replay_timeout_error(seconds: float) -> str:
    return f"TimeoutError: replaying the session's earlier blocks took over {round(seconds, 3):g} s"


def memory_error(memory_mb: int) -> str:
    return f"MemoryError: memory limit of {memory_mb} MiB exceeded"


def output_error(max_output: int) -> str:
    return f"OutputLimitError: output exceeds the limit of {max_output} characters"


def last_line(exc: BaseException) -> str:
    """'ZeroDivisionError: division by zero': the last line of the traceback, no frames."""
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.lineno:
        line += f" (line {exc.lineno})"
    return line


# ---------------------------------------------------------------------------- the child side

class CappedOutput(io.TextIOBase):
    """sys.stdout of a program: keeps at most ``limit`` characters, then calls ``overflow``
    (which ends the process, so the program cannot catch it and keep flooding)."""

    def __init__(self, limit: int, overflow=None):
        self.parts: list[str] = []
        self.size, self.limit, self.overflow = 0, limit, overflow

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.overflow is None:
            return len(text)
        room = self.limit - self.size
        if len(text) > room:
            self.parts.append(text[:room])
            self.size = self.limit
            self.overflow()
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def shared_state_snapshot(module_names: list[str], watched: list) -> tuple:
    """Identities of some sys.modules entries and of every attribute of the watched modules.

    Deliberately small: every value the check reads in a child is a copy-on-write page
    fault, and the full state (sys.modules, sympy, numpy) would cost milliseconds per
    program. What it covers is what a program poisons to mislead the next one in an
    exec()-based pool: the allowed modules and builtins."""
    modules = tuple((name, id(sys.modules[name])) for name in module_names)
    attributes = tuple((m.__name__, vars(m), tuple((k, id(v)) for k, v in vars(m).items()))
                       for m in watched)
    return sys.modules, modules, attributes


def tampering(snapshot: tuple) -> str | None:
    """What the program changed in state that the worker shares, or None."""
    live_modules, modules, attributes = snapshot
    missing = object()
    for name, ident in modules:
        if id(live_modules.get(name, missing)) != ident:
            return f"replacing sys.modules[{name!r}]"
    for module_name, namespace, items in attributes:
        for key, ident in items:
            if id(namespace.get(key, missing)) != ident:
                return f"changing {module_name}.{key}"
    return None


def run_program(job: dict, result_fd: int, cwd: str, read_roots: list[str],
                allowed: frozenset[str], snapshot: tuple, disabled: frozenset[str]):
    """Runs in the child, after the kernel layers are in place. Never returns."""
    # Everything the exit paths use is bound here: the program can reach and patch modules.
    os_write, exit_, setitimer, clock = os.write, os._exit, signal.setitimer, time.perf_counter
    encode, repr_ = protocol.encode_result, repr
    timeout, max_output = job["timeout"], job["max_output"]
    out = CappedOutput(max_output)
    started = [clock()]

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os_write(result_fd, view):]

    def finish(status: str, error: str, code: int):
        try:
            setitimer(signal.ITIMER_REAL, 0)
            send(encode(status, error[:MAX_ERROR_CHARS], out.getvalue(), clock() - started[0]))
        finally:
            exit_(code)

    def deny(what: str, target=None):
        message = "PermissionError: the sandbox forbids " + what
        try:
            if target is not None:  # may be the program's object: its repr runs its code
                message += " " + repr_(target)[:300]
        except BaseException:
            pass
        finish("forbidden", message, EXIT_FORBIDDEN)

    out.overflow = lambda: finish("output_limit", output_error(max_output), EXIT_OUTPUT)
    discard = CappedOutput(0)  # swallows output: replayed blocks, stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(""), discard, discard
    sys.argv = [""]

    program_builtins = dict(vars(builtins))
    program_builtins["__import__"] = audit_policy.make_import_guard(allowed, builtins.__import__, deny)
    program_builtins["breakpoint"] = lambda *args, **kwargs: deny("breakpoint()")
    namespace = {"__name__": "__main__", "__builtins__": program_builtins}

    if "audit_hook" not in disabled:
        sys.addaudithook(audit_policy.make_audit_hook(read_roots, cwd, deny))

    history = job.get("history") or []
    if history:
        replay_timeout = job["replay_timeout"]
        signal.signal(signal.SIGALRM, lambda *_: finish(
            "timeout", replay_timeout_error(replay_timeout), EXIT_TIMEOUT))
        setitimer(signal.ITIMER_REAL, replay_timeout)
        for block in history:  # earlier blocks of a session, output discarded
            try:
                exec(compile(block, audit_policy.PROGRAM_FILENAME, "exec"), namespace)
            except BaseException:  # they failed the same way the first time
                pass
        send(protocol.encode_frame(protocol.REPLAY_DONE))

    sys.stdout = out
    signal.signal(signal.SIGALRM, lambda *_: finish("timeout", timeout_error(timeout), EXIT_TIMEOUT))
    started[0] = clock()
    setitimer(signal.ITIMER_REAL, timeout)
    status, error = "ok", ""
    try:
        exec(compile(job["code"], audit_policy.PROGRAM_FILENAME, "exec"), namespace)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "error", f"SystemExit: {exc.code}"
    except MemoryError:
        status = "memory"
    except BaseException as exc:
        status, error = "error", last_line(exc)
    if status == "memory":
        namespace.clear()  # free the program's data so that the report fits
        finish("memory", memory_error(job["memory_mb"]), EXIT_MEMORY)
    changed = tampering(snapshot)
    if changed is not None:
        deny(changed)
    finish(status, error, EXIT_REPORTED)


# ---------------------------------------------------------------------------- the worker side

def _warm_up(allowed: set[str]) -> None:
    """Typical computations, run once so that lazy imports and caches are done before fork."""
    from fractions import Fraction
    import decimal, re, statistics, itertools  # noqa: E401

    sum(Fraction(1, k) for k in range(1, 10))
    decimal.Decimal(1) / decimal.Decimal(7)
    statistics.mean([1, 2, 3]), statistics.median([1, 2]), statistics.stdev([1, 2, 3])
    re.findall(r"\d+", "a1b22"), list(itertools.permutations(range(3)))
    last_line(ZeroDivisionError("x")), last_line(SyntaxError("x", ("f", 1, 1, "x")))
    if "sympy" in allowed:
        import sympy as sp

        x, y = sp.symbols("x y")
        sp.solve([x + y - 3, x - y - 1], [x, y]), sp.solve(x**2 - 2, x)
        sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2), sp.factor(x**2 - 1), sp.expand((x + 1) ** 3)
        sp.integrate(x**2, (x, 0, 1)), sp.diff(sp.sin(x), x), sp.limit(sp.sin(x) / x, x, 0)
        sp.factorint(360), sp.isprime(97), sp.binomial(10, 3), sp.Matrix([[1, 2], [3, 4]]).det()
        sp.N(sp.pi, 20), sp.nsimplify(0.5), sp.sqrt(8), sp.Rational(1, 3), sp.summation(x, (x, 1, 5))
        str(sp.sympify("x**2 + 1")), sp.latex(x**2)
    if "numpy" in allowed:
        import numpy as np

        a = np.array([[2.0, 1.0], [1.0, 3.0]])
        np.linalg.det(a), np.linalg.solve(a, np.ones(2)), np.linalg.inv(a), np.linalg.eigvals(a)
        np.arange(10).sum(), np.round(np.sqrt(np.arange(4)), 3), str(a)


class Worker:
    def __init__(self, config: dict):
        sys.path[:] = config["sys_path"]
        self.base_dir = os.getcwd()
        loaded = set()
        optional = audit_policy.OPTIONAL_MODULES if config["scientific"] else ()
        for name in audit_policy.ALLOWED_MODULES + optional:
            try:
                importlib.import_module(name)
            except ImportError:
                if name not in audit_policy.OPTIONAL_MODULES:
                    raise
            else:
                loaded.add(name)
        _warm_up(loaded)
        self.allowed = frozenset(loaded)
        self.read_roots = audit_policy.library_roots(sys.modules)
        # Entries a program cannot read (the host's script folder...) would only get its lazy
        # imports refused while the import system lists them.
        sys.path[:] = [p for p in sys.path if any(
            (os.path.realpath(p) + "/").startswith(root + "/") for root in self.read_roots)]
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.landlock_abi = kernel_guards.landlock_abi()
        self.landlock = self.seccomp = None
        if self.landlock_abi:
            self.landlock = kernel_guards.LandlockRuleset(self.read_roots, self.landlock_abi)
        if kernel_guards.seccomp_supported():
            self.seccomp = kernel_guards.SeccompFilter(kernel_guards.seccomp_filter_x86_64())
        self.layers = self._probe_layers()
        if "numpy" in loaded:  # children inherit this state (numpy does not reseed at fork)
            sys.modules["numpy"].random.seed(RANDOM_SEED)
        self.snapshot = shared_state_snapshot(sorted(loaded) + ["builtins"], [builtins])
        self.zygotes = self._start_zygotes()

    def _start_zygotes(self) -> dict:
        """Both zygotes now, before any job reaches this process: the namespaced one for
        every program, the plain one for the tests that switch the namespaces off."""
        gc.collect()
        gc.freeze()  # the zygotes and their children share the worker's pages
        keep = [self.devnull] + ([self.landlock.fd] if self.landlock else [])
        zygotes = {with_namespaces: zygote.Zygote(self._start_child, keep, with_namespaces,
                                                  self.base_dir, self.read_roots)
                   for with_namespaces in (True, False)}
        self.layers.update(zygotes[True].layers)
        return zygotes

    def _probe_layers(self) -> dict:
        """Which kernel layers this machine enforces: a child tries to install each one."""
        layers = {"process": True, "rlimits": True, "audit_hook": True}
        for name in ("landlock", "seccomp"):
            guard = getattr(self, name)
            if guard is None:
                layers[name] = False
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    guard.restrict_self() if name == "landlock" else guard.install()
                    os._exit(0)
                finally:
                    os._exit(1)
            layers[name] = os.waitpid(pid, 0)[1] == 0
            if not layers[name]:
                setattr(self, name, None)
        layers["landlock_abi"] = self.landlock_abi if layers["landlock"] else 0
        return layers

    def describe(self) -> dict:
        return {"ready": True, "pid": os.getpid(), "allowed": sorted(self.allowed),
                "layers": self.layers, "read_roots": self.read_roots}

    def _address_space_in_use(self) -> int:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")

    def _start_child(self, job_fd: int, result_fd: int, workdir: str, address_space: int):
        """In the child, forked by a zygote: read the job, enter the sandbox. Never returns."""
        try:
            job = protocol.receive_job(job_fd)
            os.close(job_fd)
        except BaseException:
            os._exit(EXIT_SETUP)
        if job is None:
            os._exit(EXIT_SETUP)
        self._enter_sandbox(job, result_fd, workdir, frozenset(job.get("disable", ())), address_space)

    def _enter_sandbox(self, job: dict, result_fd: int, workdir: str, disabled: frozenset, address_space: int):
        """In the child: everything before the program. Never returns."""
        try:
            for fd in (0, 1, 2):
                os.dup2(self.devnull, fd)
            keep = sorted({result_fd} | ({self.landlock.fd} if self.landlock else set()))
            for low, high in zip([3] + [fd + 1 for fd in keep], keep + [1 << 20]):
                os.closerange(low, high)
            os.chdir(workdir)
            kernel_guards.die_with_parent(signal.SIGKILL)
            sys.modules["random"].seed(RANDOM_SEED)  # random reseeds itself at fork
            if "rlimits" not in disabled:
                cpu = math.ceil(job["timeout"] + job["replay_timeout"]) + 1
                kernel_guards.apply_rlimits(address_space + job["memory_mb"] * 2**20, cpu)
            if self.landlock:
                if "landlock" not in disabled:
                    self.landlock.restrict_self()
                os.close(self.landlock.fd)
            if "seccomp" not in disabled and self.seccomp:
                self.seccomp.install()
        except BaseException:
            os._exit(EXIT_SETUP)
        try:
            run_program(job, result_fd, workdir, self.read_roots, self.allowed, self.snapshot, disabled)
        finally:
            os._exit(EXIT_SETUP)

    def run(self, job: dict) -> dict:
        """Spawn (through a zygote), feed, watch: the answer for one job."""
        with_namespaces = "namespaces" not in job.get("disable", ())
        zygote_ = self.zygotes[with_namespaces]
        job_r, job_w = os.pipe()
        read_fd, result_fd = os.pipe()
        started = time.monotonic()
        try:
            child = zygote_.spawn(job_r, result_fd, filtered=self.seccomp is not None and
                                  "seccomp" not in job.get("disable", ()))
        finally:
            os.close(job_r)
            os.close(result_fd)
        try:
            try:
                protocol.send_job(job_w, job)  # the child reads it at once, before anything else
            except BrokenPipeError:  # it died setting up: its wait status says so
                pass
            os.close(job_w)
            watch = self._watch(zygote_, child, read_fd, started, job)
        finally:
            os.close(read_fd)
            child.close()
        return self._classify(job, *watch)

    def _watch(self, zygote_, child, read_fd: int, started: float, job: dict):
        """Read the child's frames until the zygote reports it reaped, killing it at its
        deadline or when it floods the pipe. The run time is this process's clock."""
        timeout, grace = job["timeout"], HARD_KILL_GRACE
        state = {"replaying": bool(job.get("history")), "timed_from": started, "result": None}
        deadline = [started + (job["replay_timeout"] if state["replaying"] else timeout) + grace]
        reader = protocol.FrameReader(max_frame=4 * job["max_output"] + 64 * 1024)

        def take(chunk: bytes) -> None:
            for frame in reader.feed(chunk):
                if frame == protocol.REPLAY_DONE and state["replaying"]:
                    state["replaying"], state["timed_from"] = False, time.monotonic()
                    deadline[0] = state["timed_from"] + timeout + grace
                elif state["result"] is None and not state["replaying"]:  # a replayed block's frame is void
                    state["result"] = frame

        killed_for_time, kill_sent, eof, wait_status = False, None, False, None
        while wait_status is None:
            now = time.monotonic()
            if kill_sent is None and (now >= deadline[0] or reader.overflow):
                child.kill()
                killed_for_time, kill_sent = not reader.overflow, now
            if kill_sent is not None and now - kill_sent > KILL_REAP_TIMEOUT:
                raise zygote.ZygoteLost(f"a killed child was not reaped within {KILL_REAP_TIMEOUT:g} s")
            wait = (deadline[0] - now) if kill_sent is None else KILL_REAP_TIMEOUT
            watched = ([] if eof or reader.overflow else [read_fd]) + [zygote_]
            readable = select.select(watched, [], [], max(wait, 0.0))[0]
            if read_fd in readable:
                chunk = os.read(read_fd, 1 << 16)
                eof = not chunk
                take(chunk)
            if zygote_ in readable:
                wait_status = zygote_.wait_status()
        wall = time.monotonic() - state["timed_from"]
        if not eof and not reader.overflow:  # what the dead child wrote last is in the pipe
            os.set_blocking(read_fd, False)
            try:
                while not reader.overflow and (chunk := os.read(read_fd, 1 << 16)):
                    take(chunk)
            except BlockingIOError:  # something it left behind holds the pipe open: enough
                pass
        return state["result"], wait_status, killed_for_time, reader.overflow, state["replaying"], wall

    def _classify(self, job: dict, frame, wait_status: int, killed: bool, overflow: bool,
                  replaying: bool, wall: float) -> dict:
        timeout = job["timeout"]
        reported = None
        if frame is not None:
            try:
                reported = protocol.decode_result(frame)
            except (ValueError, UnicodeDecodeError):
                reported = None
        # The run time the program reports is ignored: a forged frame could say 0 s, nan or -1e9.
        # This process's clock, from the fork (or the end of the replay) to the reaping, decides.
        status, error, stdout, _ = reported or ("", "", "", wall)
        elapsed = wall

        def answer(status: str, error: str, stdout: str = "", elapsed: float = wall) -> dict:
            # the frame came from the program's process: hold it to the limits again
            return {"status": status, "error": error[:MAX_ERROR_CHARS], "stdout": stdout[:job["max_output"]],
                    "elapsed": elapsed}

        if killed:
            if replaying:  # the time went into the replay: it counts against a session's budget
                return answer("timeout", replay_timeout_error(job["replay_timeout"]))
            return answer("timeout", timeout_error(timeout), elapsed=wall)
        if overflow:
            return answer("output_limit", output_error(job["max_output"]))
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            if sig == signal.SIGSYS:
                return answer("forbidden", "PermissionError: the sandbox forbids a system call the "
                                           "program made (stopped by the kernel filter)")
            if sig in (signal.SIGXCPU, signal.SIGKILL):
                return answer("timeout", timeout_error(timeout), elapsed=wall)
            return answer("error", f"SystemError: the program crashed the interpreter "
                                   f"({signal.Signals(sig).name})")
        code = os.WEXITSTATUS(wait_status)
        if code in EXIT_STATUS:  # the exit code decides; the frame only adds the text
            expected = EXIT_STATUS[code]
            defaults = {"timeout": replay_timeout_error(job["replay_timeout"]) if replaying else timeout_error(timeout),
                        "memory": memory_error(job["memory_mb"]),
                        "output_limit": output_error(job["max_output"]),
                        "forbidden": "PermissionError: the sandbox forbids what the program did"}
            if reported is None or status != expected:
                return answer(expected, defaults[expected])
            return answer(expected, error, stdout, elapsed)
        if code == EXIT_SETUP:
            return answer("error", "SystemError: the sandbox could not set up the program's process")
        if code == EXIT_REPORTED and reported is not None and status in ("ok", "error"):
            return answer(status, error, stdout, elapsed)
        return answer("error", f"SystemError: the program ended its process without a result "
                               f"(exit code {code})")


def main() -> None:
    host_in, host_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # a stray print can never corrupt the protocol
    config = protocol.receive_json(host_in)
    if config is None:
        return
    try:
        worker = Worker(config)
    except BaseException as exc:
        protocol.send_json(host_out, {"ready": False, "error": "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]})
        return
    protocol.send_json(host_out, worker.describe())
    os.dup2(devnull, 2)
    while True:
        job = protocol.receive_json(host_in)
        if job is None:  # the host closed the pool, or died
            break
        try:
            answer = worker.run(job)
        except zygote.ZygoteLost:  # the host sees this worker die, replaces it, retries the job
            break
        except Exception as exc:  # a bug here must not take the other jobs down
            answer = {"status": "error", "stdout": "", "elapsed": 0.0,
                      "error": f"SystemError: sandbox worker failed: {last_line(exc)}"}
        protocol.send_json(host_out, answer)
        del job, answer  # nothing of a program outlives its call here longer than needed
    for zygote_ in worker.zygotes.values():
        zygote_.close()
    shutil.rmtree(worker.base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
