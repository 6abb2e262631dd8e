"""The red team's escapes, one test per cause, each judged from outside the sandbox.

1. forged result frames (run time and status), 2. the previous program's data, 3. scheduling
calls on other processes, 4. SysV IPC, 5. inotify, 6. lone surrogates in the output; then the
OS-level layers (capabilities, namespaces) on their own, and the partly contained items.

Each test asserts that the harm did not happen, observed from this process: the host's nice
value and CPU affinity, its SysV IPC objects, a canary folder, a TCP listener, the session
budget against the wall clock. A contained attack may end in any non-ok status, or in ok
when the kernel refused the act with an error the program swallowed; the tests check the
effect, not one status. Several switch Python's layers off (``Job.disable``, tests only),
because a program can switch them off itself (test_python_layers_are_advisory).
"""
import ctypes
import glob
import hashlib
import json
import os
import secrets
import string
import subprocess
import sys
import threading
import time
import warnings

import pytest

import mathlm.sandbox as sandbox
from mathlm.sandbox import Session, run_sessions
from mathlm.sandbox.pool import Job
from sandbox_targets import Listener, run

KG = "import fractions\nsys = fractions.sys\nkg = sys.modules['kernel_guards']\nos = sys.modules['os']\n"
PYTHON_LAYERS = ("audit_hook",)
FORGE = KG + """
frame = sys.modules['protocol'].encode_result('ok', '', 'forged', $elapsed)
for fd in range(3, 20):
    try:
        os.write(fd, frame)
    except OSError:
        pass
"""
SLEEP = "sys.modules['select'].select([], [], [], $seconds)\n"


@pytest.fixture(scope="module")
def layers():
    return sandbox.sandbox_layers()


def sandbox_processes():
    """Pids of every worker, zygote and program process of this host's pools."""
    workers = {w.proc.pid for pool in sandbox._pools.values() for w in pool._idle}
    found, todo = set(), list(workers)
    while todo:
        pid = todo.pop()
        found.add(pid)
        for task in glob.glob(f"/proc/{pid}/task/*/children"):
            try:
                todo += [int(p) for p in open(task).read().split()]
            except OSError:
                pass
    return found


def zombies_among(pids):
    states = {}
    for pid in pids:
        try:
            states[pid] = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
        except OSError:
            pass
    return [pid for pid, state in states.items() if state == "Z"]


# ---------------------------------------------------------------------------- 1. forged frames

@pytest.mark.parametrize("forged", ["0.0", "float('nan')", "-1e9", "1e9", "float('inf')"])
def test_a_forged_run_time_does_not_evade_the_session_budget(forged):
    """Each block forges an ok frame with a made-up run time, then sleeps 0.6 s and exits.
    The budget of 1.5 s must still run out after at most three such blocks (worked out: the
    worker's clock charges >= 0.6 s each; 3 x 0.6 > 1.5), and every run time the host
    reports is finite and within the wall time it measured."""
    s = Session(timeout=1.0, total_timeout=1.5)
    block = string.Template(FORGE + SLEEP + "os._exit(0)").substitute(elapsed=forged, seconds=0.6)
    start = time.monotonic()
    texts = [s.run(block) for _ in range(4)]
    wall = time.monotonic() - start
    assert texts[-1] == "TimeoutError: the session's total time limit of 1.5 s is used up"
    assert 1.45 <= s.used_seconds <= wall
    assert wall < 1.5 + 4 * 0.5 + 1.0  # the budget, plus process overheads on a busy machine
    assert texts[0] == "forged"  # what it printed is its own business; its time is not


def test_a_forged_nan_does_not_break_the_next_batch():
    """After a session reported nan, a batch of it and honest sessions still gives every
    honest session its exact answer, and no worker is restarted."""
    liar = Session()
    liar.run(string.Template(FORGE + "os._exit(0)").substitute(elapsed="float('nan')"))
    workers = {w.proc.pid for w in sandbox._get_pool(False)._idle}
    honest = [Session() for _ in range(4)]
    outputs = run_sessions([liar] + honest, ["print(1)"] + [f"print({k} * {k})" for k in range(4)])
    assert outputs[1:] == ["0", "1", "4", "9"]  # the liar's replay forges again: its own business
    assert workers <= {w.proc.pid for w in sandbox._get_pool(False)._idle}  # none was replaced
    assert liar.used_seconds == liar.used_seconds and liar.used_seconds >= 0  # not nan


