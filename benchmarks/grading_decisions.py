"""Decision accuracy of mathlm's grader and Math-Verify's on the hand-labelled GSM8K/MATH set.

    python benchmarks/grading_decisions.py [--baseline path/to/old/grading.py]
                                           [--out benchmarks/results/grading_decisions.json]

The set is tests/grading_cases.py (each case: a response or an extracted answer, the gold
answer, the verdict a human grader gives, and why). Baseline: Math-Verify (PyPI
``math-verify``), run in the same process on the same cases with its documented use
(``verify(parse(gold), parse(prediction))``, gold and bare answers wrapped in ``\\boxed{}``).
``--baseline`` also grades with another copy of ``mathlm/grading.py`` (for instance the one
before a change), loaded by path. Prints accuracy per group of cases and overall, the
seconds per decision, and writes JSON.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grading_file_verdict(path: Path):
    """A verdict function that grades with the grading.py at ``path`` (no torch import)."""
    grading = load_module("baseline_grading", path)

    def verdict(case) -> bool:
        prediction = grading.extract_answer(case.text) if case.kind == "response" else case.text
        return grading.math_equal(prediction, case.gold)

    return verdict


def evaluate(cases, verdict) -> dict:
    start = time.perf_counter()
    right = [verdict(c) == c.correct for c in cases]
    seconds = time.perf_counter() - start
    per_group, totals = Counter(), Counter()
    for case, ok in zip(cases, right):
        totals[case.group] += 1
        per_group[case.group] += ok
    wrong = [{"group": c.group, "text": c.text[:200], "gold": c.gold, "correct": c.correct, "why": c.why}
             for c, ok in zip(cases, right) if not ok]
    return {"accuracy": sum(right) / len(cases), "seconds_per_decision": seconds / len(cases),
            "groups": {g: per_group[g] / totals[g] for g in totals}, "wrong": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, default=None, help="another grading.py to grade with")
    ap.add_argument("--out", default="benchmarks/results/grading_decisions.json")
    args = ap.parse_args()
    cases_module = load_module("grading_cases", ROOT / "tests" / "grading_cases.py")
    cases = cases_module.CASES
    graders = {"mathlm": cases_module.mathlm_verdict}
    try:
        import math_verify  # noqa: F401

        graders["math-verify"] = cases_module.math_verify_verdict
    except ImportError:
        print("math-verify is not installed: pip install math-verify")
    if args.baseline is not None:
        graders[f"baseline ({args.baseline})"] = grading_file_verdict(args.baseline)
    for grader in graders.values():  # warm-up: imports, the sympy helper process
        grader(cases[0])
    results = {name: evaluate(cases, grader) for name, grader in graders.items()}
    names = list(results)
    groups = list(dict.fromkeys(c.group for c in cases))
    sizes = Counter(c.group for c in cases)
    print(f"{len(cases)} cases ({sum(not c.correct for c in cases)} wrong answers)\n")
    print(f"{'group':30} {'n':>4} " + " ".join(f"{n[:14]:>14}" for n in names))
    for g in groups:
        print(f"{g:30} {sizes[g]:4d} " + " ".join(f"{results[n]['groups'][g]:14.1%}" for n in names))
    print(f"{'all':30} {len(cases):4d} " + " ".join(f"{results[n]['accuracy']:14.1%}" for n in names))
    print(f"{'ms per decision':30} {'':4} " + " ".join(f"{results[n]['seconds_per_decision'] * 1e3:14.2f}"
                                                     for n in names))
    for n in names:
        for w in results[n]["wrong"]:
            print(f"  {n[:12]} wrong: [{w['group']}] {w['text'][:60]!r} vs {w['gold']!r} (human: {w['correct']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"platform": platform.platform(), "cases": len(cases), "results": results},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
