"""The zygote: the clean process that every sandboxed program is forked from.

A worker (worker.py) talks to the host and so holds every program's source and answer. If it
forked the programs itself, each child would inherit the previous programs' data (a child
walking frames or scanning its heap would find them). So a worker forks a zygote right after
its start-up, before it has seen any job, and the zygote forks the programs: it never
receives a program's source or output, only two pipe descriptors per program.

Per program (``Zygote.spawn``): the worker makes a job pipe and a result pipe and sends the
child's ends to the zygote over a SOCK_SEQPACKET socket (SCM_RIGHTS). The zygote forks the
child, which reads its job from the job pipe, enters the sandbox and reports on the result
pipe to the worker. The zygote hands the worker a pidfd of the child (so the worker can kill
it, across the pid namespace, without a pid-reuse race), reaps it, kills whatever else is
left in its pid namespace, removes the child's work folder and sends the wait status. Status
and time are the worker's to judge, from that status and its own clock.

Once per worker, not once per program (a network namespace costs milliseconds), the
namespaced zygote enters new IPC, network, pid and mount namespaces (its child is pid 1 of the
new pid namespace), replaces the root of the file system with a tmpfs holding only the
read-only library roots, /tmp, /dev/null and /proc (kernel_guards.enter_private_root), and
drops every capability. Where the kernel refuses a namespace the zygote goes on without it and
says which ones it has (``layers``); the host reports a missing one once per process.

Standard library only: imported by the worker process as a top-level module.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Callable

import kernel_guards

SPAWN, CHILD, STATUS, READY = b"F", b"P", b"S", b"N"
FILTERED = b"s"  # after SPAWN: the child will install the seccomp filter
NAMESPACES = ("ipc", "net", "pid", "mount")


class ZygoteLost(RuntimeError):
    """The zygote died or broke the protocol: the worker must exit (the host replaces it)."""


class Child:
    """A program's process as the worker sees it: kill it by pidfd (or pid, without pidfd)."""

    def __init__(self, pid: int, pidfd: int | None):
        self.pid, self.pidfd = pid, pidfd

    def kill(self) -> None:
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:  # not reaped until the zygote's waitpid: the pid is still the child's
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class Zygote:
    """The worker's handle on one zygote process."""

    def __init__(self, start_child: Callable, keep_fds: list[int], namespaces: bool,
                 base_dir: str, read_roots: list[str]):
        """``start_child(job_fd, result_fd, workdir, address_space)`` runs in each child and
        never returns; ``keep_fds`` are the worker's descriptors the children need (devnull,
        the Landlock ruleset); every other descriptor is closed in the zygote."""
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        use_pidfd = hasattr(os, "pidfd_open")
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            code = 1
            try:
                _zygote_main(theirs, start_child, set(keep_fds), namespaces and use_pidfd, base_dir, read_roots)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ready = self._receive()
        if not ready.startswith(READY):
            raise ZygoteLost(f"the zygote answered {ready[:40]!r} at start-up")
        self.layers = json.loads(ready[1:])

    def _receive(self, fds: int = 0) -> bytes:
        try:
            if fds:
                message, received, _, _ = socket.recv_fds(self.sock, 4096, fds)
                self._fds = received
            else:
                message = self.sock.recv(4096)
        except OSError as exc:
            raise ZygoteLost(f"the zygote is gone: {exc}") from exc
        if not message:
            raise ZygoteLost("the zygote is gone")
        return message

    def spawn(self, job_fd: int, result_fd: int, filtered: bool) -> Child:
        """Fork a child that reads its job from ``job_fd`` and reports on ``result_fd``;
        ``filtered``: it will install the seccomp filter (so it can start no process, touch
        no IPC object and change no scheduling: the zygote skips those clean-ups)."""
        try:
            socket.send_fds(self.sock, [SPAWN + (FILTERED if filtered else b"")], [job_fd, result_fd])
        except OSError as exc:
            raise ZygoteLost(f"the zygote is gone: {exc}") from exc
        self._fds = []
        message = self._receive(fds=1)
        if not message.startswith(CHILD):
            raise ZygoteLost(f"the zygote answered {message[:40]!r}, expected a child")
        return Child(int(message[1:]), self._fds[0] if self._fds else None)

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait_status(self) -> int:
        """The child's wait status, once the zygote has reaped it (call when readable)."""
        message = self._receive()
        if not message.startswith(STATUS):
            raise ZygoteLost(f"the zygote answered {message[:40]!r}, expected a wait status")
        return int(message[1:])

    def close(self, grace: float = 2.0) -> None:
        """End of input: the zygote (and its pid namespace's parent) exit and reap what they
        forked; killed after ``grace`` seconds if not."""
        self.sock.close()
        deadline = time.monotonic() + grace
        try:
            while not os.waitpid(self.pid, os.WNOHANG)[0]:
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    return
                time.sleep(0.002)
        except (ProcessLookupError, ChildProcessError):
            pass


