"""Generators: gcd, lcm and modular arithmetic; arithmetic and geometric sequences and series."""
from __future__ import annotations

import math
import random
from fractions import Fraction

from .solution import Problem, SolutionWriter, literal, paren

__all__ = ["number_theory", "sequences"]


def _euclid_lines(a: int, b: int) -> list[str]:
    """Euclid's algorithm written out: ``84 = 2 * 36 + 12`` until the remainder is 0."""
    lines = []
    while b:
        q, r = divmod(a, b)
        lines.append(f"{a} = {q} * {b} + {r}")
        a, b = b, r
    return lines


def _gcd(rng: random.Random, difficulty: int) -> Problem:
    g = rng.randint(2, 12 if difficulty == 1 else 40)
    hi = {1: 8, 2: 25, 3: 60}[difficulty]
    while True:
        x, y = rng.randint(2, hi), rng.randint(2, hi)
        if x != y:
            break
    a, b = max(x, y) * g, min(x, y) * g
    q = rng.choice([f"What is the greatest common divisor of {a} and {b}?", f"Find gcd({a}, {b}).",
                    f"Compute the GCD of {a} and {b}."])
    w = SolutionWriter()
    w.say_cot("Use Euclid's algorithm: " + "; ".join(_euclid_lines(a, b)) + ".")
    ans = w.compute("Take the last nonzero remainder", f"math.gcd({a}, {b})", math.gcd(a, b),
                    work=str(math.gcd(a, b)), lhs=f"gcd({a}, {b})")
    return w.finish(q, ans, f"a, b = {a}, {b}\nwhile b:\n    a, b = b, a % b\nprint(a)")


def _lcm(rng: random.Random, difficulty: int) -> Problem:
    if difficulty == 1:
        a, b = rng.sample(range(2, 16), 2)
        nums = [a, b]
    else:
        nums = rng.sample(range(2, 25 if difficulty == 2 else 40), 3)
    text = ", ".join(map(str, nums[:-1])) + f" and {nums[-1]}"
    q = rng.choice([f"What is the least common multiple of {text}?", f"Find the LCM of {text}.",
                    f"What is the smallest positive number divisible by {text}?"])
    w = SolutionWriter()
    acc = nums[0]
    for n in nums[1:]:
        g = math.gcd(acc, n)
        w.say_cot(f"gcd({acc}, {n}) = {g} (" + "; ".join(_euclid_lines(max(acc, n), min(acc, n))) + ").")
        new = acc * n // g
        w.compute("Divide the product by the gcd", f"math.lcm({acc}, {n})", new,
                  work=[f"{acc} * {n} / {g}", f"{acc * n} / {g}"], lhs=f"lcm({acc}, {n})")
        acc = new
    return w.finish(q, acc, f"import math\nnums = {nums}\nresult = 1\nfor n in nums:\n    result = result * n // math.gcd(result, n)\nprint(result)")


def _remainder(rng: random.Random, difficulty: int) -> Problem:
    m = rng.randint(3, 12 if difficulty == 1 else 30)
    if difficulty == 1:
        a = rng.randint(m + 1, 150)
        q = rng.choice([f"What is the remainder when {a} is divided by {m}?", f"Compute {a} mod {m}.",
                        f"Find the remainder of {a} divided by {m}."])
        w = SolutionWriter()
        quotient = a // m
        w.say_cot(f"{m} goes into {a} {quotient} times: {m} * {quotient} = {m * quotient}.")
        ans = w.compute(f"Subtract {m * quotient}", f"{a} % {m}", a % m, work=f"{a} - {m * quotient}", lhs="remainder")
        return w.finish(q, ans, f"print({a} % {m})")
    a, b = rng.randint(100, 999), rng.randint(10, 999)
    q = rng.choice([f"What is the remainder when {a} * {b} is divided by {m}?", f"Compute ({a} * {b}) mod {m}.",
                    f"Find the remainder of the product {a} * {b} divided by {m}."])
    w = SolutionWriter()
    ra = w.compute(f"Reduce {a} mod {m}", f"{a} % {m}", a % m, work=f"{a} - {m} * {a // m}", lhs=f"{a} mod {m}")
    rb = w.compute(f"Reduce {b} mod {m}", f"{b} % {m}", b % m, work=f"{b} - {m} * {b // m}", lhs=f"{b} mod {m}")
    p = w.compute("Multiply the remainders", f"{ra} * {rb}", (a % m) * (b % m))
    ans = w.compute(f"Reduce the product mod {m}", f"{p} % {m}", a * b % m, work=f"{p} - {m} * {int(p) // m}")
    return w.finish(q, ans, f"a, b, m = {a}, {b}, {m}\nprint(a * b % m)")


