"""Each containment layer of mathlm.sandbox on its own.

The other layers are switched off (``Job.disable``, for tests only) so that a layer is seen
stopping the attack by itself; positive controls show that, with every layer off, the same
test would notice the attack succeeding. Targets are this test's own: a canary in a
temporary folder, a TCP listener on 127.0.0.1, a sacrificial ``sleep`` process.
"""
import glob
import json
import math
import os
import signal
import string
import subprocess
import sys
import time

import pytest

import mathlm.sandbox as sandbox
from mathlm.sandbox.pool import scratch_root
from sandbox_targets import Listener, run

OS = "import random\nos = random._os\n"
IMP = "import fractions\nimp = fractions.__builtins__['__import__']\n"
KERNEL = ("landlock", "seccomp", "namespaces")
ALL = ("audit_hook", "landlock", "seccomp", "rlimits", "namespaces")
SECCOMP_ERROR = "PermissionError: the sandbox forbids a system call the program made (stopped by the kernel filter)"


@pytest.fixture(scope="module")
def layers():
    return sandbox.sandbox_layers()


@pytest.fixture
def vault(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("the canary sings\n")
    yield {"canary": str(canary), "vault": str(tmp_path)}
    assert canary.read_text() == "the canary sings\n"
    assert sorted(os.listdir(tmp_path)) == ["canary.txt"]


@pytest.fixture
def listener():
    server = Listener()
    yield server.port, server.connections
    server.close()


def test_layers_available_here(layers):
    assert layers["process"] and layers["rlimits"] and layers["audit_hook"]
    assert set(layers) >= {"landlock", "landlock_abi", "seccomp"}


# ---------------------------------------------------------------------------- process

def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def test_program_runs_in_a_child_of_a_zygote_of_a_worker_not_in_the_host():
    """Without the pid namespace (whose pids the host cannot map) the program's pid is the
    host's: its parent is a zygote, whose parent is a worker of this process's pool."""
    result = run(OS + "print(os.getpid(), os.getppid(), os.getsid(0))", disable=("audit_hook", "namespaces"))
    pid, parent, session = map(int, result.stdout.split())
    workers = {w.proc.pid for w in sandbox._get_pool(False)._idle}
    assert parent_of(parent) in workers and parent not in workers and pid != os.getpid()
    assert session in workers and session != os.getsid(0)  # the worker's own session, not the host's


def test_workers_are_single_threaded():
    """A worker forks for every program: it must hold no other thread (numerics libraries
    are told to start none)."""
    sandbox.run_many(["print(1)", "import numpy\nprint(1)"])
    for pool in sandbox._pools.values():
        for worker in pool._idle:
            assert os.listdir(f"/proc/{worker.proc.pid}/task") == [str(worker.proc.pid)]


def test_worker_without_pidfd_polls_for_its_children(tmp_path):
    """Where os.pidfd_open is missing or refused (old kernels, some containers) the worker
    polls for the child's exit instead: same answers, timeouts included."""
    script = f"""
import json, os, sys
sys.path.insert(0, {os.path.dirname(sandbox.__file__)!r})
del os.pidfd_open
import worker
os.chdir({str(tmp_path)!r})
w = worker.Worker({{"sys_path": sys.path[1:], "scientific": False}})
for code in ["print(6 * 7)", "while True:\\n    pass", "import os"]:
    job = {{"code": code, "timeout": 0.5, "memory_mb": 256, "max_output": 100, "replay_timeout": 0.0}}
    print(json.dumps(w.run(job)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(a["status"], a["stdout"]) for a in answers] == [("ok", "42\n"), ("timeout", ""), ("forbidden", "")]


def test_a_crashed_interpreter_is_an_error_result_and_nothing_else():
    # a null-pointer read through ctypes, with the hook off so that the call goes through
    crash = "import fractions\nprint(fractions.sys.modules['ctypes'].c_int.from_address(8).value)"
    result = run(crash, disable=("audit_hook",))
    assert (result.status, result.error) == ("error", "SystemError: the program crashed the interpreter (SIGSEGV)")
    assert run("print('alive')").stdout == "alive\n"


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("MATHLM_TEST_SECRET", "hunter2")
    sandbox.close_pool()  # new workers start with the secret in the host's environment
    result = run(OS + "print(sorted(os.environ))\nprint(os.environ['HOME'] == os.environ['TMPDIR'])",
                 disable=("audit_hook",))
    names, same_home = result.stdout.splitlines()
    assert "hunter2" not in result.stdout and "MATHLM_TEST_SECRET" not in names
    assert eval(names) == ["HOME", "LANG", "LC_ALL", "MALLOC_ARENA_MAX", "MKL_NUM_THREADS",
                           "NUMEXPR_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH",
                           "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONNOUSERSITE", "TMPDIR"]
    assert same_home == "True"


@pytest.mark.parametrize("disable", [(), ("namespaces",)])
def test_private_working_directory_is_empty_and_removed_afterwards(layers, disable):
    """In the private root the folder is /tmp/run-*; without the namespaces, beneath the
    worker's base directory (on the scratch root). Either way it is gone afterwards."""
    result = run(OS + "print(os.getcwd())\nprint(os.listdir('.'))", disable=("audit_hook", "landlock") + disable)
    cwd, listing = result.stdout.splitlines()
    assert listing == "[]"
    assert cwd != os.getcwd() and os.path.basename(cwd).startswith("run-")
    if layers["private_root"] and not disable:
        assert os.path.dirname(cwd) == "/tmp"
    else:
        if scratch_root():
            assert cwd.startswith(scratch_root() + "/")
        assert not os.path.exists(cwd)
    assert leftover_private_dirs() == []


def leftover_private_dirs():
    return [d for pool in sandbox._pools.values() for w in pool._idle
            for d in glob.glob(os.path.join(w.base_dir, "run-*"))]


def test_only_stdio_and_the_result_pipe_are_open():
    """Nothing of the worker's (its pipes to the host) is reachable: fds 0-2 are /dev/null,
    the one other descriptor is the program's own result pipe (plus the one listdir opens)."""
    code = OS + "fds = sorted(map(int, os.listdir('/proc/self/fd')))\nprint(fds)\n" \
                "print([os.readlink(f'/proc/self/fd/{k}') for k in (0, 1, 2)])"
    result = run(code, disable=("audit_hook", "landlock"))
    fds, std = result.stdout.splitlines()
    assert eval(fds)[:3] == [0, 1, 2] and len(eval(fds)) == 5
    assert eval(std) == ["/dev/null"] * 3


# ---------------------------------------------------------------------------- rlimits

def test_rlimits_are_set_hard(layers):
    code = IMP + ("r = imp('resource')\nfor k in ('AS', 'CPU', 'FSIZE', 'NPROC', 'CORE', 'NOFILE'):\n"
                  "    print(k, *r.getrlimit(getattr(r, 'RLIMIT_' + k)))")
    result = run(code, disable=("audit_hook",), timeout=2.5, memory_mb=100)
    limits = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in result.stdout.splitlines()}
    assert all(soft == hard for soft, hard in limits.values())  # the program cannot raise them
    assert limits["CPU"][0] == math.ceil(2.5) + 1
    assert limits["FSIZE"] == limits["NPROC"] == limits["CORE"] == (0, 0)
    assert limits["NOFILE"] == (64, 64)
    # address space: what the worker had mapped at fork, plus the program's 100 MiB
    assert 100 * 2**20 < limits["AS"][0] < 100 * 2**20 + 4 * 2**30


