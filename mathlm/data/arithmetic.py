"""Generators: multi-step arithmetic word problems, fractions and percentages, ratios and rates.

Each generator is ``f(rng, difficulty) -> Problem``. Difficulty 1 keeps numbers to one or two
digits and one or two steps; 3 uses up to three-digit numbers and three or four steps.
"""
from __future__ import annotations

import math
import random
from fractions import Fraction

from .contexts import item, people, person
from .solution import Problem, SolutionWriter, literal

__all__ = ["arithmetic", "fractions_percent", "ratios_rates"]


# ----------------------------------------------------------------------------------------
# multi-step arithmetic word problems


def _add_or_take(rng: random.Random, difficulty: int) -> Problem:
    p, it = person(rng), item(rng)
    a = rng.randint(5, 30) if difficulty == 1 else rng.randint(20, 99)
    b = rng.randint(2, a - 1)
    w = SolutionWriter()
    if rng.random() < 0.5:
        q = rng.choice([
            f"{p.name} has {a} {it.many}. {p.They} gets {b} more. How many {it.many} does {p.name} have now?",
            f"{p.name} has {a} {it.many} and finds {b} more. How many {it.many} does {p.name} have in total?",
            f"There are {a} {it.many} in a {it.box}. {p.name} puts in {b} more. How many {it.many} are in the {it.box} now?",
        ])
        ans = w.compute(f"Add the {b} new {it.many}", f"{a} + {b}", a + b)
        program = f"have = {a}\nnew = {b}\nprint(have + new)"
    else:
        q = rng.choice([
            f"{p.name} has {a} {it.many} and gives {b} to a friend. How many {it.many} does {p.name} have left?",
            f"There are {a} {it.many} in a {it.box}. {p.name} takes out {b}. How many {it.many} are still in the {it.box}?",
            f"{p.name} had {a} {it.many} and lost {b} of them. How many {it.many} are left?",
        ])
        ans = w.compute(f"Take away the {b} {it.many}", f"{a} - {b}", a - b)
        program = f"have = {a}\ngone = {b}\nprint(have - gone)"
    return w.finish(q, ans, program)


def _groups(rng: random.Random, difficulty: int) -> Problem:
    """a + b * c (difficulty 1-2) or a + b * c - d (2-3)."""
    p, it = person(rng), item(rng)
    hi = {1: 9, 2: 15, 3: 40}[difficulty]
    a = rng.randint(2, 20 if difficulty == 1 else 99)
    b, c = rng.randint(2, hi if difficulty > 1 else 6), rng.randint(2, hi)
    subtract = difficulty == 3 or (difficulty == 2 and rng.random() < 0.5)
    d = rng.randint(2, a + b * c - 1) if subtract else 0
    ask = (f" {p.They} then gives away {d} {it.many}." if subtract else "")
    q = rng.choice([
        f"{p.name} has {a} {it.many}. {p.They} buys {b} {it.boxes} with {c} {it.many} in each.{ask} How many {it.many} does {p.name} have now?",
        f"{p.name} starts with {a} {it.many} and then gets {b} {it.boxes} of {c} {it.many} each.{ask} How many {it.many} does {p.name} have?",
        f"A {it.box} holds {c} {it.many}. {p.name} has {a} {it.many} and buys {b} {it.boxes}.{ask} How many {it.many} does {p.name} have in all?",
    ])
    w = SolutionWriter()
    bought = w.compute(f"Count the {it.many} in the {b} {it.boxes}", f"{b} * {c}", b * c)
    total = w.compute(f"Add the {a} {it.many} {p.they} had", f"{a} + {bought}", a + b * c)
    program = f"had = {a}\nbought = {b} * {c}\ntotal = had + bought\n"
    if subtract:
        total = w.compute(f"Take away the {d} {p.they} gives", f"{total} - {d}", a + b * c - d)
        program += f"total = total - {d}\n"
    return w.finish(q, total, program + "print(total)")


