"""Generators: linear equations in one unknown and systems of two linear equations."""
from __future__ import annotations

import random
from fractions import Fraction

from .solution import Problem, SolutionWriter, paren

__all__ = ["linear_equations", "linear_systems", "linear_text"]


def linear_text(a: int, b: int = 0, var: str = "x") -> str:
    """``a*var + b`` as people write it: ``3x + 5``, ``-x - 2``, ``x``, ``7``."""
    if a == 0:
        return str(b)
    head = {1: var, -1: f"-{var}"}.get(a, f"{a}{var}")
    if b == 0:
        return head
    return f"{head} {'+' if b > 0 else '-'} {abs(b)}"


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    return rng.choice([v for v in range(lo, hi + 1) if v != 0])


def _one_side(rng: random.Random, difficulty: int) -> Problem:
    """a x + b = c with an integer solution."""
    a = rng.randint(2, 9)
    x = rng.randint(1, 12) if difficulty == 1 else _nonzero(rng, -15, 15)
    b = _nonzero(rng, -20, 20) if difficulty > 1 else rng.randint(1, 20) * rng.choice([1, -1])
    c = a * x + b
    eq = f"{linear_text(a, b)} = {c}"
    q = rng.choice([f"Solve for x: {eq}.", f"Find x if {eq}.", f"What value of x satisfies {eq}?", f"If {eq}, what is x?"])
    w = SolutionWriter()
    move = f"Subtract {b} from both sides" if b > 0 else f"Add {-b} to both sides"
    rhs = w.compute(move, f"{c} - {paren(b)}", c - b, lhs=f"{a}x")
    ans = w.compute(f"Divide both sides by {a}", f"{rhs} // {a}", x, work=f"{rhs} / {a}", lhs="x")
    program = f"a, b, c = {a}, {b}, {c}\n# a * x + b = c\nx = Fraction(c - b, a)\nprint(x)"
    return w.finish(q, ans, program)


def _both_sides(rng: random.Random, difficulty: int) -> Problem:
    """a x + b = c x + d; difficulty 3 allows a fractional solution and brackets."""
    while True:
        a, c = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
        if a != c:
            break
    if difficulty == 2:
        x = Fraction(_nonzero(rng, -12, 12))
        b = _nonzero(rng, -20, 20)
        d = int(a * x + b - c * x)
        left, lead = linear_text(a, b), []
    else:
        # p(x + r) + s = c x + d, expanded to a x + b with a = p, b = p r + s
        r, s = _nonzero(rng, -9, 9), _nonzero(rng, -20, 20)
        b = a * r + s
        d = _nonzero(rng, -30, 30)
        x = Fraction(d - b, a - c)
        sign = "+" if r > 0 else "-"
        left = f"{a}(x {sign} {abs(r)}) {'+' if s > 0 else '-'} {abs(s)}" if a != 1 else f"(x {sign} {abs(r)}) {'+' if s > 0 else '-'} {abs(s)}"
        lead = [f"Expand the brackets: {paren(a)} * x + {paren(a)} * {paren(r)} {'+' if s > 0 else '-'} {abs(s)} = {linear_text(a, b)}."]
    eq = f"{left} = {linear_text(c, d)}"
    q = rng.choice([f"Solve for x: {eq}.", f"Find the value of x that makes {eq} true.", f"Solve the equation {eq}."])
    w = SolutionWriter()
    for sentence in lead:
        w.say(sentence)
    coef = w.compute("Collect the x terms on the left", f"{a} - {paren(c)}", a - c, lhs="coefficient of x")
    rhs = w.compute("Collect the numbers on the right", f"{d} - {paren(b)}", d - b, lhs="right side")
    if x.denominator == 1:
        ans = w.compute(f"Divide by {coef}", f"{rhs} // {paren(a - c)}", x, work=f"{rhs} / {paren(a - c)}", lhs="x")
    else:
        ans = w.compute(f"Divide by {coef}", f"Fraction({rhs}, {a - c})", x, work=f"{rhs} / {paren(a - c)}", lhs="x")
    program = f"a, b = {a}, {b}  # left side a * x + b\nc, d = {c}, {d}  # right side c * x + d\nx = Fraction(d - b, a - c)\nprint(x)"
    return w.finish(q, ans, program)


def _number_puzzle(rng: random.Random, difficulty: int) -> Problem:
    """'Three times a number, increased by 7, is 31.'"""
    k, x, add = rng.randint(2, 9), rng.randint(2, 30), rng.randint(2, 40)
    words = {2: "Twice", 3: "Three times", 4: "Four times", 5: "Five times", 6: "Six times", 7: "Seven times",
             8: "Eight times", 9: "Nine times"}
    total = k * x + add
    q = rng.choice([f"{words[k]} a number, increased by {add}, is {total}. What is the number?",
                    f"If you multiply a number by {k} and add {add}, you get {total}. Find the number."])
    w = SolutionWriter()
    w.say(f"Let the number be x, so {k}x + {add} = {total}.")
    rhs = w.compute(f"Subtract {add}", f"{total} - {add}", total - add, lhs=f"{k}x")
    ans = w.compute(f"Divide by {k}", f"{rhs} // {k}", x, work=f"{rhs} / {k}", lhs="x")
    return w.finish(q, ans, f"k, add, total = {k}, {add}, {total}\nprint(Fraction(total - add, k))")