def test_rlimit_fsize_alone_stops_writing_a_file():
    code = "f = open('written.txt', 'w')\nf.write('x' * 10)\nf.close()"
    result = run(code, disable=("audit_hook", "landlock", "seccomp", "namespaces"))
    assert (result.status, result.error) == ("error", "OSError: [Errno 27] File too large")


def test_rlimit_as_alone_stops_a_memory_bomb():
    result = run("x = bytearray(2 ** 31)", disable=("audit_hook", "landlock", "seccomp", "namespaces"), memory_mb=64)
    assert (result.status, result.error) == ("memory", "MemoryError: memory limit of 64 MiB exceeded")


def test_rlimit_cpu_alone_kills_a_busy_loop():
    """Without the worker's wall clock (a plain process here), the CPU limit ends a busy
    loop that ignores SIGXCPU: SIGKILL at the hard limit, soft == hard."""
    folder = os.path.dirname(sandbox.__file__)
    code = (f"import sys, signal\nsys.path.insert(0, {folder!r})\nimport kernel_guards\n"
            "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
            "kernel_guards.apply_rlimits(2 ** 40, 1)\nwhile True:\n    pass")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert done.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 20  # one CPU second, however busy the machine


@pytest.mark.skipif(os.geteuid() == 0, reason="the kernel does not apply RLIMIT_NPROC to root")
def test_rlimit_nproc_alone_stops_fork():
    result = run(OS + "os.fork()", disable=("audit_hook", "seccomp"))
    assert (result.status, result.error) == ("error", "BlockingIOError: [Errno 11] Resource temporarily unavailable")


