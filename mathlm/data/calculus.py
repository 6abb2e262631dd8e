"""Generator: derivatives of polynomials at a point and definite integrals of polynomials.

A polynomial is a dict ``{power: coefficient}``; questions write it as ``3x^3 - 2x + 5``.
"""
from __future__ import annotations

import random
from fractions import Fraction

from .solution import Problem, SolutionWriter, literal, paren

__all__ = ["calculus", "poly_text"]


def _coef_text(c: Fraction | int, k: int) -> str:
    c = Fraction(c)
    body = "x" if k == 1 else f"x^{k}"
    if k == 0:
        return str(abs(c))
    if abs(c) == 1:
        return body
    return f"{abs(c)}{body}" if c.denominator == 1 else f"({abs(c)}){body}"


def poly_text(poly: dict[int, int | Fraction]) -> str:
    """``{2: 3, 1: -1, 0: 5}`` -> ``3x^2 - x + 5`` (highest power first)."""
    out = []
    for k in sorted(poly, reverse=True):
        c = poly[k]
        if c == 0:
            continue
        sign = "-" if c < 0 else "+"
        out.append((sign, _coef_text(c, k)))
    if not out:
        return "0"
    first_sign, first = out[0]
    return ("-" if first_sign == "-" else "") + first + "".join(f" {s} {t}" for s, t in out[1:])


def _term_text(c: Fraction | int, k: int) -> str:
    """A signed monomial: ``-3x^2``, ``(1/2)x``, ``-4``."""
    return ("-" if c < 0 else "") + _coef_text(c, k)


def _signed_sum(parts: list[tuple[Fraction | int, str]]) -> str:
    """Join ``(value, text of |value|)`` pairs as ``a - b + c``: signs come from the values."""
    out = ""
    for i, (value, text) in enumerate(parts):
        if i == 0:
            out = ("-" if value < 0 else "") + text
        else:
            out += (" - " if value < 0 else " + ") + text
    return out


def _evaluation(poly: dict[int, Fraction | int], x: int) -> tuple[str, list[str]]:
    """Python code for poly(x) and the CoT chain that evaluates it by hand."""
    terms = [(k, Fraction(c)) for k, c in sorted(poly.items(), reverse=True) if c != 0]
    code, shown, powered, products = [], [], [], []
    for k, c in terms:
        a = abs(c)
        code_c = str(a.numerator) if a.denominator == 1 else f"Fraction({a.numerator}, {a.denominator})"
        coef = str(a) if a.denominator == 1 else f"({a})"
        code.append((c, f"{code_c} * {paren(x)}**{k}" if k > 1 else f"{code_c} * {paren(x)}" if k == 1 else code_c))
        shown.append((c, f"{coef} * {paren(x)}^{k}" if k > 1 else f"{coef} * {paren(x)}" if k == 1 else str(a)))
        powered.append((c, f"{coef} * {paren(x ** k)}" if k > 1 else shown[-1][1]))
        products.append((c * x**k, str(abs(c * x**k))))
    chain = [_signed_sum(shown), _signed_sum(powered), _signed_sum(products)]
    return _signed_sum(code), list(dict.fromkeys(chain))  # drop repeated forms, keep order


def _random_poly(rng: random.Random, degree: int, lo: int, hi: int) -> dict[int, int]:
    poly = {k: rng.randint(lo, hi) for k in range(degree + 1)}
    while poly[degree] == 0:
        poly[degree] = rng.randint(lo, hi)
    return poly