def _share(rng: random.Random, difficulty: int) -> Problem:
    """(a + b * c) shared equally among k friends."""
    p, it = person(rng), item(rng)
    k = rng.randint(2, 6 if difficulty == 2 else 12)
    b, c = rng.randint(2, 12), rng.randint(2, 25 if difficulty == 2 else 60)
    # choose a so that the total divides by k
    a = rng.randint(1, 50 if difficulty == 2 else 200)
    a += (-(a + b * c)) % k
    each = (a + b * c) // k
    q = rng.choice([
        f"{p.name} has {a} {it.many} and buys {b} {it.boxes} of {c} {it.many}. {p.They} shares all of them equally among {k} friends. How many {it.many} does each friend get?",
        f"A class has {a} {it.many} and receives {b} {it.boxes} with {c} {it.many} in each. The {it.many} are split equally into {k} groups. How many {it.many} are in each group?",
        f"{p.name} collects {a} {it.many}, then {b} more {it.boxes} of {c}. If {p.they} divides them evenly among {k} friends, how many does each friend receive?",
    ])
    w = SolutionWriter()
    bought = w.compute(f"Count the {it.many} in the {b} {it.boxes}", f"{b} * {c}", b * c)
    total = w.compute(f"Add the {a} from before", f"{a} + {bought}", a + b * c)
    ans = w.compute(f"Share them equally among {k}", f"{total} // {k}", each, work=f"{total} / {k}")
    program = f"total = {a} + {b} * {c}\nfriends = {k}\nprint(total // friends)"
    return w.finish(q, ans, program)


def _wages(rng: random.Random, difficulty: int) -> Problem:
    """p dollars an hour, h hours a day, d days, spends s: what is left."""
    p = person(rng)
    rate, hours, days = rng.randint(8, 30), rng.randint(2, 8), rng.randint(3, 12)
    earned = rate * hours * days
    spent = rng.randint(10, earned - 1)
    q = rng.choice([
        f"{p.name} earns {rate} dollars an hour and works {hours} hours a day for {days} days. {p.They} spends {spent} dollars. How many dollars does {p.name} have left?",
        f"A job pays {rate} dollars per hour. {p.name} works {hours} hours each day for {days} days and then spends {spent} dollars on a bike. How many dollars are left?",
    ])
    w = SolutionWriter()
    per_day = w.compute("Find the pay for one day", f"{rate} * {hours}", rate * hours)
    total = w.compute(f"Find the pay for {days} days", f"{per_day} * {days}", earned)
    ans = w.compute(f"Subtract the {spent} dollars spent", f"{total} - {spent}", earned - spent)
    program = f"rate = {rate}\nhours = {hours}\ndays = {days}\nspent = {spent}\nprint(rate * hours * days - spent)"
    return w.finish(q, ans, program)


def _change(rng: random.Random, difficulty: int) -> Problem:
    """Buys n1 things at p1 and n2 at p2, pays with a bill: the change."""
    p, (it1, it2) = person(rng), rng.sample(["notebook", "pen", "ruler", "eraser", "folder", "marker"], 2)
    n1, n2 = rng.randint(2, 9), rng.randint(2, 9)
    p1, p2 = rng.randint(2, 25), rng.randint(2, 25)
    cost = n1 * p1 + n2 * p2
    bill = next(b for b in (20, 50, 100, 200, 500) if b > cost)
    q = (f"{p.name} buys {n1} {it1}s at {p1} dollars each and {n2} {it2}s at {p2} dollars each. "
         f"{p.They} pays with a {bill} dollar bill. How much change, in dollars, does {p.they} get?")
    w = SolutionWriter()
    c1 = w.compute(f"Find the cost of the {it1}s", f"{n1} * {p1}", n1 * p1)
    c2 = w.compute(f"Find the cost of the {it2}s", f"{n2} * {p2}", n2 * p2)
    tot = w.compute("Add the two costs", f"{c1} + {c2}", cost)
    ans = w.compute(f"Subtract the cost from {bill}", f"{bill} - {tot}", bill - cost)
    program = f"cost = {n1} * {p1} + {n2} * {p2}\npaid = {bill}\nprint(paid - cost)"
    return w.finish(q, ans, program)


def arithmetic(rng: random.Random, difficulty: int) -> Problem:
    """Multi-step arithmetic word problems."""
    choices = {1: [_add_or_take, _groups], 2: [_groups, _share], 3: [_groups, _share, _wages, _change]}
    return rng.choice(choices[difficulty])(rng, difficulty)


# ----------------------------------------------------------------------------------------
# fractions and percentages


def _fraction_pair(rng: random.Random, max_den: int) -> tuple[Fraction, Fraction]:
    while True:
        d1, d2 = rng.randint(2, max_den), rng.randint(2, max_den)
        x, y = Fraction(rng.randint(1, d1 - 1), d1), Fraction(rng.randint(1, d2 - 1), d2)
        if x != y:
            return x, y


