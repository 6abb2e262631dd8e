"""Generators: every record verified by execution, answers re-derived from the question text
by an independent solver (sympy, brute force), CoT arithmetic re-checked, formats exact."""
import ast
import math
import re
from collections import Counter
from fractions import Fraction

import pytest
import sympy as sp

from mathlm.data import (CODE_CLOSE, CODE_OPEN, DOMAINS, FINAL_ANSWER_TEMPLATE, OUTPUT_CLOSE, OUTPUT_OPEN,
                         RECORD_FIELDS, final_answer_line, generate_dataset, generate_problem, normalize_question,
                         output_block, parse_blocks, problem_signature, python_block, verify_records)


@pytest.fixture(scope="module")
def records():
    """10 records per domain and level, unverified (the tests verify them)."""
    return generate_dataset(n_per_domain=30, seed=123, verify=False)


# ----------------------------------------------------------------------------------------
# an independent solver: reads the question text, never the solutions

X, Y = sp.symbols("x y")
_TRANSFORMS = sp.parsing.sympy_parser.standard_transformations + (
    sp.parsing.sympy_parser.implicit_multiplication_application, sp.parsing.sympy_parser.convert_xor)


def _expr(text):
    return sp.parsing.sympy_parser.parse_expr(text, transformations=_TRANSFORMS, local_dict={"x": X, "y": Y})


def _ints(text):
    return [int(v) for v in re.findall(r"-?\d+", text)]


def _value(v):
    if isinstance(v, (list, tuple)):
        return type(v)(_value(x) for x in v)
    return Fraction(int(sp.fraction(v)[0]), int(sp.fraction(v)[1])) if isinstance(v, sp.Basic) else Fraction(v)


def _solve_linear(q):
    m = re.search(r"(?:x: |if |satisfies |makes |equation |If )([^?]*?=[^?,]*?)(?:[.?]|, what| true)", q)
    if m is None:
        words = {"Twice": 2, "Three": 3, "Four": 4, "Five": 5, "Six": 6, "Seven": 7, "Eight": 8, "Nine": 9}
        k = words.get(q.split()[0]) or _ints(q)[0]
        add, total = _ints(q)[-2:]
        return Fraction(total - add, k)
    lhs, rhs = m.group(1).split("=")
    (sol,) = sp.solve(sp.Eq(_expr(lhs), _expr(rhs)), X)
    return _value(sol)


def _solve_system(q):
    eqs = re.findall(r"(-?\d*x [+-] \d*y = -?\d+)", q)
    assert len(eqs) == 2, q
    sol = sp.solve([sp.Eq(*map(_expr, e.split("="))) for e in eqs], [X, Y])
    return (_value(sol[X]), _value(sol[Y]))


def _solve_matrix(q):
    mats = [ast.literal_eval(m) for m in re.findall(r"\[\[.*?\]\]", q)]
    if "trace" in q:
        return Fraction(sp.Matrix(mats[0]).trace())
    if "determinant" in q or "det(" in q:
        return Fraction(int(sp.Matrix(mats[0]).det()))
    if "inverse" in q or "^(-1)" in q:
        return [[_value(v) for v in row] for row in sp.Matrix(mats[0]).inv().tolist()]
    return [[_value(v) for v in row] for row in (sp.Matrix(mats[0]) * sp.Matrix(mats[1])).tolist()]


def _solve_calculus(q):
    m = (re.search(r"f\(x\) = (.+?)(?:,| at | over|\?|\. )", q) or re.search(r"of \((.+?)\) dx", q)
         or re.search(r"integral of (.+?) from", q))
    f = _expr(m.group(1).replace("^", "**"))
    if "derivative" in q or "f'" in q:
        x0 = int(re.search(r"f'\((-?\d+)\)|at x = (-?\d+)", q).group(1) or re.search(r"at x = (-?\d+)", q).group(1))
        return _value(sp.diff(f, X).subs(X, x0))
    a, b = map(int, re.search(r"(?:from x = |from |\[)(-?\d+)(?: to x = | to |, )(-?\d+)", q).groups())
    return _value(sp.integrate(f, (X, a, b)))


