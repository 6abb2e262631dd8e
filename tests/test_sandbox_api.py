"""mathlm.sandbox: results of benign programs, error reporting, bad input, the worker pool.

Expected outputs are worked out by hand in each case's comment, or computed by plain CPython
in this process from the same (trusted) source: the reference is Python itself, the thing
under test is the sandbox around it.
"""
import contextlib
import importlib.util
import io
import os
import signal
import threading
import time

import pytest

import mathlm.sandbox as sandbox
from mathlm.sandbox import ExecResult, run_many, run_python
from mathlm.sandbox import pool as sandbox_pool

HAS_SYMPY = importlib.util.find_spec("sympy") is not None
HAS_NUMPY = importlib.util.find_spec("numpy") is not None

BENIGN = {
    # 1/2 + 1/3 + 1/6 = 1
    "fractions": ("from fractions import Fraction as F\nprint(F(1, 2) + F(1, 3) + F(1, 6))", "1\n"),
    # H_4 = 1 + 1/2 + 1/3 + 1/4 = 25/12
    "harmonic": ("from fractions import Fraction\nprint(sum(Fraction(1, k) for k in range(1, 5)))", "25/12\n"),
    # squares of 1..5: 1 4 9 16 25
    "comprehension": ("print([k * k for k in range(1, 6)])", "[1, 4, 9, 16, 25]\n"),
    # 1 + 2 + ... + 100 = 5050
    "loop": ("total = 0\nfor k in range(1, 101):\n    total += k\nprint(total)", "5050\n"),
    # C(5, 2) = 10 pairs
    "itertools": ("import itertools\nprint(len(list(itertools.combinations(range(5), 2))))", "10\n"),
    # C(10, 3) = 120, gcd(12, 18) = 6, lcm(4, 6) = 12
    "math": ("import math\nprint(math.comb(10, 3), math.gcd(12, 18), math.lcm(4, 6))", "120 6 12\n"),
    # 1/8 = 0.125 exactly
    "decimal": ("from decimal import Decimal\nprint(Decimal(1) / Decimal(8))", "0.125\n"),
    # mean of 2, 4, 9 = 5; median 4
    "statistics": ("import statistics\nprint(statistics.mean([2, 4, 9]), statistics.median([2, 4, 9]))", "5 4\n"),
    # letters of 'banana': a x3, n x2, b x1
    "collections": ("from collections import Counter\nprint(Counter('banana').most_common(2))",
                    "[('a', 3), ('n', 2)]\n"),
    # digits in 'x12y345': 12 and 345
    "re": ("import re\nprint(re.findall(r'\\d+', 'x12y345'))", "['12', '345']\n"),
    # a function and a class
    "def": ("def f(n):\n    return 1 if n < 2 else n * f(n - 1)\nprint(f(6))", "720\n"),  # 6! = 720
    "class": ("class P:\n    def __init__(s, x): s.x = x\n    def __add__(s, o): return P(s.x + o.x)\n"
              "print((P(2) + P(5)).x)", "7\n"),
    # __name__ is __main__ for the usual guard
    "main_guard": ("def main():\n    print('run')\nif __name__ == '__main__':\n    main()", "run\n"),
    # 2**100 = 1267650600228229401496703205376
    "bigint": ("print(2 ** 100)", "1267650600228229401496703205376\n"),
    "heapq": ("import heapq\nprint(heapq.nsmallest(2, [5, 1, 4, 2]))", "[1, 2]\n"),
    "nothing": ("x = 1", ""),
    "unicode": ("print('π ≈', round(3.14159, 2))", "π ≈ 3.14\n"),
    "exit_zero": ("print('a')\nexit()\nprint('b')", "a\n"),
    "namedtuple": ("import collections\nP = collections.namedtuple('P', 'x y')\nprint(P(1, 2))", "P(x=1, y=2)\n"),
    "dataclass": ("import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\n    y: int = 2\nprint(P(1))",
                  "P(x=1, y=2)\n"),
    # a warning goes to stderr, which the sandbox discards
    "warnings": ("import warnings\nwarnings.warn('careful')\nprint('after')", "after\n"),
    # an exception in __del__ is reported through sys.unraisablehook, not raised
    "del_raises": ("class A:\n    def __del__(self):\n        raise ValueError('x')\na = A()\ndel a\nprint('on')",
                   "on\n"),
    # datetime.strptime imports _strptime from C, through the program's own __import__
    "strptime": ("import datetime\nprint(datetime.datetime.strptime('2024-03-05', '%Y-%m-%d').strftime('%j'))",
                 "065\n"),  # 31 + 29 + 5 = day 65 of a leap year
}
SYMPY = {
    # x^2 - 5x + 6 = (x - 2)(x - 3)
    "solve": ("import sympy as sp\nx = sp.Symbol('x')\nprint(sp.solve(x**2 - 5*x + 6, x))", "[2, 3]\n"),
    # 360 = 2^3 * 3^2 * 5
    "factorint": ("from sympy import factorint\nprint(factorint(360))", "{2: 3, 3: 2, 5: 1}\n"),
    # integral of x^2 from 0 to 3 = 9
    "integrate": ("from sympy import symbols, integrate\nx = symbols('x')\nprint(integrate(x**2, (x, 0, 3)))", "9\n"),
    # 1/3 + 1/6 = 1/2
    "rational": ("from sympy import Rational\nprint(Rational(1, 3) + Rational(1, 6))", "1/2\n"),
    # det [[1, 2], [3, 4]] = -2
    "matrix": ("from sympy import Matrix\nprint(Matrix([[1, 2], [3, 4]]).det())", "-2\n"),
    # lambdify builds its function with exec and imports numpy.testing (and socket) lazily
    "lambdify": ("import sympy as sp\nx = sp.Symbol('x')\nf = sp.lambdify(x, x**2 + 1)\nprint(f(3))", "10\n"),
    "sympify": ("import sympy as sp\nprint(sp.sympify('2*x + 3*y - x'))", "x + 3*y\n"),
    # a lazily imported corner of sympy: the 100th prime is 541
    "prime": ("from sympy import prime\nprint(prime(100))", "541\n"),
}
NUMPY = {
    # det [[2, 1], [1, 3]] = 5
    "det": ("import numpy as np\nprint(round(float(np.linalg.det(np.array([[2., 1.], [1., 3.]]))), 6))", "5.0\n"),
    # 0 + 1 + ... + 9 = 45
    "sum": ("import numpy as np\nprint(int(np.arange(10).sum()))", "45\n"),
    # 1/0 is inf with a RuntimeWarning (to the discarded stderr)
    "divide_by_zero": ("import numpy as np\nprint(np.array([1.0]) / np.array([0.0]))", "[inf]\n"),
    "unique": ("import numpy as np\nprint(np.unique([3, 1, 2, 3, 1]))", "[1 2 3]\n"),
}


