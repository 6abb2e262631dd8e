"""Throughput of mathlm.sandbox on short PoT programs: the worker pool against one fresh
Python process per program, in the same run.

    python benchmarks/sandbox.py                   # 1,000 programs, both ways
    python benchmarks/sandbox.py --n 300 --out /tmp/sandbox.json

The programs are generated from templates of the kind a PoT model writes (fractions, math,
itertools, loops, comprehensions, sieves, statistics, decimal; 5% sympy, 3% numpy), each
printing its answer; every result is checked against the answer computed by plain Python in
this process. The two kinds of worker are also timed on their own programs.

Baseline: ``python -I -c <program>`` per program, ``--workers`` at a time (a thread per
slot). It has no containment at all, so the ratio understates what the pool saves against a
fresh *sandboxed* process. Pool start-up (importing sympy in the workers) is timed
separately and not counted in programs/s: it is paid once per process.

On a shared machine the wall-clock rates depend on what else runs; the CPU time per program
(this process, the workers and the children they reap; for the baseline, the interpreters
it reaps) does not, and ``workers / CPU time per program`` is the rate the machine gives
when nothing else runs. Both are printed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from mathlm.sandbox import close_pool, run_many, run_python, sandbox_layers


SYMPY_SHARE, NUMPY_SHARE = 0.05, 0.03


def make_programs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    templates = [
        lambda: f"from fractions import Fraction\nprint(sum(Fraction(1, k) for k in range(1, {rng.randint(3, 30)})))",
        lambda: f"import math\nprint(math.comb({rng.randint(10, 60)}, {rng.randint(2, 9)}))",
        lambda: f"import math\nprint(math.gcd({rng.randint(10, 10**6)}, {rng.randint(10, 10**6)}), "
                f"math.lcm({rng.randint(2, 99)}, {rng.randint(2, 99)}))",
        lambda: f"total = 0\nfor k in range(1, {rng.randint(100, 5000)}):\n    if k % {rng.randint(2, 9)} == 0:\n"
                f"        total += k\nprint(total)",
        lambda: f"print(sum(int(d) for d in str({rng.randint(10**5, 10**12)} ** {rng.randint(2, 9)})))",
        lambda: f"print(pow({rng.randint(2, 999)}, {rng.randint(10, 10**6)}, {rng.randint(10**3, 10**9)}))",
        lambda: f"import itertools\nprint(sum(1 for p in itertools.permutations(range({rng.randint(3, 6)})) "
                f"if p[0] < p[-1]))",
        lambda: f"n = {rng.randint(50, 3000)}\nsieve = [True] * (n + 1)\nsieve[0:2] = [False, False]\n"
                f"for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n        sieve[i*i::i] = [False] * len(sieve[i*i::i])\n"
                f"print(sum(sieve))",
        lambda: f"import statistics\nxs = {[rng.randint(1, 100) for _ in range(rng.randint(3, 12))]}\n"
                f"print(statistics.mean(xs), statistics.median(xs))",
        lambda: f"from decimal import Decimal, getcontext\ngetcontext().prec = 30\n"
                f"print(Decimal({rng.randint(1, 999)}) / Decimal({rng.randint(1, 999)}))",
        lambda: f"a, b = {rng.randint(1, 50)}, {rng.randint(1, 50)}\n"
                f"print([(x, y) for x in range(a) for y in range(b) if x * y == {rng.randint(1, 100)}])",
    ]
    sympy_templates = [  # the cheap end of sympy: solve() itself costs 15-100 ms per call here
        lambda: f"from sympy import Rational\nprint(Rational({rng.randint(1, 99)}, {rng.randint(1, 99)}) + "
                f"Rational({rng.randint(1, 99)}, {rng.randint(1, 99)}))",
        lambda: f"from sympy import factorint\nprint(factorint({rng.randint(10**3, 10**9)}))",
        lambda: f"import sympy as sp\nx = sp.Symbol('x')\nprint(sp.solve({rng.randint(2, 9)}*x - {rng.randint(1, 99)}, x))",
    ]
    numpy_template = (lambda: f"import numpy as np\nm = np.array({[[rng.randint(-9, 9) for _ in range(3)] for _ in range(3)]})\n"
                              f"print(round(float(np.linalg.det(m)), 6))")
    programs = []
    for _ in range(n):
        u = rng.random()
        source = rng.choice(sympy_templates) if u < SYMPY_SHARE else (
            numpy_template if u < SYMPY_SHARE + NUMPY_SHARE else rng.choice(templates))
        programs.append(source())
    return programs


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        for task in Path(f"/proc/{found[-1]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(p) for p in task.read_text().split()]
    return found


def pool_cpu_seconds() -> float:
    """CPU time so far of this process, the sandbox workers, their zygotes and the program
    children those reaped: what the pool costs, whatever else runs on the machine. Each live
    process counts its own time and that of the children it reaped (a zygote's children are
    not the worker's), so nothing counts twice."""
    import mathlm.sandbox as sandbox

    own = os.times()
    total = own.user + own.system
    tick = os.sysconf("SC_CLK_TCK")
    for pool in sandbox._pools.values():
        for worker in pool._idle:
            for pid in _descendants(worker.proc.pid):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                    total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def baseline_cpu_seconds() -> float:
    """CPU time of this process and of the children it reaped (the fresh interpreters)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def expected_output(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__"})
    return out.getvalue()


def fresh_process(code: str, timeout: float) -> str:
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=timeout)
    return done.stdout


def run_baseline(programs: list[str], workers: int, timeout: float) -> tuple[list[str], float]:
    outputs: list[str | None] = [None] * len(programs)
    start = last = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        futures = {executor.submit(fresh_process, code, timeout): i for i, code in enumerate(programs)}
        for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            outputs[futures[future]] = future.result()
            now = time.perf_counter()
            if now - last > 5 or done == len(programs):
                rate = done / (now - start)
                print(f"  fresh processes: {done}/{len(programs)}  {rate:.1f} programs/s  "
                      f"ETA {(len(programs) - done) / rate:.0f} s", flush=True)
                last = now
    return outputs, time.perf_counter() - start  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of programs")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="programs at once, both ways (default: the CPUs of this process)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="pool runs; the best is reported")
    parser.add_argument("--baseline-n", type=int, default=None,
                        help="time the baseline on the first N programs only (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sandbox.json"))
    args = parser.parse_args()
    if args.n < 1 or args.workers < 1:
        parser.error(f"--n ({args.n}) and --workers ({args.workers}) must be at least 1")

    load_start = os.getloadavg()[0]
    programs = make_programs(args.n)
    expected = [expected_output(code) for code in programs]
    n_scientific = sum(any(m in code for m in ("sympy", "numpy")) for code in programs)
    print(f"{args.n} programs ({n_scientific} use sympy/numpy), {args.workers} at a time, "
          f"{os.cpu_count()} CPUs, load average {load_start:.2f}")

    close_pool()
    start = time.perf_counter()
    layers = sandbox_layers()
    run_many(["print(0)", "import sympy\nprint(0)"] * args.workers, workers=args.workers)  # all workers up
    startup = time.perf_counter() - start
    print(f"pool start-up: {startup:.2f} s; layers: {layers}")

    pool_times, pool_cpu, pool_results = [], [], []
    for repeat in range(args.repeats):
        cpu, start = pool_cpu_seconds(), time.perf_counter()
        pool_results = run_many(programs, timeout=args.timeout, workers=args.workers)
        pool_times.append(time.perf_counter() - start)
        pool_cpu.append(pool_cpu_seconds() - cpu)
        print(f"  pool run {repeat + 1}: {args.n / pool_times[-1]:.1f} programs/s, "
              f"{pool_cpu[-1] / args.n * 1000:.2f} ms CPU per program", flush=True)
    pool_correct = sum(r.ok and r.stdout == e for r, e in zip(pool_results, expected))
    latency = sorted(run_python(programs[0]).elapsed for _ in range(20))

    by_kind = {}
    for kind, scientific in (("standard library only", False), ("sympy / numpy", True)):
        subset = [c for c in programs if any(m in c for m in ("sympy", "numpy")) == scientific]
        if subset:
            cpu, start = pool_cpu_seconds(), time.perf_counter()
            run_many(subset, timeout=args.timeout, workers=args.workers)
            seconds, cpu = time.perf_counter() - start, pool_cpu_seconds() - cpu
            by_kind[kind] = {"n": len(subset), "programs_per_s": len(subset) / seconds,
                             "cpu_ms_per_program": cpu / len(subset) * 1000}
            print(f"  pool, {kind}: {len(subset)} programs, {len(subset) / seconds:.1f} programs/s, "
                  f"{cpu / len(subset) * 1000:.2f} ms CPU per program", flush=True)

    n_base = min(args.baseline_n or args.n, args.n)
    cpu = baseline_cpu_seconds()
    baseline_outputs, baseline_time = run_baseline(programs[:n_base], args.workers, args.timeout)
    baseline_cpu = baseline_cpu_seconds() - cpu
    baseline_correct = sum(o == e for o, e in zip(baseline_outputs, expected))

    best = min(range(args.repeats), key=lambda i: pool_times[i])
    pool_rate, baseline_rate = args.n / pool_times[best], n_base / baseline_time
    # what the CPU time per program allows when the workers have the cores to themselves
    pool_idle, baseline_idle = (args.workers * args.n / pool_cpu[best], args.workers * n_base / baseline_cpu)
    rows = [("pool (mathlm.sandbox)", args.n, pool_times[best], pool_rate, pool_cpu[best], pool_idle, pool_correct),
            ("fresh process per program", n_base, baseline_time, baseline_rate, baseline_cpu, baseline_idle,
             baseline_correct)]
    print(f"\n{'method':<28}{'seconds':>9}{'programs/s':>12}{'ratio':>8}{'CPU ms/prog':>13}"
          f"{'idle-CPU prog/s':>17}{'ratio':>8}{'correct':>11}")
    for name, n, seconds, rate, cpu_s, idle, correct in rows:
        print(f"{name:<28}{seconds:>9.2f}{rate:>12.1f}{rate / baseline_rate:>7.1f}x{cpu_s / n * 1000:>13.2f}"
              f"{idle:>17.1f}{idle / baseline_idle:>7.1f}x{correct:>6}/{n}")
    print(f"idle-CPU prog/s = {args.workers} workers / CPU time per program: the rate when nothing else "
          f"runs (load average now {os.getloadavg()[0]:.2f})")
    print(f"single-program run time inside the sandbox, median of 20: {latency[10] * 1000:.2f} ms")

    record = {
        "benchmark": "sandbox", "n_programs": args.n, "n_scientific": n_scientific, "workers": args.workers,
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(), "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "layers": layers, "pool_startup_s": startup, "pool_seconds": pool_times, "pool_cpu_seconds": pool_cpu,
        "pool_programs_per_s": pool_rate, "pool_idle_cpu_programs_per_s": pool_idle, "pool_correct": pool_correct,
        "baseline": "python -I -c per program", "baseline_n_programs": n_base,
        "baseline_seconds": baseline_time, "baseline_cpu_seconds": baseline_cpu,
        "baseline_programs_per_s": baseline_rate, "baseline_idle_cpu_programs_per_s": baseline_idle,
        "baseline_correct": baseline_correct, "ratio": pool_rate / baseline_rate,
        "idle_cpu_ratio": pool_idle / baseline_idle, "single_program_elapsed_median_s": latency[10],
        "pool_by_kind": by_kind,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
