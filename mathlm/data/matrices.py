"""Generator: matrix product, determinant, inverse and trace, 2x2 and 3x3.

Matrices are written as nested lists, ``[[1, 2], [3, 4]]``, in questions and answers alike.
"""
from __future__ import annotations

import random
from fractions import Fraction

from .format import canonical_answer
from .solution import Problem, SolutionWriter, paren

__all__ = ["matrices", "determinant", "matrix_text"]


def matrix_text(m: list[list]) -> str:
    return canonical_answer(m)


def _minor(m: list[list], i: int, j: int) -> list[list]:
    return [row[:j] + row[j + 1 :] for k, row in enumerate(m) if k != i]


def determinant(m: list[list]):
    """Cofactor expansion along the first row (exact for ints and Fractions)."""
    if len(m) == 1:
        return m[0][0]
    return sum((-1) ** j * m[0][j] * determinant(_minor(m, 0, j)) for j in range(len(m)))


def _random_matrix(rng: random.Random, n: int, lo: int, hi: int) -> list[list[int]]:
    return [[rng.randint(lo, hi) for _ in range(n)] for _ in range(n)]


_DET_CODE = """def minor(M, i, j):
    return [row[:j] + row[j + 1:] for k, row in enumerate(M) if k != i]

def det(M):
    if len(M) == 1:
        return M[0][0]
    return sum((-1) ** j * M[0][j] * det(minor(M, 0, j)) for j in range(len(M)))
"""
_PRODUCT_CODE = """A = {A}
B = {B}
n = len(A)
print([[sum(A[i][k] * B[k][j] for k in range(n)) for j in range(n)] for i in range(n)])"""
_INVERSE_CODE = _DET_CODE + """
A = {A}
n = len(A)
d = det(A)
# inverse = adjugate / det; the adjugate is the transposed cofactor matrix
inv = [[Fraction((-1) ** (i + j) * det(minor(A, j, i)), d) for j in range(n)] for i in range(n)]
print("[" + ", ".join("[" + ", ".join(str(v) for v in row) + "]" for row in inv) + "]")"""


def _det2_work(m) -> list[str]:
    (a, b), (c, d) = m
    return [f"{paren(a)} * {paren(d)} - {paren(b)} * {paren(c)}", f"{a * d} - {paren(b * c)}"]


def _trace(rng: random.Random, difficulty: int) -> Problem:
    n = rng.choice([2, 3])
    m = _random_matrix(rng, n, 0 if difficulty == 1 else -9, 9)
    mt = matrix_text(m)
    q = rng.choice([f"What is the trace of the matrix {mt}?", f"Find the trace of A = {mt}.",
                    f"Compute the sum of the diagonal entries (the trace) of the matrix {mt}."])
    w = SolutionWriter()
    diag = [m[i][i] for i in range(n)]
    terms = " + ".join(paren(v) for v in diag)
    ans = w.compute("Add the diagonal entries", terms, sum(diag), lhs="trace")
    return w.finish(q, ans, f"A = {mt}\nprint(sum(A[i][i] for i in range(len(A))))")


def _determinant(rng: random.Random, difficulty: int) -> Problem:
    n = 2 if difficulty == 1 else 3
    lo, hi = {1: (0, 6), 2: (-3, 4), 3: (-9, 9)}[difficulty]
    m = _random_matrix(rng, n, lo, hi)
    mt = matrix_text(m)
    q = rng.choice([f"Compute the determinant of the matrix {mt}.", f"What is det(A) for A = {mt}?",
                    f"Find the determinant of {mt}."])
    w = SolutionWriter()
    det = determinant(m)
    if n == 2:
        ans = w.compute("Use det [[a, b], [c, d]] = a * d - b * c", _det2_work(m)[0], det, work=_det2_work(m), lhs="det")
    else:
        w.say("Expand along the first row.")
        minors = []
        for j in range(3):
            sub = _minor(m, 0, j)
            minors.append(determinant(sub))
            w.say_cot(f"The minor of entry (1, {j + 1}) is {' = '.join(_det2_work(sub))} = {minors[-1]}.")
        a, b, c = m[0]
        (d, e, f), (g, h, i) = m[1], m[2]
        code = (f"{paren(a)} * ({paren(e)} * {paren(i)} - {paren(f)} * {paren(h)}) - {paren(b)} * ({paren(d)} * {paren(i)}"
                f" - {paren(f)} * {paren(g)}) + {paren(c)} * ({paren(d)} * {paren(h)} - {paren(e)} * {paren(g)})")
        work = [f"{paren(a)} * {paren(minors[0])} - {paren(b)} * {paren(minors[1])} + {paren(c)} * {paren(minors[2])}",
                f"{a * minors[0]} - {paren(b * minors[1])} + {paren(c * minors[2])}"]
        ans = w.compute("Combine the minors with alternating signs", code, det, work=work, lhs="det")
    return w.finish(q, ans, _DET_CODE + f"\nA = {mt}\nprint(det(A))")


