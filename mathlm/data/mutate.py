"""A programmatic mutator that needs no model: new numbers, new contexts, composed steps.

- ``numbers``: integers that the question states and the PoT program assigns on a line of
  givens (``a, b = 3, 5``; ``A = [[1, 2], [3, 4]]``) get new values of the same number of
  digits, in both; the program computes the new answer. A program that divides with ``//``
  must give the same answer with ``/`` (so an inexact share is rejected). Keeps ``pot`` only.
- ``context``: names and objects are swapped (same pronouns); the answer and all three
  solutions stay valid with the same substitution.
- ``compose``: one more step on a numeric answer ("... then multiply your answer by 3");
  CoT writes the step out, mixed gets one more block, the program applies it.

``mutate_records`` runs every program in the sandbox before it keeps a mutation.
"""
from __future__ import annotations

import random
import re
from fractions import Fraction
from typing import Sequence

from .contexts import ITEMS, PEOPLE
from .format import final_answer_line, parse_blocks, python_block
from .records import make_record
from .similarity import normalize_question
from .solution import Problem, literal, with_imports
from .verify import verify_records

__all__ = ["mutate", "mutate_records", "MUTATIONS"]

MUTATIONS = ("numbers", "context", "compose")
_INT = re.compile(r"(?<![\w./^])\d+(?![\w./^])")
_PROGRAM_INT = re.compile(r"(?<![\w./^])\d+(?![\w./^]|\s*:)")  # not a dict key (a power in coeffs)
_GIVENS = re.compile(r"^\s*[A-Za-z_][\w, ]*=\s*[-+*\d\s,\[\]{}():]+(#.*)?$")
_NUMERIC = re.compile(r"^-?\d+(?:/\d+)?$")


def _program(record: dict) -> str | None:
    blocks = parse_blocks(record.get("pot", ""))
    return blocks[0][0] if len(blocks) == 1 else None


def _new_value(rng: random.Random, old: int) -> int:
    digits = len(str(old))
    lo, hi = (2, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)
    choices = [v for v in range(lo, hi + 1) if v != old] if hi - lo < 50 else None
    if choices is not None:
        return rng.choice(choices) if choices else old
    while True:
        v = rng.randint(lo, hi)
        if v != old:
            return v


def _mutate_numbers(record: dict, rng: random.Random):
    program = _program(record)
    if program is None:
        return None
    lines = program.splitlines()
    given_lines = [i for i, line in enumerate(lines) if _GIVENS.match(line)]
    given_numbers = {int(n) for i in given_lines for n in _PROGRAM_INT.findall(lines[i].split("#")[0].split("=", 1)[1])}
    # a number the computation also uses (a divisor, a range) has a role we cannot see: leave it
    used = {int(n) for i, line in enumerate(lines) if i not in given_lines for n in _INT.findall(line.split("#")[0])}
    candidates = sorted(({int(n) for n in _INT.findall(record["question"])} & given_numbers) - used)
    if not candidates:
        return None
    chosen = rng.sample(candidates, rng.randint(1, len(candidates)))
    mapping = {old: _new_value(rng, old) for old in chosen}
    if len(set(mapping.values()) | (set(candidates) - set(chosen))) < len(candidates):
        return None  # two numbers would become one: the problem changes shape

    def sub(pattern: re.Pattern, text: str) -> str:
        return pattern.sub(lambda m: str(mapping.get(int(m.group(0)), m.group(0))), text)

    for i in given_lines:
        lhs, rhs = lines[i].split("=", 1)
        lines[i] = lhs + "=" + sub(_PROGRAM_INT, rhs)
    return {"question": sub(_INT, record["question"]), "program": "\n".join(lines), "record": record}


def _swap_context(record: dict, rng: random.Random):
    texts = {f: record.get(f, "") for f in ("question", "cot", "pot", "mixed")}
    mapping: dict[str, str] = {}
    for p in PEOPLE:
        if re.search(rf"\b{p.name}\b", record["question"]):
            other = rng.choice([q for q in PEOPLE if q.they == p.they and q.name != p.name and q.name not in mapping.values()])
            mapping[p.name] = other.name
    for it in ITEMS:
        if re.search(rf"\b{it.many}\b", record["question"]):
            other = rng.choice([o for o in ITEMS if o != it])
            mapping.update({it.many: other.many, it.one: other.one, it.boxes: other.boxes, it.box: other.box})
    if not mapping:
        return None
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, mapping), key=len, reverse=True)) + r")\b")
    new = {f: pattern.sub(lambda m: mapping[m.group(0)], t) for f, t in texts.items()}
    return {"question": new["question"], "answer": record["answer"], "cot": new["cot"], "pot": new["pot"],
            "mixed": new["mixed"], "record": record}