def test_a_forged_huge_run_time_does_not_stretch_the_next_call():
    """A block that claims 1e9 s would buy its replay 2e9 s; it sleeps 5 s only when
    replayed (its output is discarded then). The replay allowance comes from the worker's
    clock (twice ~0 s plus 1 s), so the next call ends within ~1.5 s plus overheads."""
    s = Session(timeout=0.5, total_timeout=30.0)
    s.run(string.Template(FORGE + "if sys.stdout.limit == 0:\n    " + SLEEP + "os._exit(0)").substitute(
        elapsed="1e9", seconds=5.0))
    start = time.monotonic()
    text = s.run("print(2)")
    assert time.monotonic() - start < 3.0
    assert text.startswith("TimeoutError: replaying the session's earlier blocks took over")


def test_every_program_process_is_reaped():
    """Forged frames, kills at the deadline, crashes: afterwards no process of the sandbox is
    a zombie (the zygote reaps each child before the worker answers)."""
    programs = [string.Template(FORGE + "os._exit(0)").substitute(elapsed="-1e9"),
                "while True:\n    pass", KG + "os.abort()", "print(1)"]
    sandbox.run_many(programs * 3, timeout=0.5)
    assert zombies_among(sandbox_processes()) == []


# ---------------------------------------------------------------------------- 2. the previous program

SCAN = KG + """
hashlib = fractions.__builtins__['__import__']('hashlib')
re = fractions.__builtins__['__import__']('re')
wanted = {'$secret_hash': 'secret', '$mark_hash': 'code mark'}
own = 'S' + format(0x0123456789ABCDEF ^ 0x5A5A5A5A5A5A5A5A, '016x')  # made here, at run time
wanted[hashlib.sha256(own.encode()).hexdigest()] = 'own marker'
pattern, found = re.compile(rb'[SM][0-9a-f]{16}'), set()
with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
    for line in maps:
        fields = line.split()
        if fields[1][0] != 'r' or (len(fields) > 5 and fields[5] in ('[vvar]', '[vsyscall]')):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except OSError:
            continue
        for match in pattern.finditer(data):
            found.add(wanted.get(hashlib.sha256(match.group()).hexdigest()))
print(sorted(found - {None}))
"""


def test_the_previous_programs_code_and_answer_are_not_in_memory():
    """Program A holds a mark in its code and prints a secret; program B, next on the same
    single worker, scans all of its readable memory (/proc/self/mem: the frames it could walk
    are in there too; Python's layers and Landlock off) for them. B knows them only by their
    SHA-256, so its own source cannot hold them. It finds its own marker (positive control:
    the scan works) and nothing of A."""
    secret, mark = "S" + secrets.token_hex(8), "M" + secrets.token_hex(8)
    sandbox.close_pool()
    first = sandbox.run_many([f"code_mark = '{mark[:5]}' + '{mark[5:]}'\nprint('{secret[:5]}' + '{secret[5:]}')"],
                             workers=1)[0]
    assert first.stdout == secret + "\n"
    scan = string.Template(SCAN).substitute(secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                                            mark_hash=hashlib.sha256(mark.encode()).hexdigest())
    found = sandbox._run_jobs([Job(scan, 30.0, 2048, 4096, disable=("audit_hook", "landlock"))], workers=1)[0]
    assert (found.status, found.stdout) == ("ok", "['own marker']\n"), found


# ---------------------------------------------------------------------------- 3. scheduling

