"""A corpus of hostile programs against mathlm.sandbox, with every layer on.

The targets are real: a canary file in a folder outside the sandbox, a TCP listener on
127.0.0.1 run by this test, and a sacrificial process of this test's. Each program must end
non-ok within timeout + 1 s; afterwards the canary (content, mode, mtime, folder listing) is
unchanged, the listener has seen no connection, the process is alive, no private directory
is left behind, and the next benign program on the same kind of worker still runs right.

Many programs first escape the import allowlist the way real attacks do (``random._os``,
``fractions.sys``, the real ``__import__`` from ``fractions.__builtins__``, ``__subclasses__``)
and then try the harmful thing, so that the layers behind the import guard are exercised.
"""
import glob
import importlib.util
import os
import string
import subprocess
import time

import pytest

import mathlm.sandbox as sandbox
from mathlm.sandbox import run_python
from sandbox_targets import Listener

TIMEOUT = 1.0

OS = "import random\nos = random._os\n"  # random keeps the os module as _os
SYS = "import fractions\nsys = fractions.sys\n"  # fractions imports sys
IMP = "import fractions\nimp = fractions.__builtins__['__import__']\n"  # the real __import__
KG = SYS + "kg = sys.modules['kernel_guards']\n"  # the worker's own ctypes-backed helpers
SUBCLASSES = ("classes, todo = [], [().__class__.__base__]\n"  # every class, from object down
              "while todo:\n    c = todo.pop()\n    classes.append(c)\n    todo.extend(type.__subclasses__(c))\n")

F, T, M, O, E = "forbidden", "timeout", "memory", "output_limit", "error"