# ---------------------------------------------------------------------------- Landlock

ATTEMPTS = OS + IMP + """
def attempt(action):
    try:
        action()
        return 'done'
    except OSError as exc:
        return type(exc).__name__
print(attempt(lambda: open('$canary').read()))
print(attempt(lambda: open('$vault/new.txt', 'w')))
print(attempt(lambda: os.remove('$canary')))
print(attempt(lambda: os.rename('$canary', '$canary.moved')))
print(attempt(lambda: os.listdir('$vault')))
print(attempt(lambda: open(random.__file__).read(10)))
"""


def test_landlock_alone_confines_files_to_reading_the_library(layers, vault):
    if not layers["landlock"]:
        pytest.skip("Landlock is not available on this kernel")
    result = run(ATTEMPTS, disable=("audit_hook", "seccomp", "namespaces"), **vault)
    assert result.stdout.split() == ["PermissionError"] * 5 + ["done"]


def test_control_without_any_layer_the_canary_is_readable(vault):
    """Positive control: the attempts above do reach the canary when no layer stands in the
    way (only the read and the listing run, the harmful ones are left out)."""
    code = OS + "print(open('$canary').read().strip())\nprint(os.listdir('$vault'))"
    result = run(code, disable=ALL, **vault)
    assert result.stdout == "the canary sings\n['canary.txt']\n"


def test_landlock_alone_refuses_tcp(layers, listener):
    if layers["landlock_abi"] < 4:
        pytest.skip("this kernel's Landlock does not handle TCP (ABI < 4)")
    port, received = listener
    code = IMP + "s = imp('socket').socket()\ntry:\n    s.connect(('127.0.0.1', $port))\nexcept OSError as e:\n" \
                 "    print(type(e).__name__)"
    result = run(code, disable=("audit_hook", "seccomp", "namespaces"), port=port)
    assert result.stdout == "PermissionError\n"
    time.sleep(0.2)
    assert received == []


# ---------------------------------------------------------------------------- seccomp

@pytest.mark.parametrize("name, code", [
    ("fork", OS + "os.fork()"),
    ("thread", IMP + "imp('threading').Thread(target=print).start()"),
    ("exec", OS + "os.execv('/bin/true', ['true'])"),
    ("socket", IMP + "imp('socket').socket()"),
    ("kill", OS + "os.kill($victim, 9)"),
    ("unlink", OS + "os.remove('$canary')"),
    ("write_open", "open('new.txt', 'w')"),
    ("chmod", OS + "os.chmod('$canary', 0)"),
    ("setrlimit", IMP + "r = imp('resource')\nr.setrlimit(r.RLIMIT_CORE, (0, 0))"),  # root could raise limits
    ("clock", IMP + "imp('time').clock_settime(0, 0.0)"),
])
def test_seccomp_alone_kills_the_program_at_the_system_call(layers, vault, name, code):
    if not layers["seccomp"]:
        pytest.skip("the seccomp filter is not available here")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        result = run(code, disable=("audit_hook", "landlock", "namespaces"), victim=victim.pid, **vault)
        assert (result.status, result.error) == ("forbidden", SECCOMP_ERROR)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# ---------------------------------------------------------------------------- audit hook and import guard