def _solve_number_theory(q):
    n = _ints(q)
    if "greatest common divisor" in q or "gcd" in q or "GCD" in q:
        return Fraction(math.gcd(*n))
    if "least common multiple" in q or "LCM" in q or "divisible by" in q:
        return Fraction(math.lcm(*n))
    if "^" in q or "power" in q:
        base, exp, m = n
        return Fraction(base**exp % m)
    if "x" in q:
        a, b, m = n
        return Fraction(next(x for x in range(1, m) if a * x % m == b))
    if "*" in q:
        a, b, m = n
        return Fraction(a * b % m)
    a, m = n
    return Fraction(a % m)


def _solve_sequence(q):
    terms = [Fraction(t) for t in re.findall(r"-?\d+(?:/\d+)?", q.split("...")[0].split("sequence")[-1].split("of ")[-1])][-3:]
    k = [int(v) for v in re.findall(r"(\d+)(?:th| terms)|number (\d+)", q)[0] if v][0] if re.search(r"(\d+)(?:th| terms)|number (\d+)", q) else None
    ratio = terms[1] / terms[0] if terms[0] else None
    geometric = terms[1] - terms[0] != terms[2] - terms[1]  # three terms decide the kind
    seq = []
    t = terms[0]
    for i in range(200):
        seq.append(t)
        t = t * ratio if geometric else t + (terms[1] - terms[0])
    assert seq[:3] == terms, (q, seq[:3], terms)
    if "Which term" in q or "What is n" in q:
        target = Fraction(_ints(q)[-1])
        return Fraction(seq.index(target) + 1)
    if "sum" in q or "Add up" in q:
        return sum(seq[:k])
    return seq[k - 1]


def _solve_fractions(q):
    m = re.search(r"(\d+/\d+) (divided by|times|[-+*/]) (\d+/\d+)", q.replace("(", "").replace(")", ""))
    if m:
        a, op, b = Fraction(m.group(1)), m.group(2), Fraction(m.group(3))
        return {"+": a + b, "-": a - b, "*": a * b, "times": a * b, "/": a / b, "divided by": a / b}[op]
    m = re.search(r"(\d+)(?:%| percent) of (\d+)", q)
    if m:
        return Fraction(int(m.group(1)) * int(m.group(2)), 100)
    return None  # word problems: checked by execution and by the CoT arithmetic


SOLVERS = {"linear_equations": _solve_linear, "linear_systems": _solve_system, "matrices": _solve_matrix,
           "calculus": _solve_calculus, "number_theory": _solve_number_theory, "sequences": _solve_sequence,
           "fractions_percent": _solve_fractions}


def _answer_value(answer: str):
    if answer.startswith("[["):
        return [[Fraction(v) for v in row.split(", ")] for row in re.findall(r"\[([^\[\]]*)\]", answer)]
    if answer.startswith("("):
        return tuple(Fraction(v) for v in answer[1:-1].split(", "))
    return Fraction(answer)


def test_answers_match_an_independent_solver(records):
    checked = Counter()
    for r in records:
        solver = SOLVERS.get(r["domain"])
        expected = solver(r["question"]) if solver else None
        if expected is None:
            continue
        assert _answer_value(r["answer"]) == expected, (r["question"], r["answer"], expected)
        checked[r["domain"]] += 1
    for domain in SOLVERS:
        assert checked[domain] >= 10, (domain, checked)


# ----------------------------------------------------------------------------------------
# execution


def test_every_record_passes_execution_in_the_sandbox(records):
    """Each pot program and every mixed block runs in the sandbox and prints what is recorded;
    pot's output and mixed's last output are the answer."""
    pytest.importorskip("mathlm.sandbox")
    reasons = verify_records(records)
    failures = [(r["domain"], r["difficulty"], why) for r, why in zip(records, reasons) if why]
    assert not failures, failures[:5]
    assert {(r["domain"], r["difficulty"]) for r in records} == {(d, k) for d in DOMAINS for k in (1, 2, 3)}