HOSTILE = {
    # ---- the canary file: read, write, delete, through open / os / pathlib / shutil
    "open_read": ("print(open('$canary').read())", F),
    "open_write": ("open('$canary', 'w').write('pwned')", F),
    "open_append": ("with open('$canary', 'a') as f:\n    f.write('x')", F),
    "open_relative_dotdot": ("print(open('../../../../../../../..$canary').read())", F),
    "open_fd_zero": ("print(open(0).read())", F),
    "read_etc_passwd": ("print(open('/etc/passwd').read())", F),
    "read_proc_environ": ("print(open('/proc/self/environ', 'rb').read())", F),
    "open_stdlib_for_append": ("import fractions\nopen(fractions.__file__, 'a')", F),
    "os_import_remove": ("import os\nos.remove('$canary')", F),
    "os_escape_remove": (OS + "os.remove('$canary')", F),
    "os_escape_open_read": (OS + "fd = os.open('$canary', os.O_RDONLY)\nprint(os.read(fd, 100))", F),
    "os_escape_rename": (OS + "os.rename('$canary', '$canary.moved')", F),
    "os_escape_chmod_truncate": (OS + "os.chmod('$canary', 0)\nos.truncate('$canary', 0)", F),
    "os_escape_listdir": (OS + "print(os.listdir('$vault'))", F),
    "os_escape_chdir": (OS + "os.chdir('$vault')\nprint(open('canary.txt').read())", F),
    "pathlib_import_read": ("import pathlib\nprint(pathlib.Path('$canary').read_text())", F),
    "pathlib_escape_unlink": (IMP + "imp('pathlib').Path('$canary').unlink()", F),
    "pathlib_escape_write": (IMP + "imp('pathlib').Path('$canary').write_text('x')", F),
    "shutil_escape_rmtree": (IMP + "imp('shutil').rmtree('$vault')", F),
    "shutil_escape_copy_out": (IMP + "imp('shutil').copy('$canary', 'stolen.txt')\nprint(open('stolen.txt').read())", F),
    "fileio_via_subclasses": (SUBCLASSES + "FileIO = next(c for c in classes if c.__name__ == 'FileIO')\n"
                              "FileIO('$canary', 'w').write(b'x')", F),
    "popen_via_subclasses": (SUBCLASSES + "Popen = next(c for c in classes if c.__name__ == 'Popen')\n"
                             "Popen(['rm', '-f', '$canary']).wait()", (F, E)),
    "builtins_escape_open": ("import fractions\nprint(fractions.__builtins__['open']('$canary').read())", F),
    "real_import_os_listdir": (IMP + "print(imp('os').listdir('$vault'))", F),
    # ---- processes: os.system / popen / subprocess / multiprocessing / pty / fork / exec / kill
    "os_import_system": ("import os\nos.system('rm -f $canary')", F),
    "os_escape_system": (OS + "os.system('rm -f $canary')", F),
    "wrap_close_globals_system": ("g = [c for c in ().__class__.__base__.__subclasses__() "
                                  "if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"
                                  "g['system']('rm -f $canary')", F),
    "os_escape_popen": (OS + "print(os.popen('cat $canary').read())", F),
    "subprocess_import": ("import subprocess\nsubprocess.run(['rm', '-f', '$canary'])", F),
    "subprocess_escape": (IMP + "imp('subprocess').run(['rm', '-f', '$canary'])", F),
    "posixsubprocess_escape": (IMP + "imp('_posixsubprocess')", F),
    "multiprocessing_import": ("import multiprocessing\nmultiprocessing.Process(target=print).start()", F),
    "pty_import": ("import pty\npty.spawn('/bin/sh')", F),
    "fork_bomb_import": ("import os\nwhile True:\n    os.fork()", F),
    "fork_bomb_escape": (OS + "while True:\n    os.fork()", F),
    "execv_escape": (OS + "os.execv('/bin/sh', ['sh', '-c', 'rm -f $canary'])", F),
    "posix_spawn_escape": (OS + "os.posix_spawn('/bin/rm', ['rm', '-f', '$canary'], {})", F),
    "kill_other_process": (OS + "os.kill($victim, 9)", F),
    # raw system calls through a ctypes function the worker already resolved: no audit event
    # is raised, the kernel filter (seccomp) has to stop them
    "raw_syscall_fork": (KG + "kg._syscall(57)\nprint('forked')", F),
    "raw_syscall_kill": (KG + "kg._syscall(62, $victim, 9)", F),
    "raw_syscall_unlink": (KG + "kg._syscall(87, b'$canary')", F),
    "raw_syscall_socket": (KG + "kg._syscall(41, 2, 1, 0)", F),
    # ---- network: sockets and urllib to the listener on 127.0.0.1
    "socket_import": ("import socket\ns = socket.create_connection(('127.0.0.1', $port))\ns.sendall(b'hi')", F),
    "socket_escape": (IMP + "s = imp('socket').create_connection(('127.0.0.1', $port))\ns.sendall(b'hi')", F),
    "urllib_import": ("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:$port/')", F),
    "http_client_escape": (IMP + "imp('http.client').HTTPConnection('127.0.0.1', $port).request('GET', '/')", F),
    "importlib_socket": (SYS + "socket = sys.modules['importlib'].import_module('socket')\n"
                               "socket.create_connection(('127.0.0.1', $port)).sendall(b'hi')", F),
    "ctypes_dlopen_socket": (SYS + "libc = sys.modules['ctypes'].CDLL(None)\nlibc.socket(2, 1, 0)", F),
    "ctypes_preresolved_libc": (KG + "print(kg._libc.system(b'rm -f $canary'))", F),
    # ---- time: loops, sleeps, handlers that try to ignore the timeout
    "infinite_loop": ("while True:\n    pass", T),
    "sleep_import": ("import time\ntime.sleep(100)", F),
    "sleep_escape": (SYS + "sys.modules['time'].sleep(100)", T),
    "select_sleep": (SYS + "sys.modules['select'].select([], [], [], 100)", T),
    "signal_import": ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass", F),
    "signals_ignored": (SYS + "signal = sys.modules['signal']\n"
                              "for s in (signal.SIGALRM, signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):\n"
                              "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass", T),
    "signal_handler_swallows": (SYS + "signal = sys.modules['signal']\n"
                                      "signal.signal(signal.SIGALRM, lambda *a: None)\nwhile True:\n    pass", T),
    "timer_cancelled": (SYS + "signal = sys.modules['signal']\nsignal.setitimer(signal.ITIMER_REAL, 0)\n"
                              "while True:\n    pass", T),
    "rlimit_raised": (SYS + "r = sys.modules['resource']\nr.setrlimit(r.RLIMIT_CPU, (-1, -1))\nwhile True:\n    pass", F),
    # ---- memory and recursion
    "memory_list": ("x = [0] * (10 ** 10)", M),
    # touches ~512 MiB before failing: seconds on a busy 2-core machine, hence its own timeout
    "memory_growth": ("blocks, n = [], 10 ** 6\nwhile True:\n    blocks.append(bytearray(n))\n    n *= 2", M, 4.0),
    "memory_string": ("s = 'a' * (2 ** 40)", M),
    "recursion": ("def f(n):\n    return f(n + 1)\nf(0)", E),
    "recursion_limit_lifted": (SYS + "sys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nf(0)", (E, M, T)),
    "recursion_in_repr": ("a = []\nfor _ in range(100000):\n    a = [a]\nprint(a)", E),
    # ---- output floods
    "output_flood": ("while True:\n    print('x' * 1000)", O),
    "output_single_huge": ("print('y' * 10 ** 7)", O),
    "output_flood_catching": ("while True:\n    try:\n        print('z' * 100)\n    except BaseException:\n        pass", O),
    # ---- introspection, pickle, marshal, ctypes, tampering, the audit hook itself
    "gc_get_objects": (SYS + "print(len(sys.modules['gc'].get_objects()))", F),
    "gc_get_referrers": (SYS + "gc = sys.modules['gc']\nprint(gc.get_referrers(sys.modules))", F),
    "pickle_reduce": (IMP + "imp('pickle').loads(b\"cos\\nsystem\\n(S'rm -f $canary'\\ntR.\")", F),
    "marshal_code_object": (IMP + "m = imp('marshal')\nexec(m.loads(m.dumps(compile(\"open('$canary', 'w')\", 'x', 'exec'))))", F),
    "ctypes_string_at": (SYS + "print(sys.modules['ctypes'].string_at(id(1), 8))", F),
    "ctypes_clear_audit_hooks": (SYS + "sys.modules['ctypes'].pythonapi._PySys_ClearAuditHooks()", F),
    "addaudithook": (SYS + "sys.addaudithook(lambda *a: None)\nprint(open('$canary').read())", F),
    "settrace": (SYS + "sys.settrace(lambda *a: None)", F),
    "current_frames": (SYS + "print(sys._current_frames())", F),
    "sys_import_modules": ("import sys\nsys.modules['math'] = None", F),
    "sys_modules_replaced": (SYS + "import math\nsys.modules['math'] = sys.modules['fractions']", F),
    "sys_modules_deleted": (SYS + "del sys.modules['random']", F),
    "builtins_replaced": ("import fractions\nfractions.__builtins__['abs'] = lambda x: 42", F),
    # error when threading is not loaded in the worker (KeyError: 'threading'): contained all the same
    "thread_acts_after_return": (SYS + "sys.modules['threading'].Thread(target=lambda: open('$canary', 'w'), "
                                       "daemon=True).start()", (F, E)),
    "thread_low_level": (SYS + "sys.modules['_thread'].start_new_thread(print, ('x',))", F),
    "breakpoint": ("breakpoint()", F),
}
SCIENTIFIC_HOSTILE = {
    "numpy_ctypeslib": ("import numpy\nnumpy.ctypeslib.ctypes.CDLL(None).system(b'rm -f $canary')", F),
    "numpy_load": ("import numpy\nprint(numpy.load('$canary'))", F),
    "numpy_fromfile": ("import numpy\nprint(numpy.fromfile('$canary', dtype='uint8'))", F),
    "numpy_memmap": ("import numpy\nnumpy.memmap('$canary', mode='r+')[0] = 0", F),
    "sympy_infinite": ("import sympy\nwhile True:\n    sympy.Integer(1)", T),
    "sympy_memory": ("import sympy\nx = [sympy.Integer(1)] * (10 ** 10)", M),
}


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    vault = tmp_path_factory.mktemp("vault")
    canary = vault / "canary.txt"
    canary.write_text("the canary sings\n")
    (vault / "other.txt").write_text("another file\n")
    listener = Listener()
    victim = subprocess.Popen(["sleep", "600"])
    run_python("print(0)")  # start the pools outside the timed part
    if importlib.util.find_spec("sympy"):
        run_python("import sympy")
    yield {"canary": str(canary), "vault": str(vault), "port": listener.port, "victim": victim.pid,
           "listener": listener, "victim_proc": victim}
    listener.close()
    victim.kill()
    victim.wait()