SCHEDULING = KG + """
def attempt(action):
    try:
        action()
        return 'done'
    except OSError as exc:
        return type(exc).__name__
print(attempt(lambda: os.setpriority(os.PRIO_PROCESS, $target, 19)))
print(attempt(lambda: os.sched_setaffinity($target, {0})))
print(attempt(lambda: os.sched_setscheduler($target, os.SCHED_IDLE, os.sched_param(0))))
print('done' if kg._syscall(251, 1, $target, (3 << 13) | 7) == 0 else 'refused')  # ioprio_set(PROCESS, idle)
print(attempt(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))))
print(attempt(lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 10)))
"""


def scheduling_of(pid):
    """nice, CPU affinity, policy and I/O priority of ``pid``; None once it has exited."""
    if zombies_among([pid]):
        return None
    try:
        ioprio = ctypes.CDLL(None, use_errno=True).syscall(252, 1, pid)  # ioprio_get(PROCESS)
        return (os.getpriority(os.PRIO_PROCESS, pid), sorted(os.sched_getaffinity(pid)),
                os.sched_getscheduler(pid), ioprio)
    except ProcessLookupError:
        return None


@pytest.mark.parametrize("disable", [PYTHON_LAYERS + ("namespaces",), PYTHON_LAYERS + ("seccomp",)])
def test_scheduling_of_the_host_and_the_worker_is_unchanged(disable):
    """The program renices, re-pins, idles and I/O-idles the host (this process), puts itself
    on realtime scheduling and renices its parent. Without the namespaces the host's pid is
    reachable and seccomp alone must stop it; without seccomp the pid namespace must (the
    host's pid names nothing there), and a zygote that was reniced must not live on to pass
    it to the next program. Afterwards the host and every sandbox process still alive are as
    before, and a later program on the same worker starts at nice 0, normal policy."""
    sandbox.run_python("print(0)")
    watched = [os.getpid()] + sorted(sandbox_processes())
    before = {pid: scheduling_of(pid) for pid in watched}
    result = run(SCHEDULING, disable=disable, target=os.getpid())
    assert "done" not in result.stdout.splitlines()[:5], result
    after = {pid: scheduling_of(pid) for pid in watched}
    assert after[os.getpid()] == before[os.getpid()]
    assert {pid: v for pid, v in after.items() if v is not None} == {pid: before[pid] for pid in after
                                                                      if after[pid] is not None}
    for _ in range(3):  # whichever worker and zygote they land on
        later = run(KG + "print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))", disable=disable)
        assert later.stdout == f"0 {os.SCHED_OTHER}\n"


# ---------------------------------------------------------------------------- 4. SysV IPC

IPC_CREAT, IPC_RMID = 0o1000, 0


class HostIPC:
    """A shared-memory segment holding a secret and a message queue holding a message, made
    by this process with libc, as a host (a trainer, a data loader) might have them."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.shmat.restype = ctypes.c_void_p
        self.key = 0x6D61_0000 + secrets.randbelow(0xFFFF)
        self.shm = self.libc.shmget(self.key, 4096, IPC_CREAT | 0o600)
        self.msg = self.libc.msgget(self.key, IPC_CREAT | 0o600)
        assert self.shm >= 0 and self.msg >= 0, ctypes.get_errno()
        address = self.libc.shmat(self.shm, None, 0)
        ctypes.memmove(address, b"host secret", 11)
        self.libc.shmdt(ctypes.c_void_p(address))
        message = ctypes.create_string_buffer(b"\x01\x00\x00\x00\x00\x00\x00\x00hello", 13)
        assert self.libc.msgsnd(self.msg, message, 5, 0) == 0

    def intact(self) -> bool:
        return (self.libc.shmget(self.key, 0, 0) == self.shm and self.libc.msgget(self.key, 0) == self.msg
                and b"\n" + str(self.msg).encode() in b"\n" + b"\n".join(
                    line.split()[1] for line in open("/proc/sysvipc/msg", "rb").read().splitlines()[1:]))

    def close(self):
        self.libc.shmctl(self.shm, IPC_RMID, None)
        self.libc.msgctl(self.msg, IPC_RMID, None)


def sysv_objects():
    return {table: sorted(line.split()[1] for line in open(f"/proc/sysvipc/{table}").read().splitlines()[1:])
            for table in ("shm", "msg", "sem")}


IPC_ATTACK = KG + """
def attempt(action):
    try:
        return action()
    except OSError as exc:
        return type(exc).__name__