@pytest.fixture(scope="module", autouse=True)
def warm_pool():
    run_many(["print(0)", "import sympy" if HAS_SYMPY else "print(0)"])


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_program_prints_the_right_answer(name):
    code, expected = BENIGN[name]
    result = run_python(code)
    assert result == ExecResult("ok", expected, "", result.elapsed), result
    assert result.ok and 0 <= result.elapsed < 5


@pytest.mark.skipif(not HAS_SYMPY, reason="sympy not installed")
@pytest.mark.parametrize("name", sorted(SYMPY))
def test_sympy_program_prints_the_right_answer(name):
    code, expected = SYMPY[name]
    result = run_python(code)
    assert (result.status, result.stdout, result.error) == ("ok", expected, ""), result


@pytest.mark.skipif(not HAS_NUMPY, reason="numpy not installed")
@pytest.mark.parametrize("name", sorted(NUMPY))
def test_numpy_program_prints_the_right_answer(name):
    code, expected = NUMPY[name]
    result = run_python(code)
    assert (result.status, result.stdout, result.error) == ("ok", expected, ""), result


def test_programs_naming_a_scientific_module_go_to_the_scientific_workers():
    """The routing reads the text: a program that names none of sympy/numpy/mpmath runs on a
    worker that has none of them (cheaper forks); one that hides its import is refused."""
    probe = "import fractions\nprint(sorted(m for m in fractions.sys.modules if m in ('num' + 'py', 'mp' + 'math')))"
    plain = run_python(probe)
    scientific = run_python(probe + "  # sympy")
    assert (plain.stdout, scientific.stdout) == ("[]\n", "['mpmath', 'numpy']\n")
    hidden = run_python("sp = __import__('sym' + 'py')\nprint(sp.Rational(1, 2))", timeout=30)
    assert hidden.status == "forbidden"