def state_of(targets):
    canary = targets["canary"]
    info = os.stat(canary)
    with open(canary) as f:
        content = f.read()
    return content, info.st_mode, info.st_mtime_ns, sorted(os.listdir(targets["vault"]))


def leftover_private_dirs():
    return [d for pool in sandbox._pools.values() for w in pool._idle
            for d in glob.glob(os.path.join(w.base_dir, "run-*"))]


def check_hostile(targets, case, benign, benign_output):
    code, expected, timeout = (*case, TIMEOUT)[:3]
    before = state_of(targets)
    program = string.Template(code).substitute(
        canary=targets["canary"], vault=targets["vault"], port=targets["port"], victim=targets["victim"])
    start = time.monotonic()
    result = run_python(program, timeout=timeout)
    wall = time.monotonic() - start
    assert result.status != "ok", result
    assert result.status in (expected if isinstance(expected, tuple) else (expected,)), result
    assert wall < timeout + 1.0, f"took {wall:.2f} s"
    assert "the canary sings" not in result.stdout + result.error
    assert state_of(targets) == before
    assert targets["listener"].connections == []
    assert targets["victim_proc"].poll() is None
    assert leftover_private_dirs() == []
    after = run_python(benign)
    assert (after.status, after.stdout) == ("ok", benign_output)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained(targets, name):
    check_hostile(targets, HOSTILE[name], "print(sum(k * k for k in range(10)))", "285\n")  # 0 + 1 + ... + 81


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None or importlib.util.find_spec("sympy") is None,
                    reason="numpy and sympy are not installed")