shm = kg._syscall(29, $key, 0, 0)                          # shmget(the host's key)
print('host segment', shm)
if shm >= 0:
    kg._libc.shmat.restype = kg.ctypes.c_void_p
    print(kg.ctypes.string_at(kg._libc.shmat(shm, None, 0), 11))
print('rmid queue', kg._syscall(71, kg._syscall(68, $key, 0, 0), 0, None))  # msgctl(msgget(key), IPC_RMID)
print('new segments', [kg._syscall(29, 0, 48 << 20, 0o1600) for _ in range(3)])  # IPC_PRIVATE | IPC_CREAT
print('new queue', kg._syscall(68, 0, 0o1600, 0))
"""


@pytest.mark.parametrize("disable", [PYTHON_LAYERS + ("landlock", "namespaces"),  # seccomp alone
                                     PYTHON_LAYERS + ("landlock", "seccomp")])  # the namespaces alone
def test_sysv_ipc_of_the_host_is_untouched_and_nothing_is_left(layers, disable):
    if "seccomp" in disable and "ipc" not in layers["namespaces"]:
        pytest.skip("no IPC namespace on this machine")
    host = HostIPC()
    try:
        before = sysv_objects()
        result = run(IPC_ATTACK, disable=disable, memory_mb=256, key=host.key)
        assert "host secret" not in result.stdout, result
        assert host.intact()
        assert sysv_objects() == before  # nothing new left in the host's namespace
        # and nothing left for the next program on the worker, in its own namespace either
        after = run(KG + "print([open('/proc/sysvipc/' + t).read().count(chr(10)) for t in ('shm', 'msg', 'sem')])",
                    disable=disable)
        if "namespaces" not in disable:  # the zygote's namespace (seccomp alone: the host's, above)
            assert after.stdout == "[1, 1, 1]\n", after  # header lines only
    finally:
        host.close()


# ---------------------------------------------------------------------------- 5. inotify

INOTIFY = KG + """
fd = kg._syscall(294, 0)                                    # inotify_init1
print('watch', kg._syscall(254, fd, b'$vault', 0x100))      # IN_CREATE
r = sys.modules['select'].select([fd], [], [], 1.5)[0]
print(os.read(fd, 4096) if r else b'nothing')
"""


@pytest.mark.parametrize("disable", [PYTHON_LAYERS + ("landlock", "namespaces"),
                                     PYTHON_LAYERS + ("landlock", "seccomp")])
def test_inotify_learns_no_file_name_outside(tmp_path, layers, disable):
    """The program watches a folder outside the sandbox while this process creates a file
    there; the file's name must not reach the program's output."""
    if "seccomp" in disable and not layers["private_root"]:
        pytest.skip("no private root on this machine")
    name = "secret-" + secrets.token_hex(6)
    box = {}
    worker = threading.Thread(target=lambda: box.update(r=run(INOTIFY, disable=disable, timeout=3.0,
                                                              vault=str(tmp_path))))
    worker.start()
    time.sleep(0.7)
    (tmp_path / name).write_text("x")
    worker.join(10)
    assert name not in box["r"].stdout, box["r"]
    assert sorted(os.listdir(tmp_path)) == [name]


# ---------------------------------------------------------------------------- 6. lone surrogates

@pytest.mark.parametrize("code", ["print(chr(0xD800))", "print('a' + chr(0xDFFF) + 'b')",
                                  FORGE.replace("'forged'", "'x' + chr(0xDC80)") + "os._exit(0)"])
def test_output_reaches_the_host_as_valid_text(code):
    """Lone surrogates, printed or forged into a frame, arrive replaced: the text encodes as
    strict UTF-8, which is what a tokenizer needs (the real one is checked in
    test_a_surrogate_tool_output_flows_through_generate)."""
    result = sandbox.run_python(string.Template(code).substitute(elapsed=0.0))
    result.stdout.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
    result.output_text.encode("utf-8")
    assert "\ufffd" in result.stdout


class PiecesOverSentencepiece:
    """A test tokenizer: the script's pieces get ids of their own (so a scripted model can
    write them); any other text goes through a real mathlm Tokenizer (sentencepiece, byte
    fallback), so text that it cannot encode fails here as it would in sampling."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def __init__(self, pieces, real):
        self.pieces = ["<pad>", "<bos>", "<eos>"] + list(pieces)
        self.index = {p: i for i, p in enumerate(self.pieces)}
        self.real, self.base = real, len(self.pieces)
        self.longest_first = sorted(pieces, key=len, reverse=True)

    def __len__(self):
        return self.base + len(self.real)

    def encode(self, text, bos=True):
        ids, plain, i = ([self.bos_id] if bos else []), "", 0
        while i < len(text):
            piece = next((p for p in self.longest_first if text.startswith(p, i)), None)
            if piece is None:
                plain, i = plain + text[i], i + 1
                continue
            ids += self._real(plain) + [self.index[piece]]
            plain, i = "", i + len(piece)
        return ids + self._real(plain)

    def _real(self, text):
        return [self.base + t for t in self.real.encode(text, bos=False)] if text else []

    def decode(self, ids):
        out, run = [], []
        for t in list(ids) + [None]:
            if t is not None and t >= self.base:
                run.append(t - self.base)
                continue
            if run:
                out.append(self.real.decode(run))
                run = []
            if t is not None and t > 2:
                out.append(self.pieces[t])
        return "".join(out)