def test_run_many_matches_plain_python_in_order():
    """200 generated PoT programs, a few failing ones mixed in: the sandbox prints exactly
    what plain CPython prints for each, in input order."""
    codes = []
    for k in range(200):
        if k % 37 == 5:
            codes.append(f"print({k} // 0)")
        else:
            codes.append(f"from fractions import Fraction\nimport math\n"
                         f"print(sum(Fraction(1, j) for j in range(1, {k % 17 + 2})), math.comb({k % 20 + 5}, 3))")
    results = run_many(codes)
    assert len(results) == len(codes)
    for code, result in zip(codes, results):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, {})
        except ZeroDivisionError:
            assert (result.status, result.error) == ("error", "ZeroDivisionError: integer division or modulo by zero")
        else:
            assert (result.status, result.stdout) == ("ok", out.getvalue()), code


@pytest.mark.parametrize("code, error", [
    ("print(1 / 0)", "ZeroDivisionError: division by zero"),
    ("print(undefined_name)", "NameError: name 'undefined_name' is not defined"),
    ("def f():\n    return g()\ndef g():\n    return [][1]\nf()", "IndexError: list index out of range"),
    ("raise ValueError('bad value 7')", "ValueError: bad value 7"),
    ("x = (", "SyntaxError: '(' was never closed (line 1)"),
    ("if True:\nprint(1)", "IndentationError: expected an indented block after 'if' statement on line 1 (line 2)"),
    ("raise SystemExit(3)", "SystemExit: 3"),
    ("input()", "EOFError: EOF when reading a line"),
    ("import math\nmath.sqrt(-1)", "ValueError: math domain error"),
    ("def f(n):\n    return f(n + 1)\nf(0)", "RecursionError: maximum recursion depth exceeded"),
])
def test_error_is_the_last_traceback_line_without_sandbox_frames(code, error):
    result = run_python(code)
    assert result.status == "error", result
    assert result.error == error
    assert "worker" not in result.error and "File" not in result.error


def test_output_printed_before_an_error_is_kept_and_output_text_joins_them():
    result = run_python("print('step 1')\nprint(1 / 0)")
    assert (result.status, result.stdout) == ("error", "step 1\n")
    assert result.output_text == "step 1\nZeroDivisionError: division by zero"
    assert run_python("print(42)").output_text == "42"
    assert run_python("print(1/0)").output_text == "ZeroDivisionError: division by zero"
    assert ExecResult("error", "no newline", "E: x", 0.0).output_text == "no newline\nE: x"


def test_output_before_a_timeout_or_memory_error_is_kept():
    slow = run_python("print('started')\nwhile True:\n    pass", timeout=0.5)
    assert (slow.status, slow.stdout) == ("timeout", "started\n")
    assert slow.output_text == "started\nTimeoutError: time limit of 0.5 s exceeded"
    big = run_python("print('allocating')\nx = bytearray(2 ** 40)")
    assert (big.status, big.stdout) == ("memory", "allocating\n")
    assert big.error == "MemoryError: memory limit of 512 MiB exceeded"


def test_empty_batch():
    assert run_many([]) == []