def _compose(record: dict, rng: random.Random):
    program = _program(record)
    answer = record["answer"]
    if program is None or not _NUMERIC.match(answer) or not program.rstrip().splitlines()[-1].startswith("print("):
        return None
    value = Fraction(answer)
    op, k = rng.choice([("add", rng.randint(2, 20)), ("multiply", rng.randint(2, 9)), ("subtract", rng.randint(2, 20))])
    sym, phrase = {"add": ("+", f"add {k} to your answer"), "multiply": ("*", f"multiply your answer by {k}"),
                   "subtract": ("-", f"subtract {k} from your answer")}[op]
    new_value = value + k if op == "add" else value * k if op == "multiply" else value - k
    new_answer = str(new_value)
    question = f"{record['question']} Then {phrase}. What number do you get?"
    lines = program.rstrip().splitlines()
    last = lines[-1][len("print(") : -1]
    lines[-1] = f"print(({last}) {sym} {k})"
    final_old = final_answer_line(answer)
    step_reason = f"Then {phrase}"
    cot = mixed = ""
    if record.get("cot"):
        cot = record["cot"].replace(final_old, f"{step_reason}: {answer} {sym} {k} = {new_answer}.\n" + final_answer_line(new_answer))
    if record.get("mixed"):
        block = python_block(with_imports(f"print({literal(value)} {sym} {k})"), new_answer).rstrip("\n")
        mixed = record["mixed"].replace(final_old, f"{step_reason}.\n{block}\n" + final_answer_line(new_answer))
    pot = python_block(with_imports("\n".join(lines)), new_answer) + final_answer_line(new_answer)
    return {"question": question, "answer": new_answer, "cot": cot, "pot": pot, "mixed": mixed, "record": record}


_MUTATORS = {"numbers": _mutate_numbers, "context": _swap_context, "compose": _compose}


def mutate(record: dict, rng: random.Random, kind: str) -> dict | None:
    """One unexecuted mutation of ``record`` (a dict with the new question and solutions, or
    with ``program`` when the answer is still to be computed), or None when ``kind`` does not
    apply to this record."""
    if kind not in _MUTATORS:
        raise ValueError(f"kind ({kind!r}) must be one of {MUTATIONS}")
    return _MUTATORS[kind](record, rng)


def mutate_records(records: Sequence[dict], n: int, seed: int = 0, kinds: Sequence[str] = MUTATIONS,
                   timeout: float = 5.0, workers: int | None = None, max_attempts: int = 20) -> list[dict]:
    """Up to ``n`` verified mutations of ``records`` (``source`` "mutation", ``parent`` the
    original id), none with a normalized question already present."""
    from mathlm.grading import math_equal
    from mathlm.sandbox import run_many

    bad = [k for k in kinds if k not in _MUTATORS]
    if bad or not kinds:
        raise ValueError(f"kinds ({list(kinds)!r}) must be a non-empty subset of {MUTATIONS}")
    rng = random.Random(seed)
    seen = {normalize_question(r["question"]) for r in records}
    drafts = []
    for _ in range(n * max_attempts):
        if len(drafts) >= 2 * n or not records:
            break
        draft = mutate(rng.choice(records), rng, rng.choice(list(kinds)))
        if draft is not None and normalize_question(draft["question"]) not in seen:
            seen.add(normalize_question(draft["question"]))
            drafts.append(draft)
    # "numbers" drafts: run the program (and its exact-division twin) to learn the answer
    pending = [d for d in drafts if "program" in d]
    codes = [with_imports(d["program"]) for d in pending] + [with_imports(d["program"].replace("//", "/")) for d in pending]
    results = run_many(codes, timeout=timeout, workers=workers) if codes else []
    for d, res, twin in zip(pending, results[: len(pending)], results[len(pending):]):
        out = res.stdout.strip() if res.ok else ""
        if not out or ("//" in d["program"] and not (twin.ok and math_equal(twin.stdout.strip(), out))):
            d["failed"] = True
            continue
        d.update(answer=out, cot="", mixed="", pot=python_block(with_imports(d["program"]), out) + final_answer_line(out))
    candidates = []
    for d in drafts:
        if d.get("failed"):
            continue
        parent = d["record"]
        problem = Problem(d["question"], d["answer"], d["cot"], d["pot"], d["mixed"])
        record = make_record(problem, parent["domain"], parent["difficulty"], source="mutation")
        record["parent"] = parent["id"]
        candidates.append(record)
    reasons = verify_records(candidates, timeout=timeout, workers=workers)
    return [r for r, why in zip(candidates, reasons) if why is None][:n]
