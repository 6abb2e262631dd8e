"""Cost per call of ``math_equal`` and ``extract_answer`` by kind of answer.

    python benchmarks/grading.py [--reps 20000] [--out benchmarks/results/grading.json]
                                 [--baseline path/to/old/grading.py]

RFT, RL rewards and evaluation grade millions of (prediction, reference) pairs, so the common
cases must stay in microseconds. Baseline: Python string equality of the same pairs in the
same process (the cheapest possible "grader"); every prediction is new, so caches only help
with references. The symbolic rows are decided by numeric
evaluation at fixed points; the "sympy fallback" row is the rare pair that evaluation cannot
settle (first call includes starting the helper process, excluded by a warm-up).
``--baseline`` also times another copy of ``mathlm/grading.py`` (say, the one before a change),
loaded by path, on the same pairs in the same process: the "vs baseline" column is the ratio.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

from mathlm.grading import extract_answer, math_equal

# Each case makes the i-th (prediction, reference) pair: predictions never repeat (as in
# sampling), so the parse caches only help with the references, as they would in RL.
CASES = {
    "integers": lambda i: (str(i), str(i + i % 2)),
    "decimals / fractions": lambda i: (f"{i}/4", f"{i / 4}"),
    "mixed numbers / \\frac": lambda i: (f"{i} 1/2", f"\\frac{{{2 * i + 1}}}{{2}}"),
    "percent / units / separators": lambda i: (f"${i:,}.50", f"{i}.5"),
    "tuples": lambda i: (f"({i}, {i + 1})", f"({i},{i + 1})"),
    "matrices": lambda i: (f"[[{i}, 2], [3, 4]]", f"\\begin{{pmatrix}}{i}&2\\\\3&4\\end{{pmatrix}}"),
    "symbolic (numeric test)": lambda i: (f"{i}\\sqrt{{2}}", f"\\sqrt{{{2 * i * i}}}"),
    "symbolic with a variable": lambda i: (f"{i}x+2", f"2+{i}x"),
    "sympy fallback": lambda i: (f"\\frac{{x^{{{20000 + i}}}}}{{x^{{{19999 + i}}}}}", "x"),
}
TEXTS = [
    "Reasoning...\nThe answer is \\boxed{\\frac{3}{4}}.",
    "```python\nprint(6 * 7)\n```\n```output\n42\n```\n",
    "so it is 12 and then 15 apples",
]


def per_call(fn, make, reps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call; CPU time of this process is what a shared machine
    cannot inflate (the sympy fallback's work happens in the helper process: wall only)."""
    fn(*make(-1))  # warm-up (the sympy helper process starts here)
    pairs = [make(i) for i in range(reps)]
    t0, c0 = time.perf_counter(), time.process_time()
    for p in pairs:
        fn(*p)
    return (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps


def load_grading(path: str):
    spec = importlib.util.spec_from_file_location("baseline_grading", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20000)
    ap.add_argument("--out", default="benchmarks/results/grading.json")
    ap.add_argument("--baseline", default=None, help="another grading.py to time on the same pairs")
    args = ap.parse_args()
    old = load_grading(args.baseline) if args.baseline else None
    rows = {}
    print(f"{'case':32} {'us/call':>9} {'CPU us':>8} {'calls/s':>11} {'vs str ==':>10}"
          + (f" {'CPU vs baseline':>16}" if old else ""))
    for name, make in CASES.items():
        reps = args.reps if name != "sympy fallback" else max(5, args.reps // 1000)
        base, _ = per_call(lambda a, b: a == b, make, args.reps)
        t, cpu = per_call(math_equal, make, reps)
        rows[name] = {"us_per_call": t * 1e6, "cpu_us_per_call": cpu * 1e6, "baseline_us": base * 1e6}
        line = f"{name:32} {t * 1e6:9.1f} {cpu * 1e6:8.1f} {1 / t:11,.0f} {t / base:9.0f}x"
        if old is not None:
            t_old, cpu_old = per_call(old.math_equal, make, reps)
            rows[name].update(old_us_per_call=t_old * 1e6, old_cpu_us_per_call=cpu_old * 1e6)
            line += f" {cpu / cpu_old:15.2f}x"
        print(line)
    make_text = lambda i: (TEXTS[i % len(TEXTS)].replace("42", str(i)),)  # noqa: E731
    t, cpu = per_call(extract_answer, make_text, args.reps)
    rows["extract_answer"] = {"us_per_call": t * 1e6, "cpu_us_per_call": cpu * 1e6}
    line = f"{'extract_answer':32} {t * 1e6:9.1f} {cpu * 1e6:8.1f} {1 / t:11,.0f} {'':10}"
    if old is not None:
        t_old, cpu_old = per_call(old.extract_answer, make_text, args.reps)
        rows["extract_answer"].update(old_us_per_call=t_old * 1e6, old_cpu_us_per_call=cpu_old * 1e6)
        line += f" {cpu / cpu_old:15.2f}x"
    print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"platform": platform.platform(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