def linear_equations(rng: random.Random, difficulty: int) -> Problem:
    """Linear equations in x."""
    choices = {1: [_one_side], 2: [_one_side, _both_sides, _number_puzzle], 3: [_both_sides, _number_puzzle]}
    return rng.choice(choices[difficulty])(rng, difficulty)


# ----------------------------------------------------------------------------------------
# systems of two linear equations


def _equation2(a: int, b: int, c: int) -> str:
    """``a x + b y = c``."""
    return f"{linear_text(a, 0, 'x')} {'+' if b > 0 else '-'} {linear_text(abs(b), 0, 'y')} = {c}"


def _sum_difference(rng: random.Random) -> Problem:
    x, y = rng.randint(1, 30), rng.randint(1, 30)
    s, d = x + y, x - y
    q = rng.choice([f"Solve the system x + y = {s} and x - y = {d}. Give the answer as (x, y).",
                    f"Two numbers x and y satisfy x + y = {s} and x - y = {d}. Find (x, y).",
                    f"If x + y = {s} and x - y = {d}, what is (x, y)?"])
    w = SolutionWriter()
    two_x = w.compute("Add the two equations", f"{s} + {paren(d)}", 2 * x, lhs="2x")
    xs = w.compute("Divide by 2", f"{two_x} // 2", x, work=f"{two_x} / 2", lhs="x")
    w.say_cot(f"Substitute into x + y = {s}: y = {s} - {xs} = {y}.")
    ys = str(y)
    w.block(f"Substitute into x + y = {s} and write the pair", f'print(f"({xs}, {{{s} - {xs}}})")', f"({xs}, {ys})")
    program = f"s, d = {s}, {d}  # x + y = s, x - y = d\nx = (s + d) // 2\ny = s - x\nprint(f\"({{x}}, {{y}})\")"
    return w.finish(q, f"({xs}, {ys})", program)


def _cramer(rng: random.Random, difficulty: int) -> Problem:
    lim = 5 if difficulty == 2 else 9
    while True:
        a1, b1, a2, b2 = (_nonzero(rng, -lim, lim) for _ in range(4))
        det = a1 * b2 - b1 * a2
        if det != 0:
            break
    if difficulty == 2:
        x, y = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
        c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y
    else:
        c1, c2 = rng.randint(-30, 30), rng.randint(-30, 30)
    dx, dy = c1 * b2 - b1 * c2, a1 * c2 - c1 * a2
    x, y = Fraction(dx, det), Fraction(dy, det)
    e1, e2 = _equation2(a1, b1, c1), _equation2(a2, b2, c2)
    q = rng.choice([f"Solve the system of equations {e1} and {e2}. Give the answer as (x, y).",
                    f"Find (x, y) such that {e1} and {e2}.",
                    f"What is the solution (x, y) of the equations {e1} and {e2}?"])
    w = SolutionWriter()
    w.say("Use Cramer's rule.")
    D = w.compute("Compute the determinant", f"{a1} * {paren(b2)} - {paren(b1)} * {paren(a2)}", det,
                  work=[f"{a1} * {paren(b2)} - {paren(b1)} * {paren(a2)}", f"{a1 * b2} - {paren(b1 * a2)}"], lhs="D")
    Dx = w.compute("Replace the x column by the constants", f"{c1} * {paren(b2)} - {paren(b1)} * {paren(c2)}", dx,
                   work=[f"{c1} * {paren(b2)} - {paren(b1)} * {paren(c2)}", f"{c1 * b2} - {paren(b1 * c2)}"], lhs="D_x")
    Dy = w.compute("Replace the y column by the constants", f"{a1} * {paren(c2)} - {paren(c1)} * {paren(a2)}", dy,
                   work=[f"{a1} * {paren(c2)} - {paren(c1)} * {paren(a2)}", f"{a1 * c2} - {paren(c1 * a2)}"], lhs="D_y")
    xs, ys = str(x), str(y)
    w.say_cot(f"Divide by D: x = {Dx} / {paren(det)} = {xs} and y = {Dy} / {paren(det)} = {ys}.")
    w.block("Divide D_x and D_y by D", f'print(f"({{Fraction({Dx}, {D})}}, {{Fraction({Dy}, {D})}})")', f"({xs}, {ys})")
    program = (f"a1, b1, c1 = {a1}, {b1}, {c1}\na2, b2, c2 = {a2}, {b2}, {c2}\n"
               "d = a1 * b2 - b1 * a2\nx = Fraction(c1 * b2 - b1 * c2, d)\ny = Fraction(a1 * c2 - c1 * a2, d)\n"
               "print(f\"({x}, {y})\")")
    return w.finish(q, f"({xs}, {ys})", program)


def linear_systems(rng: random.Random, difficulty: int) -> Problem:
    """Two linear equations in x and y; the answer is ``(x, y)``."""
    if difficulty == 1:
        return _sum_difference(rng)
    return _cramer(rng, difficulty)