def _product(rng: random.Random, difficulty: int) -> Problem:
    n = 2 if difficulty < 3 else 3
    lo, hi = {1: (0, 4), 2: (-6, 9), 3: (-4, 6)}[difficulty]
    a, b = _random_matrix(rng, n, lo, hi), _random_matrix(rng, n, lo, hi)
    at, bt = matrix_text(a), matrix_text(b)
    prod = [[sum(a[i][k] * b[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    q = rng.choice([f"Compute the product AB where A = {at} and B = {bt}.",
                    f"Multiply the matrices A = {at} and B = {bt}. What is AB?",
                    f"Let A = {at} and B = {bt}. Find the matrix product AB."])
    w = SolutionWriter()
    w.say("Entry (i, j) of AB is row i of A times column j of B.")
    for i in range(n):
        for j in range(n):
            terms = " + ".join(f"{paren(a[i][k])} * {paren(b[k][j])}" for k in range(n))
            products = " + ".join(paren(a[i][k] * b[k][j]) for k in range(n))
            w.say_cot(f"Entry ({i + 1}, {j + 1}): {terms} = {products} = {prod[i][j]}.")
    w.say_cot(f"So AB = {matrix_text(prod)}.")
    code = _PRODUCT_CODE.format(A=at, B=bt)
    w.block("Compute all entries at once", code, prod)
    return w.finish(q, prod, code)


def _inverse(rng: random.Random, difficulty: int) -> Problem:
    n = 2 if difficulty < 3 else 3
    lo, hi = (-5, 6) if n == 2 else (-3, 4)
    while True:
        m = _random_matrix(rng, n, lo, hi)
        det = determinant(m)
        if det != 0:
            break
    mt = matrix_text(m)
    inv = [[Fraction((-1) ** (i + j) * determinant(_minor(m, j, i)), det) for j in range(n)] for i in range(n)]
    q = rng.choice([f"Find the inverse of the matrix A = {mt}.", f"Compute the inverse of {mt}. Write fractions as a/b.",
                    f"What is A^(-1) for A = {mt}?"])
    w = SolutionWriter()
    if n == 2:
        (a, b), (c, d) = m
        w.say_cot(f"The determinant is {' = '.join(_det2_work(m))} = {det}.")
        w.say_cot(f"The inverse of [[a, b], [c, d]] is [[d, -b], [-c, a]] divided by the determinant: "
                  f"[[{d}/{paren(det)}, {-b}/{paren(det)}], [{-c}/{paren(det)}, {a}/{paren(det)}]] = {matrix_text(inv)}.")
        w.say("The inverse is the adjugate [[d, -b], [-c, a]] divided by the determinant.")
    else:
        cof = [[(-1) ** (i + j) * determinant(_minor(m, i, j)) for j in range(3)] for i in range(3)]
        for i in range(3):
            for j in range(3):
                sign = "" if (i + j) % 2 == 0 else "-"
                minor = _minor(m, i, j)
                w.say_cot(f"Cofactor ({i + 1}, {j + 1}): {sign}({_det2_work(minor)[0]}) = {sign}({determinant(minor)})"
                          f" = {cof[i][j]}.")
        w.say_cot(f"Expanding along the first row, the determinant is {paren(m[0][0])} * {paren(cof[0][0])} + "
                  f"{paren(m[0][1])} * {paren(cof[0][1])} + {paren(m[0][2])} * {paren(cof[0][2])} = {det}.")
        adj = [[cof[j][i] for j in range(3)] for i in range(3)]
        w.say_cot(f"The adjugate is the transpose {matrix_text(adj)}; dividing by {det} gives {matrix_text(inv)}.")
        w.say("The inverse is the transposed cofactor matrix divided by the determinant.")
    code = _INVERSE_CODE.format(A=mt)
    w.block("Compute it exactly with fractions", code, inv)
    return w.finish(q, inv, code)


def matrices(rng: random.Random, difficulty: int) -> Problem:
    """Matrix trace, determinant, product and inverse."""
    choices = {1: [_trace, _determinant, _product], 2: [_determinant, _product, _inverse, _trace],
               3: [_determinant, _product, _inverse]}
    return rng.choice(choices[difficulty])(rng, difficulty)