def test_a_surrogate_tool_output_flows_through_generate():
    """A scripted model writes ```python\\nprint(chr(0xD800))\\n```; the real sandbox runs it
    and its output block goes through a real sentencepiece tokenizer inside generate(). The
    tokenizer refuses a lone surrogate (checked first: the crash this guards against is
    real); the sequence must finish normally with the replacement text in its output."""
    torch = pytest.importorskip("torch")
    from mathlm import Tokenizer
    from mathlm.sampling import generate
    from sampling_references import ScriptedModel, script, tiny_config

    real = Tokenizer.train(["x = 1\nprint(x)\n"] * 20, vocab_size=300)
    with pytest.raises(Exception):
        real.encode("\ud800", bos=False)
    tok = PiecesOverSentencepiece(["```python\n", "print(chr(0xD800))", "\n```", "\n```output\n", "\n```\n",
                                   "Done.", "Q1"], real)
    torch.manual_seed(0)
    model = ScriptedModel(tiny_config(vocab_size=len(tok)), script(
        tok, ["Q1", "```python\n", "print(chr(0xD800))", "\n```"], ["\n```\n", "Done.", "<eos>"])).eval()
    (c,), = generate(model, [[tok.index["Q1"]]], 60, temperature=0, tokenizer=tok,
                     tools=lambda: Session(timeout=5.0))
    assert c.finish_reason == "eos" and c.tool_calls == 1
    assert "```output\n\ufffd" in c.text and c.text.endswith("\n```\nDone."), c.text


# ---------------------------------------------------------------------------- OS-level layers

def test_the_program_has_no_capabilities_and_no_new_privileges():
    status = run(KG + "print(open('/proc/self/status').read())", disable=PYTHON_LAYERS + ("landlock",)).stdout
    fields = dict(line.split(":\t") for line in status.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[name], 16) == 0, (name, fields[name])
    assert fields["NoNewPrivs"] == "1"


def zygote_pids():
    """The namespaced zygote of each worker: the process whose pid namespace differs."""
    own = os.readlink("/proc/self/ns/pid")
    found = []
    for pid in sandbox_processes():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != own:
                found.append(pid)
        except OSError:
            pass
    return found