def _power_mod(rng: random.Random, difficulty: int) -> Problem:
    base, exp, m = rng.randint(2, 9), rng.randint(5, 12), rng.choice([5, 7, 9, 11, 13])
    q = rng.choice([f"What is the remainder when {base}^{exp} is divided by {m}?", f"Compute {base}^{exp} mod {m}.",
                    f"Find {base} to the power {exp}, modulo {m}."])
    w = SolutionWriter()
    lines, r = [], base % m
    lines.append(f"{base}^1 leaves {r}")
    for k in range(2, exp + 1):
        nxt = r * base % m
        lines.append(f"{base}^{k} leaves {r} * {base} = {r * base}, which is {nxt} mod {m}")
        r = nxt
    w.say_cot(f"Multiply by the base one step at a time, keeping remainders mod {m}. " + "; ".join(lines) + ".")
    ans = w.compute("Take the last power", f"pow({base}, {exp}, {m})", r, work=str(r), lhs=f"{base}^{exp} mod {m}")
    return w.finish(q, ans, f"print(pow({base}, {exp}, {m}))")


def _congruence(rng: random.Random, difficulty: int) -> Problem:
    m = rng.choice([7, 11, 13, 17, 19])
    a, x = rng.randint(2, m - 1), rng.randint(1, m - 1)
    b = a * x % m
    q = rng.choice([f"Find the smallest positive integer x such that {a}x leaves remainder {b} when divided by {m}.",
                    f"Solve {a}x = {b} (mod {m}) for the smallest positive integer x."])
    w = SolutionWriter()
    tries = [f"{a} * {k} = {a * k}, which is {a * k % m} mod {m}" for k in range(1, x + 1)]
    w.say_cot("Try x = 1, 2, 3, ...: " + "; ".join(tries) + ".")
    ans = w.compute("Take the first x that works", f"next(x for x in range(1, {m}) if {a} * x % {m} == {b})", x,
                    work=str(x), lhs="x")
    return w.finish(q, ans, f"a, b, m = {a}, {b}, {m}\nprint(next(x for x in range(1, m) if a * x % m == b))")


def number_theory(rng: random.Random, difficulty: int) -> Problem:
    """gcd, lcm, remainders, modular powers and linear congruences."""
    choices = {1: [_gcd, _lcm, _remainder], 2: [_gcd, _lcm, _remainder], 3: [_gcd, _power_mod, _congruence, _lcm]}
    return rng.choice(choices[difficulty])(rng, difficulty)


# ----------------------------------------------------------------------------------------
# sequences and series


def _arithmetic_term(rng: random.Random, difficulty: int) -> Problem:
    a, d = rng.randint(1, 20), rng.randint(2, 9) * (1 if difficulty == 1 else rng.choice([1, -1]))
    n = rng.randint(5, 20 if difficulty == 1 else 60)
    start = ", ".join(str(a + i * d) for i in range(3))
    q = rng.choice([f"What is the {n}th term of the arithmetic sequence {start}, ...?",
                    f"The sequence {start}, ... goes up by the same amount each time. Find term number {n}.",
                    f"Find the {n}th term of {start}, ..."])
    w = SolutionWriter()
    w.compute("Subtract consecutive terms", f"{a + d} - {a}", d, lhs="d")
    ans = w.compute("Use a + (n - 1) * d", f"{a} + ({n} - 1) * {paren(d)}", a + (n - 1) * d,
                    work=[f"{a} + ({n} - 1) * {paren(d)}", f"{a} + {n - 1} * {paren(d)}", f"{a} + {paren((n - 1) * d)}"], lhs=f"term {n}")
    return w.finish(q, ans, f"a, d, n = {a}, {d}, {n}\nprint(a + (n - 1) * d)")


def _arithmetic_sum(rng: random.Random, difficulty: int) -> Problem:
    a, d = rng.randint(1, 30), rng.randint(1, 12) * rng.choice([1, 1, -1])
    n = rng.randint(5, 20 if difficulty == 2 else 50)
    start = ", ".join(str(a + i * d) for i in range(3))
    last = a + (n - 1) * d
    total = n * (a + last) // 2
    q = rng.choice([f"What is the sum of the first {n} terms of the arithmetic sequence {start}, ...?",
                    f"Add up the first {n} terms of {start}, .... What is the total?"])
    w = SolutionWriter()
    w.compute("Subtract consecutive terms", f"{a + d} - {a}", d, lhs="d")
    la = w.compute("Use a + (n - 1) * d", f"{a} + ({n} - 1) * {paren(d)}", last,
                   work=[f"{a} + {n - 1} * {paren(d)}", f"{a} + {paren((n - 1) * d)}"], lhs=f"term {n}")
    ans = w.compute("Use n * (first + last) / 2", f"{n} * ({a} + {paren(last)}) // 2", total,
                    work=[f"{n} * ({a} + {paren(int(la))}) / 2", f"{n} * {a + last} / 2", f"{n * (a + last)} / 2"], lhs="sum")
    return w.finish(q, ans, f"a, d, n = {a}, {d}, {n}\nprint(sum(a + i * d for i in range(n)))")