def test_verification_catches_wrong_outputs_and_answers(records):
    pytest.importorskip("mathlm.sandbox")
    good = next(r for r in records if r["domain"] == "arithmetic" and len(parse_blocks(r["mixed"])) >= 2)
    wrong_answer = dict(good, answer=str(int(good["answer"]) + 1))
    code, out = parse_blocks(good["mixed"])[0]
    lying_block = dict(good, mixed=good["mixed"].replace(python_block(code, out), python_block(code, out + "1")))
    crashing = dict(good, pot=good["pot"].replace(parse_blocks(good["pot"])[0][0], "print(1 / 0)"))
    reasons = verify_records([good, wrong_answer, lying_block, crashing])
    assert reasons[0] is None
    assert "does not end with" in reasons[1]
    assert "mixed block 1: printed" in reasons[2]
    assert reasons[3].startswith("pot block 1: error")


# ----------------------------------------------------------------------------------------
# CoT arithmetic: every "a op b = c" chain is re-evaluated with exact fractions

_PURE = re.compile(r"^[\d\s+\-*/()^.]+$")


def _exact(expr: str) -> Fraction:
    code = re.sub(r"\d+(?:\.\d+)?", lambda m: f"Fraction('{m.group(0)}')", expr.replace("^", "**"))
    return eval(code, {"__builtins__": {}, "Fraction": Fraction})


def arithmetic_claims(text: str):
    """Pairs of adjacent purely arithmetic members of '=' chains, clause by clause."""
    for clause in re.split(r"[\n;:,]| and ", text):
        members = [m.strip().rstrip(".") for m in clause.split(" = ")]
        for a, b in zip(members, members[1:]):
            if a and b and _PURE.match(a) and _PURE.match(b):
                try:
                    yield a, b, _exact(a), _exact(b)
                except (SyntaxError, ZeroDivisionError, TypeError):
                    continue


def test_cot_arithmetic_is_correct(records):
    claims = 0
    for r in records:
        cot = r["cot"][: r["cot"].rindex(final_answer_line(r["answer"]))]
        for a, b, va, vb in arithmetic_claims(cot):
            assert va == vb, (r["question"], f"{a} = {b}")
            claims += 1
    assert claims > 3 * len(records)


def test_the_claim_checker_catches_a_wrong_sum():
    assert [c[2] == c[3] for c in arithmetic_claims("Add them: 12 + 20 = 33.")] == [False]
    assert [c[2] == c[3] for c in arithmetic_claims("x: 2/3 = 4/6 and 3 * (-2)^2 = 12")] == [True, True]


def test_cot_writes_out_arithmetic_and_has_no_code(records):
    for r in records:
        assert "```" not in r["cot"]
        assert re.search(r"\d+ [-+*/] \(?-?\d+", r["cot"]) or r["domain"] == "number_theory", r["cot"]


# ----------------------------------------------------------------------------------------
# formats, fields, determinism, difficulty


def test_record_fields_and_final_lines(records):
    for r in records:
        assert tuple(k for k in r if k != "source") == RECORD_FIELDS and r["source"] == "template"
        line = FINAL_ANSWER_TEMPLATE.format(r["answer"])
        assert line == f"The answer is \\boxed{{{r['answer']}}}."
        for name in ("cot", "pot", "mixed"):
            assert r[name].endswith("\n" + line), (name, r[name][-80:])