def _add_fractions(rng: random.Random, difficulty: int) -> Problem:
    x, y = _fraction_pair(rng, 9 if difficulty == 1 else 12)
    op = rng.choice("+-")
    if op == "-" and x < y:
        x, y = y, x
    result = x + y if op == "+" else x - y
    q = rng.choice([f"What is {x} {op} {y}?", f"Compute {x} {op} {y}.",
                    f"Find the value of {x} {op} {y} as a fraction in lowest terms."])
    w = SolutionWriter()
    den = math.lcm(x.denominator, y.denominator)
    a, b = x.numerator * (den // x.denominator), y.numerator * (den // y.denominator)
    w.say_cot(f"Write both fractions over {den}: {x} = {a}/{den} and {y} = {b}/{den}.")
    raw = a + b if op == "+" else a - b
    work = [f"{a}/{den} {op} {b}/{den}", f"{raw}/{den}"]
    w.compute("Combine the fractions", f"Fraction({x.numerator}, {x.denominator}) {op} Fraction({y.numerator}, {y.denominator})",
              result, work=work)
    program = (f"x = Fraction({x.numerator}, {x.denominator})\ny = Fraction({y.numerator}, {y.denominator})\n"
               f"print(x {op} y)")
    return w.finish(q, result, program)


def _multiply_fractions(rng: random.Random, difficulty: int) -> Problem:
    x, y = _fraction_pair(rng, 9)
    if rng.random() < 0.25:
        x = 1 / x  # an improper fraction now and then
    divide = rng.random() < 0.5
    result = x / y if divide else x * y
    sym, word = ("/", "divided by") if divide else ("*", "times")
    q = rng.choice([f"What is {x} {word} {y}?", f"Compute ({x}) {sym} ({y}).", f"Find {x} {word} {y} in lowest terms."])
    w = SolutionWriter()
    if divide:
        w.say(f"Dividing by {y} is the same as multiplying by {1 / y}.")
        z = 1 / y
    else:
        z = y
    work = [f"({x.numerator} * {z.numerator}) / ({x.denominator} * {z.denominator})",
            f"{x.numerator * z.numerator}/{x.denominator * z.denominator}"]
    w.compute("Multiply the numerators and the denominators",
              f"Fraction({x.numerator}, {x.denominator}) * Fraction({z.numerator}, {z.denominator})", result, work=work)
    program = f"x = Fraction({x.numerator}, {x.denominator})\ny = Fraction({y.numerator}, {y.denominator})\nprint(x {sym} y)"
    return w.finish(q, result, program)


def _percent_of(rng: random.Random, difficulty: int) -> Problem:
    pct = rng.choice([10, 20, 25, 30, 40, 50, 60, 75, 80, 90] if difficulty == 1 else [5, 12, 15, 35, 45, 65, 85, 95])
    step = 100 // math.gcd(pct, 100)
    base = step * rng.randint(1, max(2, 100 // step) if difficulty == 1 else 40)
    result = pct * base // 100
    q = rng.choice([f"What is {pct}% of {base}?", f"Find {pct} percent of {base}.", f"Compute {pct}% of {base}."])
    w = SolutionWriter()
    ans = w.compute(f"Take {pct}/100 of {base}", f"{pct} * {base} // 100", result,
                    work=[f"{pct} * {base} / 100", f"{pct * base} / 100"])
    program = f"percent = {pct}\nbase = {base}\nprint(percent * base // 100)"
    return w.finish(q, ans, program)


def _discount(rng: random.Random, difficulty: int) -> Problem:
    pct = rng.choice([10, 15, 20, 25, 30, 40, 50])
    step = 100 // math.gcd(pct, 100)
    price = step * rng.randint(2, 30)
    off = pct * price // 100
    thing = rng.choice(["jacket", "lamp", "bicycle", "game", "backpack", "chair"])
    q = rng.choice([
        f"A {thing} costs {price} dollars. It is on sale for {pct}% off. What is the sale price in dollars?",
        f"A store takes {pct}% off a {thing} that normally costs {price} dollars. How many dollars does the {thing} cost now?",
    ])
    w = SolutionWriter()
    disc = w.compute(f"Find {pct}% of {price}", f"{pct} * {price} // 100", off, work=[f"{pct} * {price} / 100", f"{pct * price} / 100"])
    ans = w.compute(f"Subtract the discount from {price}", f"{price} - {disc}", price - off)
    program = f"price = {price}\npercent_off = {pct}\nprint(price - price * percent_off // 100)"
    return w.finish(q, ans, program)


def _what_percent(rng: random.Random, difficulty: int) -> Problem:
    whole = rng.choice([20, 25, 40, 50, 80, 120, 160, 200, 250, 400])
    part = rng.randint(1, whole - 1)
    result = Fraction(part * 100, whole)
    q = rng.choice([f"What percent of {whole} is {part}?", f"{part} is what percent of {whole}?",
                    f"Express {part} out of {whole} as a percent."])
    w = SolutionWriter()
    work = [f"{part} / {whole} * 100", f"{part * 100} / {whole}"]
    ans = w.compute("Divide the part by the whole and multiply by 100", f"Fraction({part} * 100, {whole})", result, work=work)
    program = f"part = {part}\nwhole = {whole}\nprint(Fraction(part * 100, whole))"
    return w.finish(q, ans, program)


def _successive_change(rng: random.Random, difficulty: int) -> Problem:
    up, down = rng.choice([10, 20, 25, 50]), rng.choice([10, 20, 25, 50])
    price = 20 * rng.randint(1, 30)
    mid = price + price * up // 100
    final = mid - Fraction(mid * down, 100)
    q = (f"A price of {price} dollars goes up by {up}% and then the new price goes down by {down}%. "
         "What is the final price in dollars?")
    w = SolutionWriter()
    inc = w.compute(f"Find {up}% of {price}", f"{up} * {price} // 100", price * up // 100,
                    work=f"{up} * {price} / 100")
    m = w.compute("Add it to the price", f"{price} + {inc}", mid)
    dec = w.compute(f"Find {down}% of {m}", f"Fraction({down} * {m}, 100)", Fraction(mid * down, 100),
                    work=f"{down} * {m} / 100")
    d = Fraction(mid * down, 100)
    ans = w.compute("Subtract it from the new price", f"{m} - {literal(d)}", final,
                    work=f"{m} - {dec}")
    program = (f"price = Fraction({price})\nprice = price * (100 + {up}) / 100\n"
               f"price = price * (100 - {down}) / 100\nprint(price)")
    return w.finish(q, ans, program)


def fractions_percent(rng: random.Random, difficulty: int) -> Problem:
    """Fractions (add, subtract, multiply, divide) and percentages."""
    choices = {1: [_add_fractions, _percent_of], 2: [_add_fractions, _multiply_fractions, _percent_of, _discount],
               3: [_multiply_fractions, _what_percent, _successive_change]}
    return rng.choice(choices[difficulty])(rng, difficulty)


# ----------------------------------------------------------------------------------------
# ratios and rates


def _distance(rng: random.Random, difficulty: int) -> Problem:
    speed, hours = rng.randint(10, 99), rng.randint(2, 9)
    vehicle = rng.choice(["car", "bus", "train", "truck"])
    q = rng.choice([f"A {vehicle} travels at {speed} km per hour. How many km does it travel in {hours} hours?",
                    f"How far, in km, does a {vehicle} going {speed} km per hour get in {hours} hours?"])
    w = SolutionWriter()
    ans = w.compute("Multiply the speed by the time", f"{speed} * {hours}", speed * hours)
    return w.finish(q, ans, f"speed = {speed}\nhours = {hours}\nprint(speed * hours)")


def _unit_price(rng: random.Random, difficulty: int) -> Problem:
    n, m = rng.sample(range(2, 10 if difficulty == 1 else 25), 2)
    unit = rng.randint(2, 12 if difficulty == 1 else 40)
    thing = rng.choice(["pens", "apples", "tickets", "notebooks", "cups"])
    q = rng.choice([f"If {n} {thing} cost {n * unit} dollars, how many dollars do {m} {thing} cost?",
                    f"{n} {thing} cost {n * unit} dollars. At the same price, what do {m} {thing} cost in dollars?"])
    w = SolutionWriter()
    one = w.compute("Find the price of one", f"{n * unit} // {n}", unit, work=f"{n * unit} / {n}")
    ans = w.compute(f"Multiply by {m}", f"{one} * {m}", unit * m)
    program = f"price_of_{n} = {n * unit}\nunit = price_of_{n} // {n}\nprint(unit * {m})"
    return w.finish(q, ans, program)


def _ratio_share(rng: random.Random, difficulty: int) -> Problem:
    (p1, p2), it = people(rng), item(rng)
    a, b = rng.sample(range(1, 10), 2)
    part = rng.randint(2, 12 if difficulty == 2 else 40)
    total = (a + b) * part
    q = rng.choice([
        f"{p1.name} and {p2.name} share {total} {it.many} in the ratio {a}:{b}. How many {it.many} does {p2.name} get?",
        f"{total} {it.many} are split between {p1.name} and {p2.name} in the ratio {a} to {b}. How many does {p2.name} receive?",
    ])
    w = SolutionWriter()
    parts = w.compute("Add the parts of the ratio", f"{a} + {b}", a + b, unit="parts")
    one = w.compute(f"Divide {total} by the number of parts", f"{total} // {parts}", part, work=f"{total} / {parts}")
    ans = w.compute(f"{p2.name} gets {b} parts, so multiply by {b}", f"{b} * {one}", b * part)
    program = f"total = {total}\na, b = {a}, {b}\nprint(total // (a + b) * b)"
    return w.finish(q, ans, program)


def _job_time(rng: random.Random, difficulty: int) -> Problem:
    made, minutes = rng.randint(2, 9) * 5, rng.randint(2, 9)
    rate = Fraction(made, minutes)
    goal = made * rng.randint(2, 12)
    thing = rng.choice(["toys", "bottles", "boxes", "shirts"])
    q = rng.choice([f"A machine makes {made} {thing} in {minutes} minutes. How many minutes does it take to make {goal} {thing}?",
                    f"At a steady pace a machine packs {made} {thing} every {minutes} minutes. How long, in minutes, does it need for {goal} {thing}?"])
    w = SolutionWriter()
    batches = w.compute(f"Count the batches of {made} in {goal}", f"{goal} // {made}", goal // made,
                        work=f"{goal} / {made}")
    ans = w.compute(f"Multiply by {minutes} minutes a batch", f"{batches} * {minutes}", goal / rate)
    program = f"made = {made}\nminutes = {minutes}\ngoal = {goal}\nprint(goal // made * minutes)"
    return w.finish(q, ans, program)


def _work_together(rng: random.Random, difficulty: int) -> Problem:
    p1, p2 = people(rng)
    a, b = rng.sample(range(2, 13), 2)
    together = Fraction(a * b, a + b)
    task = rng.choice(["paint a fence", "clean the house", "fill a pool", "mow a lawn"])
    q = (f"{p1.name} can {task} in {a} hours and {p2.name} can do it in {b} hours. "
         f"Working together, how many hours do they need?")
    w = SolutionWriter()
    w.say(f"Each hour {p1.name} does 1/{a} of the job and {p2.name} does 1/{b}.")
    per_hour = w.compute("Add the rates", f"Fraction(1, {a}) + Fraction(1, {b})", Fraction(a + b, a * b),
                         work=[f"1/{a} + 1/{b}", f"{b}/{a * b} + {a}/{a * b}"])
    ans = w.compute("Divide one job by the rate", f"1 / Fraction({a + b}, {a * b})", together,
                    work=f"1 / ({per_hour})")
    program = f"a, b = {a}, {b}\nrate = Fraction(1, a) + Fraction(1, b)\nprint(1 / rate)"
    return w.finish(q, ans, program)


def _average_speed(rng: random.Random, difficulty: int) -> Problem:
    v1, v2 = rng.sample([20, 30, 40, 50, 60, 80], 2)
    t1, t2 = rng.randint(1, 5), rng.randint(1, 5)
    d1, d2 = v1 * t1, v2 * t2
    avg = Fraction(d1 + d2, t1 + t2)
    q = (f"A cyclist rides {d1} km at {v1} km per hour and then {d2} km at {v2} km per hour. "
         f"What is the average speed for the whole trip, in km per hour?")
    w = SolutionWriter()
    a = w.compute("Find the time of the first part", f"{d1} // {v1}", t1, work=f"{d1} / {v1}", unit="hours")
    b = w.compute("Find the time of the second part", f"{d2} // {v2}", t2, work=f"{d2} / {v2}", unit="hours")
    dist = w.compute("Add the distances", f"{d1} + {d2}", d1 + d2, unit="km")
    time = w.compute("Add the times", f"{a} + {b}", t1 + t2, unit="hours")
    ans = w.compute("Divide the distance by the time", f"Fraction({dist}, {time})", avg, work=f"{dist} / {time}")
    program = f"d1, v1 = {d1}, {v1}\nd2, v2 = {d2}, {v2}\nhours = Fraction(d1, v1) + Fraction(d2, v2)\nprint((d1 + d2) / hours)"
    return w.finish(q, ans, program)


def ratios_rates(rng: random.Random, difficulty: int) -> Problem:
    """Ratios, unit rates, speed, work rates."""
    choices = {1: [_distance, _unit_price], 2: [_unit_price, _ratio_share, _job_time],
               3: [_ratio_share, _work_together, _average_speed]}
    return rng.choice(choices[difficulty])(rng, difficulty)