def _derivative_at(rng: random.Random, difficulty: int) -> Problem:
    degree, lo, hi, xr = {1: (2, 1, 9, (1, 5)), 2: (3, -5, 5, (-3, 3)), 3: (4, -6, 6, (-4, 4))}[difficulty]
    poly = _random_poly(rng, degree, lo, hi)
    x0 = rng.randint(*xr)
    deriv = {k - 1: k * c for k, c in poly.items() if k > 0}
    value = sum(c * x0**k for k, c in deriv.items())
    pt = poly_text(poly)
    q = rng.choice([f"Let f(x) = {pt}. What is f'({x0})?", f"Find the derivative of f(x) = {pt} at x = {x0}.",
                    f"If f(x) = {pt}, compute f'({x0})."])
    w = SolutionWriter()
    rules = [f"{_term_text(c, k)} gives {k} * {paren(c)}{'' if k == 1 else ' * x' if k == 2 else f' * x^{k - 1}'}"
             f" = {_term_text(k * c, k - 1)}" for k, c in sorted(poly.items(), reverse=True) if k > 0 and c != 0]
    w.say_cot("By the power rule, " + "; ".join(rules) + ".")
    w.say(f"The derivative is f'(x) = {poly_text(deriv)}.")
    code, chain = _evaluation(deriv, x0)
    ans = w.compute(f"Substitute x = {x0}", code, value, work=chain, lhs=f"f'({x0})")
    program = (f"coeffs = {dict(sorted(poly.items(), reverse=True))}  # power: coefficient\nx = {x0}\n"
               "print(sum(k * c * x ** (k - 1) for k, c in coeffs.items() if k > 0))")
    return w.finish(q, ans, program)


def _integral(rng: random.Random, difficulty: int) -> Problem:
    if difficulty == 1:
        degree = rng.randint(1, 2)
        # coefficients divisible by k + 1 keep the antiderivative's coefficients whole
        poly = {k: (k + 1) * rng.randint(1, 5) for k in range(degree + 1)}
        a, b = 0, rng.randint(1, 4)
    else:
        degree = 2 if difficulty == 2 else 3
        poly = _random_poly(rng, degree, -6, 6)
        a, b = sorted(rng.sample(range(-2, 4) if difficulty == 2 else range(-3, 5), 2))
    anti = {k + 1: Fraction(c, k + 1) for k, c in poly.items()}
    big_f = lambda x: sum(c * x**k for k, c in anti.items())  # noqa: E731
    value = big_f(b) - big_f(a)
    pt = poly_text(poly)
    q = rng.choice([f"Compute the definite integral of {pt} from x = {a} to x = {b}.",
                    f"Evaluate the integral from {a} to {b} of ({pt}) dx.",
                    f"What is the integral of f(x) = {pt} over the interval [{a}, {b}]?"])
    w = SolutionWriter()
    w.say_cot("Raise each power by one and divide by the new power: " + "; ".join(
        f"{_term_text(c, k)} becomes {paren(c)}/{k + 1} * x{'' if k == 0 else f'^{k + 1}'} = {_term_text(Fraction(c, k + 1), k + 1)}"
        for k, c in sorted(poly.items(), reverse=True) if c != 0) + ".")
    w.say(f"An antiderivative is F(x) = {poly_text(anti)}.")
    code_b, chain_b = _evaluation(anti, b)
    code_a, chain_a = _evaluation(anti, a)
    fb = w.compute(f"Evaluate F({b})", code_b, big_f(b), work=chain_b, lhs=f"F({b})")
    fa = w.compute(f"Evaluate F({a})", code_a, big_f(a), work=chain_a, lhs=f"F({a})") if a != 0 else None
    if fa is None:
        w.say(f"F(0) = 0, so the integral is F({b}) = {fb}.")
        ans = fb
    else:
        ans = w.compute(f"Subtract F({a}) from F({b})", f"{literal(big_f(b))} - {literal(big_f(a))}",
                        value, work=f"{fb} - {paren(big_f(a))}", lhs="integral")
    program = (f"coeffs = {dict(sorted(poly.items(), reverse=True))}  # power: coefficient\n"
               "def F(x):  # antiderivative\n    return sum(Fraction(c, k + 1) * x ** (k + 1) for k, c in coeffs.items())\n"
               f"print(F({b}) - F({a}))")
    return w.finish(q, ans, program)


def calculus(rng: random.Random, difficulty: int) -> Problem:
    """Polynomial derivatives at a point and definite integrals of polynomials."""
    return rng.choice([_derivative_at, _integral])(rng, difficulty)
