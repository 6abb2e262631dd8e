"""Kernel-enforced limits for sandboxed programs: rlimits, Landlock, seccomp, capabilities and
namespaces.

These run in the forked child right before the untrusted program, and unlike the audit hook
they do not depend on the program leaving Python objects alone: once installed, no Python
trick (ctypes, memory writes, a removed audit hook) can lift them.

- rlimits: address space, CPU seconds, file size 0, no new processes (non-root only: the
  kernel does not apply RLIMIT_NPROC to root), no core files, few file descriptors.
- Landlock (Linux >= 5.13): the process may open files and list directories only beneath the
  read-only roots (Python's own library); it may write, create, remove, rename or truncate
  nothing anywhere; with ABI >= 4 it may not bind or connect TCP sockets; with ABI >= 6 it
  may not signal processes outside itself.
- seccomp (x86_64): a BPF filter that kills the process (SIGSYS) on any system call that
  creates a process or thread, executes a file, creates a socket, signals another process
  or touches its memory, modifies the file system, opens a file for writing, sets a
  resource limit (root could raise its own), sets the clock, reads the kernel log, or
  reaches kernel administration (mount, bpf, io_uring, ptrace, modules, namespaces...), changes
  scheduling (nice, realtime, affinity, I/O priority: of itself or of any other process),
  touches SysV or POSIX message queues, shared memory or semaphores, or watches files
  (inotify, fanotify).
- capabilities: all of them dropped (bounding, ambient, effective, permitted, inheritable),
  so a root program is an ordinary user to every capability check of the kernel.
- namespaces (once per worker, see zygote.py): new IPC, network, pid and mount namespaces;
  the mount namespace's root is a small tmpfs holding only the read-only library roots, a
  private /tmp, /dev/null and a read-only /proc of the new pid namespace.

Standard library only: this file is imported by the sandbox worker process (as a top-level
module) as well as by the host package.
"""
from __future__ import annotations

import ctypes
import os
import platform
import resource
import struct

# ---------------------------------------------------------------------------- rlimits


def apply_rlimits(address_space_bytes: int, cpu_seconds: int) -> None:
    """Cap the calling process; every limit is set soft == hard so it cannot be raised."""
    limits = {
        resource.RLIMIT_AS: address_space_bytes,
        resource.RLIMIT_CPU: cpu_seconds,  # SIGXCPU at the limit, then SIGKILL
        resource.RLIMIT_FSIZE: 0,  # writing any byte to a regular file fails (EFBIG)
        resource.RLIMIT_NPROC: 0,  # no fork, no thread (ignored by the kernel for root)
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: 64,
    }
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))