@pytest.mark.parametrize("name", list(SCIENTIFIC_HOSTILE))
def test_hostile_program_using_scientific_modules_is_contained(targets, name):
    check_hostile(targets, SCIENTIFIC_HOSTILE[name], "import sympy\nprint(sympy.Rational(1, 2) + sympy.Rational(1, 3))",
                  "5/6\n")  # 1/2 + 1/3 = 5/6


def test_the_corpus_is_large_and_covers_every_outcome():
    cases = {**HOSTILE, **SCIENTIFIC_HOSTILE}
    assert len(cases) >= 40
    outcomes = {s for case in cases.values() for s in (case[1] if isinstance(case[1], tuple) else (case[1],))}
    assert outcomes == {"forbidden", "timeout", "memory", "output_limit", "error"}


def test_the_whole_corpus_in_one_batch_leaves_benign_neighbours_intact(targets):
    """Hostile and benign programs interleaved in one run_many call: every benign one gets
    its exact answer, every hostile one is non-ok, whatever ran before it on its worker."""
    programs, expected = [], []
    for k, (code, *_) in enumerate(HOSTILE.values()):
        programs.append(string.Template(code).substitute(
            canary=targets["canary"], vault=targets["vault"], port=targets["port"], victim=targets["victim"]))
        expected.append(None)
        programs.append(f"print({k} * {k} + 1)")
        expected.append(f"{k * k + 1}\n")
    before = state_of(targets)
    results = sandbox.run_many(programs, timeout=2 * TIMEOUT)
    for result, want in zip(results, expected):
        if want is None:
            assert result.status != "ok", result
        else:
            assert (result.status, result.stdout) == ("ok", want)
    assert state_of(targets) == before
    assert targets["listener"].connections == []
    assert targets["victim_proc"].poll() is None
