"""mathlm.sandbox.Session: the python blocks of one mixed solution, with shared variables."""
import importlib.util
import time

import pytest

import mathlm.sandbox as sandbox
from mathlm.sandbox import ExecResult, Session, run_sessions


def test_variables_persist_and_each_call_returns_its_output_block():
    with Session() as s:
        assert s.run("from fractions import Fraction\nx = Fraction(1, 3)") == ""
        assert s.run("y = x + Fraction(1, 6)\nprint(y)") == "1/2"  # 1/3 + 1/6
        assert s.run("def double(v):\n    return 2 * v\nprint(double(y))") == "1"
        assert s.run("print(double(21))") == "42"
        assert s.last_result == ExecResult("ok", "42\n", "", s.last_result.elapsed)


def test_an_error_shows_its_line_and_keeps_the_state_before_it():
    """As in a notebook: statements before the failing one took effect, later ones did not."""
    s = Session()
    text = s.run("a = 1\nprint('before')\nprint(1 / 0)\na = 2")
    assert text == "before\nZeroDivisionError: division by zero"
    assert s.last_result.status == "error"
    assert s.run("print(a)") == "1"
    assert s.run("print(b)") == "NameError: name 'b' is not defined"
    assert s.run("b = a + 1\nprint(b)") == "2"


def test_a_killed_block_is_not_replayed_and_the_session_goes_on():
    s = Session(timeout=0.5)
    s.run("n = 10")
    text = s.run("n = 99\nwhile True:\n    pass")
    assert text == "TimeoutError: time limit of 0.5 s exceeded"
    assert s.last_result.status == "timeout"
    assert s.run("import os") == "PermissionError: the sandbox forbids import of 'os'"
    assert s.run("print(n)") == "10"  # the timed-out block's assignment is lost


def test_random_draws_agree_between_the_first_run_and_the_replay():
    """Replay must rebuild the same values the model saw: random starts from seed 0."""
    s = Session()
    first = s.run("import random\nr = random.randint(1, 10**9)\nprint(r)")
    assert s.run("print(r)") == first
    assert s.run("print(random.randint(1, 10**9) != r)") == "True"  # the stream goes on


def test_set_iteration_order_agrees_between_runs_and_replays():
    """str hashes are fixed (PYTHONHASHSEED=0) in every worker, so the order a replay sees is
    the order the first run printed, whichever worker runs it."""
    sessions = [Session() for _ in range(6)]
    outputs = run_sessions(sessions, ["names = list({'alpha', 'beta', 'gamma', 'delta'})\nprint(names)"] * 6)
    assert len(set(outputs)) == 1
    again = run_sessions(sessions, ["print(names)"] * 6)
    assert again == outputs


def test_per_call_and_total_time_limits():
    s = Session(timeout=1.0, total_timeout=1.5)
    start = time.monotonic()
    assert s.run("while True: pass") == "TimeoutError: time limit of 1 s exceeded"
    assert s.run("while True: pass") == "TimeoutError: the session's total time limit of 1.5 s ran out"
    assert 0.4 < s.last_result.elapsed < 0.9  # what was left of the 1.5 s
    assert s.run("print(1)") == "TimeoutError: the session's total time limit of 1.5 s is used up"
    assert time.monotonic() - start < 3.5
    assert s.used_seconds >= 1.5


def test_a_replay_that_overruns_is_a_timeout_counted_against_the_budget():
    """Earlier blocks get twice their first run time plus 1 s to replay. A replay slower
    than that is simulated by appending a 2.5 s wait to the recorded (instant) block."""
    s = Session(timeout=3.0, total_timeout=10.0)
    s.run("import fractions\nsleep = lambda t: fractions.sys.modules['select'].select([], [], [], t)\nn = 0")
    s.blocks[-1] += "\nsleep(2.5)"  # what the replay will run: longer than 2 x ~0 + 1 s
    start = time.monotonic()
    text = s.run("print(n)")
    assert s.last_result.status == "timeout"
    assert text.startswith("TimeoutError: replaying the session's earlier blocks took over 1")
    assert 1.0 <= s.last_result.elapsed and s.used_seconds >= 1.0
    assert time.monotonic() - start < 1.0 + 0.5 + 1.0


def test_output_limit_applies_per_call():
    s = Session(max_output=10)
    assert s.run("print('abc')") == "abc"
    text = s.run("print('x' * 50)")
    assert s.last_result.status == "output_limit"
    assert text == "x" * 10 + "\nOutputLimitError: output exceeds the limit of 10 characters"
    assert s.run("print('abc')") == "abc"  # earlier output does not count against later calls


def test_sessions_hold_no_process():
    """Hundreds of sessions run through the shared pool: the number of worker processes
    stays the pool's, whatever the number of sessions."""
    pool = sandbox._get_pool(False)
    before = pool._size
    sessions = [Session() for _ in range(300)]
    run_sessions(sessions, [f"v = {k}" for k in range(300)])
    outputs = run_sessions(sessions, ["print(v * v)"] * 300)
    assert outputs == [str(k * k) for k in range(300)]
    assert pool._size <= max(before, sandbox._default_workers())


def test_run_sessions_checks_its_arguments():
    a, b = Session(), Session()
    with pytest.raises(ValueError, match=r"got 2 sessions and 1 codes; expected as many of each"):
        run_sessions([a, b], ["print(1)"])
    with pytest.raises(ValueError, match="a session appears twice"):
        run_sessions([a, a], ["x = 1", "print(x)"])
    with pytest.raises(ValueError, match="code must be a str of Python source, got int"):
        a.run(3)


def test_closed_session_refuses_to_run():
    with Session() as s:
        s.run("x = 1")
    assert s.closed and s.blocks == []
    with pytest.raises(ValueError, match=r"Session.run\(\) on a closed session"):
        s.run("print(x)")


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout=-1), "timeout (-1) must be a number of seconds"),
    (dict(total_timeout=0), "total_timeout (0) must be a number of seconds"),
    (dict(memory_mb=True), "memory_mb (True) must be an integer"),
    (dict(max_output=1.5), "max_output (1.5) must be a non-negative integer"),
])
def test_bad_session_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        Session(**kwargs)
    assert message in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("sympy") is None, reason="sympy not installed")
def test_sympy_state_persists_across_blocks():
    s = Session()
    s.run("import sympy as sp\nx = sp.Symbol('x')\nroots = sp.solve(x**2 - 9, x)")
    assert s.run("print(roots)") == "[-3, 3]"  # x^2 = 9
    assert s.run("print(sum(roots))") == "0"