# ---------------------------------------------------------------------------- libc access

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def die_with_parent(signal_number: int) -> None:
    """Ask the kernel to send ``signal_number`` to this process when its parent exits."""
    _check(_prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def _no_new_privs() -> None:
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


# ---------------------------------------------------------------------------- capabilities

_SYS_CAPSET = 126  # x86_64 and most others: the same on the architectures CPython builds for here
_CAPABILITY_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    """Drop every capability for good: the bounding set (needs CAP_SETPCAP, so first), the
    ambient set, then effective, permitted and inheritable (capset to zero)."""
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL before Linux 4.3: no ambient set
    header = ctypes.create_string_buffer(struct.pack("=Ii", _CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(bytes(24), 24)  # two zeroed __user_cap_data_struct
    _check(_syscall(_SYS_CAPSET, header, data), "capset")


def effective_capabilities() -> int:
    """CapEff of this process (0 once drop_capabilities() ran)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return -1


# ---------------------------------------------------------------------------- namespaces

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = {"ipc": CLONE_NEWIPC, "net": CLONE_NEWNET, "pid": CLONE_NEWPID, "mount": CLONE_NEWNS}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
MNT_DETACH = 2
_SYS_PIVOT_ROOT = 155  # x86_64
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _path(p: str | None) -> bytes | None:
    return None if p is None else p.encode()


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_path(source), _path(target), _path(fstype), flags, _path(data)),
           f"mount({source!r}, {target!r}, {fstype!r})")


def _bind_read_only(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter_private_root(mountpoint: str, read_roots: list[str], with_proc: bool) -> None:
    """In a new mount namespace: make a small tmpfs at ``mountpoint`` the root of the file
    system, holding the ``read_roots`` (bind mounts, read-only, at the same paths), an empty
    /tmp, /dev/null and, when ``with_proc`` (the caller is in a new pid namespace), a
    read-only /proc that shows that namespace only. Nothing else of the host is reachable."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    mount("tmpfs", mountpoint, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for root in read_roots:
        os.makedirs(mountpoint + root, exist_ok=True)
        _bind_read_only(root, mountpoint + root)
    os.makedirs(mountpoint + "/tmp", exist_ok=True)
    os.makedirs(mountpoint + "/dev", exist_ok=True)
    os.close(os.open(mountpoint + "/dev/null", os.O_CREAT | os.O_WRONLY, 0o666))
    mount("/dev/null", mountpoint + "/dev/null", None, MS_BIND)
    if with_proc:
        os.makedirs(mountpoint + "/proc", exist_ok=True)
        mount("proc", mountpoint + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    old = mountpoint + "/.old-root"
    os.mkdir(old)
    _check(_syscall(_SYS_PIVOT_ROOT, mountpoint.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount2(/.old-root)")
    os.rmdir("/.old-root")


_SYSV_CTL = {"shm": 31, "msg": 71, "sem": 66}  # x86_64 shmctl, msgctl, semctl
IPC_RMID = 0


def clear_sysv_ipc() -> int:
    """Remove every SysV shared-memory segment, message queue and semaphore set of the
    caller's IPC namespace (the zygote's own, after each program); returns how many."""
    removed = 0
    for table, number in _SYSV_CTL.items():
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ident = int(row.split()[1])
            args = (ident, 0, IPC_RMID) if table == "sem" else (ident, IPC_RMID, None)
            removed += _syscall(number, *args) == 0
    return removed


# ---------------------------------------------------------------------------- Landlock
# Syscall numbers 444-446 are the same on every architecture (allocated after unification).
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_READ_FILE, FS_READ_DIR = 1 << 2, 1 << 3
# File-system rights the kernel knows, by ABI version: 13 rights in v1, REFER in v2,
# TRUNCATE in v3, IOCTL_DEV in v5. Handling a right without granting it denies it.
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_RIGHTS_LATEST = (1 << 16) - 1
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI >= 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2  # ABI >= 6


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel, or 0 when Landlock is unavailable."""
    version = _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(version), 0)


class LandlockRuleset:
    """Read access to files and directories beneath ``read_roots``; every other file-system
    access (and TCP, and signals to other processes, where the ABI knows them) denied.

    Built once (in the worker); ``restrict_self`` then costs two system calls per child."""

    def __init__(self, read_roots: list[str], abi: int):
        assert abi >= 1, f"Landlock ABI {abi} is not usable"
        handled_fs = _FS_RIGHTS_BY_ABI.get(abi, _FS_RIGHTS_LATEST)
        handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
        scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
        attr = attr[:8] if abi < 4 else attr[:16] if abi < 6 else attr
        buf = ctypes.create_string_buffer(attr, len(attr))
        self.fd = _check(_syscall(SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
        for root in read_roots:
            fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            try:
                # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd
                rule = ctypes.create_string_buffer(struct.pack("=Qi", FS_READ_FILE | FS_READ_DIR, fd), 12)
                _check(_syscall(SYS_LANDLOCK_ADD_RULE, self.fd, LANDLOCK_RULE_PATH_BENEATH, rule,
                                ctypes.c_uint32(0)), f"landlock_add_rule({root!r})")
            finally:
                os.close(fd)

    def restrict_self(self) -> None:
        _no_new_privs()
        _check(_syscall(SYS_LANDLOCK_RESTRICT_SELF, self.fd, ctypes.c_uint32(0)), "landlock_restrict_self")


# ---------------------------------------------------------------------------- seccomp
AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ALLOW = 0x7FFF0000
# classic BPF opcodes
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_OFFSET_NR, _OFFSET_ARCH = 0, 4
_OFFSET_ARG = 16  # seccomp_data.args[i] at 16 + 8 * i (low 32 bits first on little endian)
# open flags that can create, write or truncate a file
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
_X86_64_DENIED = {
    # processes, threads and programs
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "clone3": 435, "execveat": 322,
    # network and local sockets
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53,
    "accept4": 288,
    # signals to other processes, other processes' memory
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "migrate_pages": 256,
    "move_pages": 279, "process_madvise": 440,
    # changes to the file system
    "truncate": 76, "ftruncate": 77, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85,
    "link": 86, "unlink": 87, "symlink": 88, "chmod": 90, "fchmod": 91, "chown": 92,
    "fchown": 93, "lchown": 94, "utime": 132, "mknod": 133, "setxattr": 188, "lsetxattr": 189,
    "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
    "utimes": 235, "mkdirat": 258, "mknodat": 259, "fchownat": 260, "futimesat": 261,
    "unlinkat": 263, "renameat": 264, "linkat": 265, "symlinkat": 266, "fchmodat": 268,
    "utimensat": 280, "name_to_handle_at": 303, "open_by_handle_at": 304, "renameat2": 316,
    "openat2": 437, "fchmodat2": 452, "uselib": 134,
    # limits (root could raise its own), clocks, the kernel log, kernel administration
    "setrlimit": 160, "settimeofday": 164, "adjtimex": 159, "clock_settime": 227,
    "clock_adjtime": 305, "syslog": 103, "vhangup": 153,
    "personality": 135, "pivot_root": 155, "chroot": 161, "acct": 163, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
    "quotactl": 179, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "fanotify_init": 300, "setns": 308,
    "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "quotactl_fd": 443,
    # scheduling, of itself or of other processes (renice, re-pin or idle the host; realtime)
    "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "ioprio_set": 251, "sched_setattr": 314,
    # SysV and POSIX IPC: shared memory, semaphores, message queues
    "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
    "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245,
    # watching files (learns the names of files others create)
    "inotify_init": 253, "inotify_add_watch": 254, "inotify_rm_watch": 255, "inotify_init1": 294,
    "fanotify_mark": 301,
}
_X86_64_OPEN, _X86_64_OPENAT, _X86_64_PRLIMIT64 = 2, 257, 302


def _assemble(program: list[tuple]) -> bytes:
    """Classic BPF from ``(opcode, k, true_label, false_label)`` tuples and ``"label:"``
    strings; a jump names the label it goes to (None: the next instruction)."""
    where, index = {}, 0
    for item in program:
        if isinstance(item, str):
            where[item.rstrip(":")] = index
        else:
            index += 1
    out, index = [], 0
    for item in program:
        if isinstance(item, str):
            continue
        code, k, *targets = item
        jt, jf = (0 if t is None else where[t] - index - 1 for t in (targets + [None, None])[:2])
        assert 0 <= jt < 256 and 0 <= jf < 256, f"BPF jump ({jt}, {jf}) out of range"
        out.append(struct.pack("=HBBI", code, jt, jf, k))
        index += 1
    return b"".join(out)


def _argument_checks(nr: int) -> list:
    """The BPF code for the calls that are allowed with some arguments only (labels are
    made unique with the call number)."""
    kill = [f"kill{nr}:", (_RET_K, SECCOMP_RET_KILL_PROCESS)]
    if nr in (_X86_64_OPEN, _X86_64_OPENAT):  # the flags argument: no write, create, truncate
        flags = _OFFSET_ARG + 8 * (1 if nr == _X86_64_OPEN else 2)
        return [(_LD_W_ABS, flags), (_JSET_K, _WRITE_FLAGS, f"kill{nr}"), (_RET_K, SECCOMP_RET_ALLOW)] + kill
    # prlimit64(pid, resource, new_limit, old_limit): new_limit must be NULL
    return [(_LD_W_ABS, _OFFSET_ARG + 8 * 2), (_JEQ_K, 0, None, f"kill{nr}"),
            (_LD_W_ABS, _OFFSET_ARG + 8 * 2 + 4), (_JEQ_K, 0, None, f"kill{nr}"),
            (_RET_K, SECCOMP_RET_ALLOW)] + kill


def _intervals(denied: set[int], checked: tuple[int, ...]) -> list[tuple[int, str]]:
    """The call-number line cut into runs: (first number of the run, "allow" | "kill" |
    "check"), starting at 0; each "check" run is one argument-checked call."""
    runs: list[tuple[int, str]] = [(0, "allow")]
    for nr in range(max(denied | set(checked)) + 2):
        action = "check" if nr in checked else "kill" if nr in denied else "allow"
        if action == "check" or action != runs[-1][1]:
            runs.append((nr, action))
    return runs[1:] if runs[1][0] == 0 else runs


def _decision_tree(runs: list[tuple[int, str]]) -> list:
    """A binary search over the runs (the accumulator holds the call number): ~7 comparisons
    a call, and a short program, instead of one comparison per denied number. It matters at
    install, when the kernel compiles the filter and runs it for every call number to build
    its cache of calls allowed outright."""
    if len(runs) == 1:
        first, action = runs[0]
        if action == "check":
            return _argument_checks(first)
        return [(_RET_K, SECCOMP_RET_ALLOW if action == "allow" else SECCOMP_RET_KILL_PROCESS)]
    middle = len(runs) // 2
    label = f"from{runs[middle][0]}"
    return [(_JGE_K, runs[middle][0], label)] + _decision_tree(runs[:middle]) + [label + ":"] + _decision_tree(runs[middle:])


_ARGUMENT_CHECKED = (_X86_64_OPEN, _X86_64_OPENAT, _X86_64_PRLIMIT64)


def seccomp_filter_x86_64() -> bytes:
    """The BPF program described in the module docstring, as raw ``sock_filter`` records:
    kill on a foreign ABI (int 0x80, x32) or a denied call; open/openat only without write
    flags; prlimit64 only to read limits; everything else allowed."""
    program: list = [
        (_LD_W_ABS, _OFFSET_ARCH), (_JEQ_K, AUDIT_ARCH_X86_64, "native"), (_RET_K, SECCOMP_RET_KILL_PROCESS),
        "native:", (_LD_W_ABS, _OFFSET_NR), (_JGE_K, _X32_SYSCALL_BIT, None, "tree"),
        (_RET_K, SECCOMP_RET_KILL_PROCESS), "tree:",
    ]
    program += _decision_tree(_intervals(set(_X86_64_DENIED.values()), _ARGUMENT_CHECKED))
    return _assemble(program)


def seccomp_supported() -> bool:
    """The filter is written for x86_64 system call numbers only."""
    return platform.machine() in ("x86_64", "AMD64")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompFilter:
    """A BPF program from :func:`seccomp_filter_x86_64`, ready to install (built once)."""

    def __init__(self, program: bytes):
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buf))

    def install(self) -> None:
        _no_new_privs()
        _check(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog), 0, 0),
               "prctl(PR_SET_SECCOMP)")