@pytest.mark.parametrize("code, what", [
    ("print(open('$canary').read())", "reading '$canary'"),
    ("open('x.txt', 'w')", "opening for writing 'x.txt'"),
    (OS + "os.system('true')", "os.system"),
    (OS + "os.remove('$canary')", "os.remove"),
    (OS + "print(os.listdir('$vault'))", "listing '$vault'"),
    (IMP + "imp('socket').socket()", "socket.__new__"),
    (IMP + "imp('_posixsubprocess')", "import of '_posixsubprocess'"),
    (IMP + "imp('pty')", "import of 'pty'"),
    ("import fractions\nfractions.sys.modules['ctypes'].CDLL(None)", "ctypes.dlopen"),
    ("import fractions\nfractions.sys.modules['gc'].get_objects()", "gc.get_objects"),
    ("import os", "import of 'os'"),
    ("import wave", "import of 'wave'"),  # harmless, but not on the allowlist
    ("import _socket", "import of '_socket'"),
    ("import _strptime", "import of '_strptime'"),  # an import statement: the allowlist applies
    ("exec('import wave')", "import of 'wave'"),
    ("from . import x", "relative import of ''"),
])
def test_audit_hook_and_import_guard_alone(vault, code, what):
    result = run(code, disable=KERNEL, **vault)
    assert result.status == "forbidden"
    assert result.error == "PermissionError: the sandbox forbids " + string.Template(what).substitute(vault)


def test_a_forged_result_frame_is_held_to_the_limits():
    """A program that writes its own result frame on the pipe (possible once it reaches os)
    can only lie about itself, and only within max_output."""
    code = IMP + OS + ("proto = imp('protocol')\n"
                       "frame = proto.encode_result('ok', '', 'x' * 5000, 0.0)\n"
                       "for fd in range(3, 20):\n"
                       "    try:\n        os.write(fd, frame)\n    except OSError:\n        pass\n"
                       "os._exit(0)")
    result = run(code, max_output=100)
    assert (result.status, result.stdout) == ("ok", "x" * 100)


def test_a_denial_cannot_be_caught():
    code = "try:\n    import os\nexcept BaseException:\n    print('caught')\nprint('went on')"
    result = run(code)
    assert (result.status, result.stdout) == ("forbidden", "")


def test_output_before_a_denial_is_kept():
    result = run("print('partial')\nopen('/etc/passwd')")
    assert (result.status, result.stdout) == ("forbidden", "partial\n")


# ---------------------------------------------------------------------------- wall clock, output, threads

def test_wall_clock_kill_when_the_program_disarms_its_timer():
    """The program cancels its own SIGALRM timer: the worker kills it 0.5 s after the limit."""
    code = "import fractions\nsignal = fractions.sys.modules['signal']\nsignal.setitimer(signal.ITIMER_REAL, 0)\n" \
           "while True:\n    pass"
    start = time.monotonic()
    result = run(code, timeout=0.5)
    wall = time.monotonic() - start
    assert (result.status, result.error) == ("timeout", "TimeoutError: time limit of 0.5 s exceeded")
    assert 0.9 <= wall < 1.5


def test_output_cap_cannot_be_caught():
    code = "for k in range(10 ** 6):\n    try:\n        print(k)\n    except BaseException:\n        pass"
    result = run(code, max_output=100)
    assert result.status == "output_limit"
    assert result.stdout == "".join(f"{k}\n" for k in range(60))[:100]


THREAD = IMP + """
def later():
    time.sleep($delay)
    s = imp('socket').create_connection(('127.0.0.1', $port))
    s.sendall(b'$word')
    s.close()
time = imp('time')
t = imp('threading').Thread(target=later)
t.start()
"""


def test_no_thread_outlives_its_call(listener):
    """With every layer that would stop a thread or a connection switched off, a thread that
    acts after the program returned still never acts: the program's process is gone."""
    port, received = listener
    control = run(THREAD + "t.join()", disable=ALL, port=port, delay=0.0, word="now")
    assert control.status == "ok"
    time.sleep(0.3)
    assert received == [b"now"]  # positive control: a joined thread does connect
    late = run(THREAD, disable=ALL, port=port, delay=0.5, word="late")
    assert late.status == "ok"
    time.sleep(1.5)
    assert received == [b"now"]