def test_null_bytes_and_long_programs_are_error_results():
    assert run_python("print(1)\0").error.startswith("SyntaxError: source code string cannot contain null bytes")
    too_long = "x = 1\n" * (sandbox.MAX_CODE_CHARS // 6 + 1)
    result = run_python(too_long)
    assert result == ExecResult("error", "", f"ValueError: the program has {len(too_long)} characters, "
                                              f"over the limit of {sandbox.MAX_CODE_CHARS}", 0.0)
    assert run_many([too_long, "print(2)"])[1].stdout == "2\n"


@pytest.mark.parametrize("call, message", [
    (lambda: run_python(b"print(1)"), "code must be a str of Python source, got bytes"),
    (lambda: run_python(None), "code must be a str of Python source, got NoneType"),
    (lambda: run_many(["print(1)", 7]), "codes[1] must be a str of Python source, got int"),
    (lambda: run_many("print(1)"), "codes must be a sequence of programs, got a single str"),
    (lambda: run_python("1", timeout=0), "timeout (0) must be a number of seconds in (0, 3600]"),
    (lambda: run_python("1", timeout=float("nan")), "timeout (nan) must be a number of seconds"),
    (lambda: run_python("1", timeout="5"), "timeout ('5') must be a number of seconds"),
    (lambda: run_python("1", memory_mb=4), "memory_mb (4) must be an integer number of MiB in [16,"),
    (lambda: run_python("1", memory_mb=256.0), "memory_mb (256.0) must be an integer"),
    (lambda: run_python("1", max_output=-1), "max_output (-1) must be a non-negative integer"),
    (lambda: run_many(["1"], workers=0), "workers (0) must be None or an integer in [1, 256]"),
])
def test_bad_arguments_raise_value_errors_naming_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_max_output_cuts_stdout_at_exactly_the_limit():
    result = run_python("print('a' * 30)\nprint('b' * 30)", max_output=40)
    assert result.status == "output_limit"
    assert result.stdout == "a" * 30 + "\n" + "b" * 9
    assert result.error == "OutputLimitError: output exceeds the limit of 40 characters"
    assert run_python("print('x' * 39)", max_output=40).status == "ok"  # 39 + newline fits


def test_programs_share_nothing():
    """Globals, module attributes and the random state of one program are not seen by the
    next, on the same worker (workers=1)."""
    first, second = run_many([
        "import math, random\nsecret = 1\nmath.pi = 3\nrandom.random()\nprint(random.random())",
        "import math, random\nprint('secret' in globals(), math.pi, random.random())",
    ], workers=1)
    # plain CPython: random.Random(0) draws 0.8444218515250481, then 0.7579544029403025
    assert first.stdout == "0.7579544029403025\n"
    assert second.stdout == "False 3.141592653589793 0.8444218515250481\n"


def test_random_starts_from_seed_zero_every_time():
    import random

    expected = [random.Random(0).randint(1, 10**9) for _ in range(1)]
    results = run_many(["import random\nprint(random.randint(1, 10**9))"] * 6)
    assert {r.stdout for r in results} == {f"{expected[0]}\n"}


def test_elapsed_measures_the_program():
    fast = run_python("x = 1")
    slow = run_python("total = 0\nfor k in range(3_000_000):\n    total += k\nprint(total)")
    assert slow.stdout == f"{sum(range(3_000_000))}\n"
    assert 0 <= fast.elapsed < slow.elapsed


def test_pool_is_reused_across_calls():
    run_many(["print(1)"] * 4)
    pool = sandbox._get_pool(False)
    pids = {w.proc.pid for w in pool._idle}
    run_many(["print(2)"] * 4)
    assert pids and {w.proc.pid for w in pool._idle} == pids


def test_concurrent_callers_get_their_own_results():
    results = {}

    def work(tag):
        results[tag] = run_many([f"print({tag} * {k})" for k in range(30)])

    threads = [threading.Thread(target=work, args=(t,)) for t in (3, 7, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag, res in results.items():
        assert [r.stdout for r in res] == [f"{tag * k}\n" for k in range(30)]


def test_threads_with_one_program_each_run_in_parallel():
    """The sampling engine runs one session per sequence on a thread pool: single programs
    from several threads use up to `workers` workers at once, not one after the other."""
    sandbox.close_pool()
    wait = "import fractions\nfractions.sys.modules['select'].select([], [], [], 0.6)\nprint('done')"

    def two_threads():
        results, start = [], time.monotonic()
        threads = [threading.Thread(target=lambda: results.append(run_python(wait))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.stdout for r in results] == ["done\n"] * 2
        return time.monotonic() - start

    run_python("print(0)")
    assert sandbox._get_pool(False)._size == 1
    two_threads()  # the second thread starts a second worker instead of waiting for the first
    assert sandbox._get_pool(False)._size == 2
    assert two_threads() < 1.1  # 0.6 s each, side by side


def _idle_worker_pids():
    return [w.proc.pid for w in sandbox._get_pool(False)._idle]


def test_a_killed_idle_worker_is_replaced():
    run_many(["print(1)"] * 2, workers=2)
    for pid in _idle_worker_pids():
        os.killpg(pid, signal.SIGKILL)
    time.sleep(0.1)
    results = run_many([f"print({k})" for k in range(10)], workers=2)
    assert [r.stdout for r in results] == [f"{k}\n" for k in range(10)]


def test_a_worker_killed_mid_job_is_replaced_and_the_job_retried():
    """The worker dies under a running job (not the job's fault): the job runs again on a
    fresh worker and gets its true result; the other jobs are unaffected."""
    run_many(["print(1)"], workers=1)
    victim = _idle_worker_pids()[0]
    killer = threading.Timer(0.3, os.killpg, (victim, signal.SIGKILL))
    killer.start()
    # ~1.5 s of work on an idle core (4M iterations took 0.27 s: the kill at 0.3 s then came too late)
    slow = "total = 0\nfor k in range(24_000_000):\n    total += k\nprint(total)"
    results = run_many([slow, "print('next')"], workers=1, timeout=20)
    killer.join()
    assert [r.stdout for r in results] == [f"{sum(range(24_000_000))}\n", "next\n"]
    assert victim not in _idle_worker_pids()


def test_a_hung_worker_is_killed_and_replaced(monkeypatch):
    """A worker that stops answering (SIGSTOP) is killed at the job's deadline plus the host
    grace; the job is a timeout, later jobs run on a fresh worker."""
    monkeypatch.setattr(sandbox_pool, "HOST_GRACE", 0.5)
    run_many(["print(1)"], workers=1)
    victim = _idle_worker_pids()[0]
    os.kill(victim, signal.SIGSTOP)
    start = time.monotonic()
    hung, after = run_many(["print('never')", "print('after')"], workers=1, timeout=0.5)
    assert time.monotonic() - start < 4.0
    assert (hung.status, hung.error) == ("timeout", "TimeoutError: time limit of 0.5 s exceeded")
    assert after.stdout == "after\n"
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)


def test_close_pool_stops_workers_and_removes_their_directories():
    run_many(["print(1)"] * 2, workers=2)
    workers = list(sandbox._get_pool(False)._idle)
    sandbox.close_pool()
    for w in workers:
        assert w.proc.poll() is not None
        assert not os.path.exists(w.base_dir)
    assert run_python("print('again')").stdout == "again\n"  # a new pool starts on demand


def test_workers_do_not_outlive_the_host_process(tmp_path):
    """A host that exits (normally) closes its pool: no worker process or directory remains."""
    import subprocess
    import sys

    script = ("import mathlm.sandbox as s\nprint(s.run_python('print(5)').stdout.strip())\n"
              "print(*[w.proc.pid for w in s._get_pool(False)._idle])\n"
              "print(*[w.base_dir for w in s._get_pool(False)._idle])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path).stdout.splitlines()
    assert out[0] == "5"
    time.sleep(0.2)
    for pid in map(int, out[1].split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for folder in out[2].split():
        assert not os.path.exists(folder)