def _geometric_term(rng: random.Random, difficulty: int) -> Problem:
    a, r = rng.randint(1, 6), rng.choice([2, 3, -2] if difficulty == 2 else [2, 3, -2, -3, 4])
    n = rng.randint(4, 8 if difficulty == 2 else 10)
    start = ", ".join(str(a * r**i) for i in range(3))
    q = rng.choice([f"What is the {n}th term of the geometric sequence {start}, ...?",
                    f"Each term of {start}, ... is the previous one times the same number. Find the {n}th term."])
    w = SolutionWriter()
    w.compute("Divide consecutive terms", f"{a * r} // {a}", r, work=f"{a * r} / {a}", lhs="r")
    ans = w.compute("Use a * r^(n - 1)", f"{a} * {paren(r)}**{n - 1}", a * r ** (n - 1),
                    work=[f"{a} * {paren(r)}^{n - 1}", f"{a} * {paren(r ** (n - 1))}"], lhs=f"term {n}")
    return w.finish(q, ans, f"a, r, n = {a}, {r}, {n}\nprint(a * r ** (n - 1))")


def _geometric_sum(rng: random.Random, difficulty: int) -> Problem:
    a = rng.randint(1, 9)
    r = rng.choice([Fraction(2), Fraction(3), Fraction(-2), Fraction(1, 2), Fraction(1, 3)])
    n = rng.randint(4, 8)
    total = a * (1 - r**n) / (1 - r)
    start = ", ".join(str(a * r**i) for i in range(3))
    q = rng.choice([f"Find the sum of the first {n} terms of the geometric sequence {start}, ...",
                    f"What is the sum of the first {n} terms of {start}, ...?"])
    w = SolutionWriter()
    w.compute("Divide consecutive terms", f"Fraction({literal(a * r)}, {a})", r, work=f"{a * r} / {a}", lhs="r")
    rn = w.compute(f"Raise r to the power {n}", f"{literal(r)}**{n}", r**n, work=f"({r})^{n}", lhs=f"r^{n}")
    ans = w.compute("Use a * (1 - r^n) / (1 - r)", f"Fraction({a} * (1 - {literal(r**n)})) / (1 - {literal(r)})", total,
                    work=[f"{a} * (1 - {paren(Fraction(rn))}) / (1 - {paren(r)})", f"{a} * {paren(1 - r**n)} / {paren(1 - r)}"], lhs="sum")
    return w.finish(q, ans, f"a, r, n = {a}, {literal(r)}, {n}\nprint(sum(a * Fraction(r) ** i for i in range(n)))")


def _which_term(rng: random.Random, difficulty: int) -> Problem:
    a, d, n = rng.randint(1, 20), rng.randint(2, 9), rng.randint(10, 80)
    target = a + (n - 1) * d
    start = ", ".join(str(a + i * d) for i in range(3))
    q = rng.choice([f"Which term of the arithmetic sequence {start}, ... is equal to {target}?",
                    f"In the sequence {start}, ..., term number n equals {target}. What is n?"])
    w = SolutionWriter()
    w.compute("Subtract consecutive terms", f"{a + d} - {a}", d, lhs="d")
    steps = w.compute(f"Count the steps of {d} from {a} to {target}", f"({target} - {a}) // {d}", n - 1,
                      work=[f"({target} - {a}) / {d}", f"{target - a} / {d}"], lhs="steps")
    ans = w.compute("Add one for the first term", f"{steps} + 1", n, lhs="n")
    return w.finish(q, ans, f"a, d, target = {a}, {d}, {target}\nprint((target - a) // d + 1)")


def sequences(rng: random.Random, difficulty: int) -> Problem:
    """Arithmetic and geometric sequences and series."""
    choices = {1: [_arithmetic_term], 2: [_arithmetic_term, _arithmetic_sum, _geometric_term],
               3: [_arithmetic_sum, _geometric_sum, _which_term, _geometric_term]}
    return rng.choice(choices[difficulty])(rng, difficulty)