def test_namespaces_are_the_sandboxs_own(layers):
    """Seen from outside: the namespaced zygotes are in other ipc, net, pid and mount
    namespaces than this process, and made once per worker (the same after many programs)."""
    if layers["namespaces"] != ["ipc", "net", "pid", "mount"]:
        pytest.skip(f"this machine gives only {layers['namespaces']}")
    sandbox.run_many(["print(1)"] * 4)
    zygotes = zygote_pids()
    assert zygotes
    for pid in zygotes:
        for ns in ("ipc", "net", "pid", "mnt"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    sandbox.run_many(["print(1)"] * 20)
    assert zygote_pids() == zygotes


def test_namespaces_alone_keep_the_canary_and_the_listener(tmp_path, layers):
    """Every other layer off: the private root has no canary (not even for os.stat), and the
    network namespace has no route to this machine's listener."""
    if not layers["private_root"] or "net" not in layers["namespaces"]:
        pytest.skip("no private root or network namespace on this machine")
    canary = tmp_path / "canary.txt"
    canary.write_text("the canary sings\n")
    server = Listener()
    try:
        code = KG + """
def attempt(action):
    try:
        return action()
    except OSError as exc:
        return type(exc).__name__
print(attempt(lambda: open('$canary').read()))
print(attempt(lambda: os.stat('$canary').st_size))
print(attempt(lambda: os.remove('$canary')))
print(attempt(lambda: sys.modules['socket'].create_connection(('127.0.0.1', $port), timeout=1).sendall(b'x')))
print(sorted(os.listdir('/')))
"""
        result = run(code, disable=("audit_hook", "landlock", "seccomp", "rlimits"), canary=str(canary),
                     port=server.port)
        lines = result.stdout.splitlines()
        assert lines[:3] == ["FileNotFoundError"] * 3, result
        assert lines[3] != "None", result  # None: sendall went through
        tops = {root.split("/")[1] for root in sandbox._get_pool(False).info["read_roots"]}
        assert set(eval(lines[4])) == {"dev", "proc", "tmp"} | tops  # the library and nothing else
        time.sleep(0.2)
        assert server.connections == []
        assert canary.read_text() == "the canary sings\n"
    finally:
        server.close()


# ---------------------------------------------------------------------------- partly contained

def test_a_plain_import_call_is_held_to_the_allowlist():
    """``__import__('os')`` is a call, not an import statement: it is held to the allowlist
    all the same (it used to slip through)."""
    assert run("__import__('os')").error == "PermissionError: the sandbox forbids import of 'os'"
    assert run("exec(\"__import__('socket')\")").error == "PermissionError: the sandbox forbids import of 'socket'"
    assert run("import datetime\nprint(datetime.date(2024, 3, 1).strftime('%Y'))").stdout == "2024\n"


def test_a_disarmed_audit_hook_leaves_the_kernel_layers(tmp_path):
    """Python's layers are switched off here as a program can do it itself; with the kernel
    layers on, writing and reading outside still fail, and the canary folder is unchanged."""
    canary = tmp_path / "canary.txt"
    canary.write_text("the canary sings\n")
    code = KG + """
for action in (lambda: open('$canary').read(), lambda: open('$folder/new', 'w'), lambda: os.listdir('$folder')):
    try:
        print(action())
    except OSError as exc:
        print(type(exc).__name__)
"""
    result = run(code, disable=PYTHON_LAYERS, canary=str(canary), folder=str(tmp_path))
    assert "the canary sings" not in result.stdout
    assert "canary.txt" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["canary.txt"] and canary.read_text() == "the canary sings\n"


# ---------------------------------------------------------------------------- machines without namespaces

def test_a_worker_without_namespaces_falls_back_to_the_other_layers(tmp_path):
    """A kernel that refuses unshare (an unprivileged container): the worker starts, reports
    no namespaces, and its programs still run and are still contained (Landlock, seccomp)."""
    canary = tmp_path / "canary.txt"
    canary.write_text("the canary sings\n")
    folder = os.path.dirname(sandbox.__file__)
    script = f"""
import json, os, sys
sys.path.insert(0, {folder!r})
import kernel_guards, worker
def refuse(flags):
    raise OSError(1, "unshare: Operation not permitted")
kernel_guards.unshare = refuse
os.chdir({str(tmp_path)!r})
w = worker.Worker({{"sys_path": sys.path[1:], "scientific": False}})
print(json.dumps(w.layers))
for code in ["print(6 * 7)", "import random\\nprint(random._os.listdir({str(tmp_path)!r}))"]:
    job = {{"code": code, "timeout": 2.0, "memory_mb": 256, "max_output": 100, "replay_timeout": 0.0}}
    print(json.dumps(w.run(job)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    layers_seen = json.loads(lines[0])
    assert layers_seen["namespaces"] == [] and layers_seen["private_root"] is False
    assert layers_seen["capabilities_dropped"] is True
    answers = [json.loads(line) for line in lines[1:]]
    assert (answers[0]["status"], answers[0]["stdout"]) == ("ok", "42\n")
    assert answers[1]["status"] == "forbidden" and "canary" not in answers[1]["stdout"]
    assert canary.read_text() == "the canary sings\n"


def test_missing_layers_are_reported_once_per_process(monkeypatch):
    from mathlm.sandbox import pool

    monkeypatch.setattr(pool, "_reported_missing", set())
    without = {"landlock": True, "seccomp": True, "capabilities_dropped": True, "private_root": False,
               "namespaces": ["ipc"]}
    with pytest.warns(RuntimeWarning, match=r"does not allow private_root, net namespace, pid namespace, "
                                            r"mount namespace; programs run with the other layers only"):
        pool.report_missing_layers(without)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.report_missing_layers(without)  # said already: silent


# ---------------------------------------------------------------------------- the seccomp program itself

def run_bpf(program: bytes, nr: int, arch: int, args: tuple = (0,) * 6) -> int:
    """A classic-BPF interpreter for the opcodes the filter uses, over a seccomp_data record
    (nr, arch, instruction pointer, six 64-bit arguments, little endian)."""
    import struct

    data = struct.pack("=iIQ6Q", nr, arch, 0, *args)
    code = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:  # LD W ABS
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif op in (0x15, 0x35, 0x45):  # JEQ, JGE, JSET with a constant
            taken = acc == k if op == 0x15 else acc >= k if op == 0x35 else bool(acc & k)
            pc += 1 + (jt if taken else jf)
        elif op == 0x06:  # RET
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {op:#x}")


def test_the_seccomp_program_decides_every_call_number_as_its_table_says():
    """The binary search over call-number runs against the plain rule, for every number up
    to 600: kill exactly the denied ones; open/openat only without write flags; prlimit64
    only with a NULL new limit; any other ABI (i386, x32) killed."""
    from mathlm.sandbox import kernel_guards as kg

    program = kg.seccomp_filter_x86_64()
    denied = set(kg._X86_64_DENIED.values())
    allow, kill = kg.SECCOMP_RET_ALLOW, kg.SECCOMP_RET_KILL_PROCESS
    for nr in range(600):
        expected = kill if nr in denied else allow
        assert run_bpf(program, nr, kg.AUDIT_ARCH_X86_64) == expected, nr
        assert run_bpf(program, nr, 0x40000003) == kill  # AUDIT_ARCH_I386
        assert run_bpf(program, nr | 0x40000000, kg.AUDIT_ARCH_X86_64) == kill  # x32
    for nr, flags_at in ((2, 1), (257, 2)):  # open(path, flags), openat(dirfd, path, flags)
        for flags, expected in ((os.O_RDONLY, allow), (os.O_RDONLY | os.O_CLOEXEC, allow), (os.O_WRONLY, kill),
                                (os.O_RDWR, kill), (os.O_CREAT, kill), (os.O_TRUNC, kill), (os.O_APPEND, kill)):
            args = tuple(flags if i == flags_at else 0 for i in range(6))
            assert run_bpf(program, nr, kg.AUDIT_ARCH_X86_64, args) == expected, (nr, flags)
    assert run_bpf(program, 302, kg.AUDIT_ARCH_X86_64, (0, 7, 0, 1234, 0, 0)) == allow  # read a limit
    assert run_bpf(program, 302, kg.AUDIT_ARCH_X86_64, (0, 7, 1234, 0, 0, 0)) == kill  # set one
    assert run_bpf(program, 302, kg.AUDIT_ARCH_X86_64, (0, 7, 1 << 40, 0, 0, 0)) == kill  # high half only