# ---------------------------------------------------------------------------- the zygote side

def _close_other_fds(keep: set[int]) -> None:
    for low, high in zip([3] + [fd + 1 for fd in sorted(keep)], sorted(keep) + [1 << 20]):
        os.closerange(low, high)


def _enter_namespaces(base_dir: str, read_roots: list[str]) -> tuple[list[str], int | None]:
    """Unshare what the kernel allows; with a pid namespace, fork so that the zygote proper
    is its pid 1 (this process then only waits for it). Returns the namespaces entered, and
    the pid of that first child in the parent (None in the zygote proper)."""
    entered = []
    for name in NAMESPACES:
        try:
            kernel_guards.unshare(kernel_guards.NAMESPACE_FLAGS[name])
            entered.append(name)
        except OSError:
            pass
    if "pid" in entered:
        pid = os.fork()
        if pid:
            return entered, pid
        kernel_guards.die_with_parent(signal.SIGKILL)
    if "mount" in entered:
        mountpoint = tempfile.mkdtemp(dir=base_dir, prefix="root-")
        try:
            kernel_guards.enter_private_root(mountpoint, read_roots, with_proc="pid" in entered)
            entered.append("private_root")
        except OSError:
            pass
    return entered, None


def _zygote_main(sock: socket.socket, start_child: Callable, keep: set[int], namespaces: bool,
                 base_dir: str, read_roots: list[str]) -> None:
    kernel_guards.die_with_parent(signal.SIGKILL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # none of the worker's pipes to the host
        os.dup2(devnull, fd)
    os.close(devnull)
    _close_other_fds(keep | {sock.fileno()})
    statm = os.open("/proc/self/statm", os.O_RDONLY)  # before /proc may be replaced
    entered: list[str] = []
    if namespaces:
        entered, first = _enter_namespaces(base_dir, read_roots)
        if first is not None:  # the parent of the pid namespace's init: wait, then go
            sock.close()
            os.waitpid(first, 0)
            return
        os.close(statm)
        statm = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        kernel_guards.drop_capabilities()
        capabilities = kernel_guards.effective_capabilities() == 0
    except OSError:
        capabilities = False
    workdirs = "/tmp" if "private_root" in entered else base_dir
    scheduling = _scheduling_state()
    gc.collect()
    gc.freeze()
    sock.send(READY + json.dumps({"namespaces": [n for n in NAMESPACES if n in entered],
                                  "private_root": "private_root" in entered,
                                  "capabilities_dropped": capabilities}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 16, 2)
        except OSError:
            return
        if message not in (SPAWN, SPAWN + FILTERED) or len(fds) != 2:
            return  # the worker closed the socket (or broke the protocol)
        unfiltered = message == SPAWN  # a test switched seccomp off: clean up after it
        status = _spawn_one(sock, fds, start_child, workdirs, statm, unfiltered and os.getpid() == 1,
                            unfiltered and "ipc" in entered)
        if unfiltered and _scheduling_state() != scheduling:
            # A program changed how this process is scheduled (possible only with seccomp off:
            # same uid, lower priority), which its later children would inherit: a channel
            # between programs. This process ends before answering; the worker follows and the
            # host replaces it (and reruns the job once, then reports it as an error).
            return
        sock.send(STATUS + str(status).encode())


def _scheduling_state() -> tuple:
    """nice, CPU affinity, policy and I/O priority of this process."""
    return (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0), os.sched_getscheduler(0),
            kernel_guards._syscall(252, 1, 0))  # ioprio_get(IOPRIO_WHO_PROCESS, self)


def _spawn_one(sock: socket.socket, fds: list[int], start_child: Callable, workdirs: str,
               statm: int, init_of_namespace: bool, own_ipc: bool) -> int:
    """Fork one child, hand the worker its pidfd, reap it, clean up; its wait status."""
    job_fd, result_fd = fds
    workdir = tempfile.mkdtemp(dir=workdirs, prefix="run-")
    address_space = int(os.pread(statm, 100, 0).split()[0]) * os.sysconf("SC_PAGE_SIZE")
    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            os.close(statm)
            start_child(job_fd, result_fd, workdir, address_space)
        finally:
            os._exit(81)
    os.close(job_fd)
    os.close(result_fd)
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass
    socket.send_fds(sock, [CHILD + str(pid).encode()], [] if pidfd is None else [pidfd])
    if pidfd is not None:
        os.close(pidfd)
    status = os.waitpid(pid, 0)[1]
    if init_of_namespace:  # nothing the program left (a process, if every layer was off) lives on
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
    if own_ipc:  # what a program created there (if seccomp was off) dies with its call
        kernel_guards.clear_sysv_ipc()
    try:
        os.rmdir(workdir)  # empty unless a test switched the layers off
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
    return status