def test_block_format_is_exact(records):
    """Mixed: reasoning, then blocks exactly "```python\\n<code>\\n```\\n```output\\n<out>\\n```",
    then the final line; pot: one block and the final line."""
    block = re.compile(r"```python\n(?:(?!```).)+\n```\n```output\n[^`]*\n```\n", re.DOTALL)
    for r in records:
        pot_blocks = parse_blocks(r["pot"])
        assert len(pot_blocks) == 1
        assert r["pot"] == CODE_OPEN + pot_blocks[0][0] + CODE_CLOSE + output_block(r["answer"]) + final_answer_line(r["answer"])
        body = r["mixed"][: -len(final_answer_line(r["answer"]))]
        rest = block.sub("", body)
        assert "```" not in rest and rest.strip(), r["mixed"]  # reasoning remains, no stray fences
        assert len(block.findall(body)) == len(parse_blocks(r["mixed"])) >= 1
    assert OUTPUT_OPEN == "\n```output\n" and OUTPUT_CLOSE == "\n```\n" and CODE_CLOSE == "\n```"


def test_programs_import_only_the_allowed_modules(records):
    allowed = {"math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools", "collections",
               "operator", "re", "string", "random"}
    for r in records:
        for code, _ in parse_blocks(r["pot"]) + parse_blocks(r["mixed"]):
            for tree_node in ast.walk(ast.parse(code)):
                if isinstance(tree_node, ast.Import):
                    assert {a.name for a in tree_node.names} <= allowed
                if isinstance(tree_node, ast.ImportFrom):
                    assert tree_node.module in allowed


def test_uniqueness_ids_and_balance(records):
    assert len({r["id"] for r in records}) == len(records)
    assert len({normalize_question(r["question"]) for r in records}) == len(records)
    assert len({problem_signature(r) for r in records}) == len(records)
    counts = Counter((r["domain"], r["difficulty"]) for r in records)
    assert set(counts.values()) == {10}


def test_deterministic_by_seed():
    a = generate_dataset(["matrices", "calculus"], n_per_domain=6, seed=5, verify=False)
    b = generate_dataset(["matrices", "calculus"], n_per_domain=6, seed=5, verify=False)
    c = generate_dataset(["matrices", "calculus"], n_per_domain=6, seed=6, verify=False)
    assert a == b and a != c


def test_difficulty_one_is_short_and_difficulty_three_longer(records):
    by = {(d, k): [len(r["question"]) + len(r["mixed"]) for r in records if r["domain"] == d and r["difficulty"] == k]
          for d in DOMAINS for k in (1, 3)}
    for d in DOMAINS:
        assert max(by[d, 1]) < 500, d
        assert sum(by[d, 3]) > sum(by[d, 1]), d
        cot3 = [len(r["cot"]) for r in records if r["domain"] == d and r["difficulty"] == 3]
        cot1 = [len(r["cot"]) for r in records if r["domain"] == d and r["difficulty"] == 1]
        assert sum(cot3) > sum(cot1), d
    for r in records:
        if r["difficulty"] == 1:
            assert all(len(n) <= 3 for n in re.findall(r"\d+", r["question"])), r["question"]


def test_several_paraphrase_templates_per_domain():
    """Questions with their numbers and names blanked out: at least three shapes per domain."""
    import random

    for domain in DOMAINS:
        rng = random.Random(0)
        shapes = set()
        for i in range(120):
            q = generate_problem(domain, rng, 1 + i % 3)["question"]
            shapes.add(re.sub(r"\d+|[A-Z][a-z]+ (?=has|can|and|starts|collects|buys|earns|had)", "#", q)[:25])
        assert len(shapes) >= 3, (domain, shapes)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['algebra'\]; valid:"):
        generate_dataset(["algebra"], verify=False)
    with pytest.raises(ValueError, match=r"difficulty \(4\) must be None or levels from \(1, 2, 3\)"):
        generate_dataset(difficulty=4, verify=False)
    with pytest.raises(ValueError, match=r"n_per_domain \(-1\) must be >= 0"):
        generate_dataset(n_per_domain=-1, verify=False)


def test_fixed_difficulty_and_exhaustion():
    recs = generate_dataset(["sequences"], n_per_domain=5, difficulty=1, verify=False)
    assert [r["difficulty"] for r in recs] == [1] * 5
    with pytest.raises(RuntimeError, match="produced only"):
        generate_dataset(["linear_systems"], n_per_domain=5000, difficulty=1, verify=False, max_attempts=2)
