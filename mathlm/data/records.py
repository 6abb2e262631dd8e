"""The record: one math problem with its answer and three solutions, as a JSON-ready dict.

Fields (exactly these, plus the optional ones below):

    id          str   "<domain>-<12 hex digits of sha1(normalized question)>"
    domain      str   a key of mathlm.data.DOMAINS, or what self-instruct was seeded with
    difficulty  int   1 (short: few digits, 1-2 steps) .. 3 (longer)
    question    str
    answer      str   canonical: 12, -3/4, (2, 5), [[1, -1/2], [0, 1]]
    cot         str   natural-language steps, all arithmetic written out, final-answer line
    pot         str   one ```python block, its ```output block, final-answer line
    mixed       str   reasoning with python/output blocks, final-answer line

Optional: ``source`` ("template", "self_instruct", "mutation"), ``parent`` (the id a
mutation came from), ``score`` (a filter's score). A solution may be "" when a record has
none of that kind (self-instructed and mutated records carry only ``pot``).
"""
from __future__ import annotations

import hashlib

from .similarity import normalize_question
from .solution import Problem

__all__ = ["RECORD_FIELDS", "OPTIONAL_FIELDS", "FIELD_TYPES", "SOLUTION_FIELDS", "make_record", "record_id",
           "validate_record"]

RECORD_FIELDS = ("id", "domain", "difficulty", "question", "answer", "cot", "pot", "mixed")
SOLUTION_FIELDS = ("cot", "pot", "mixed")
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "domain": str, "difficulty": int, "question": str, "answer": str, "cot": str, "pot": str, "mixed": str,
}
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {"source": str, "parent": str, "score": (int, float)}
DIFFICULTIES = (1, 2, 3)


def record_id(domain: str, question: str) -> str:
    """Stable across runs and machines: the same question in the same domain, the same id."""
    digest = hashlib.sha1(normalize_question(question).encode()).hexdigest()[:12]
    return f"{domain}-{digest}"


def make_record(problem: Problem, domain: str, difficulty: int, source: str = "template") -> dict:
    record = {
        "id": record_id(domain, problem.question), "domain": domain, "difficulty": difficulty,
        "question": problem.question, "answer": problem.answer, "cot": problem.cot, "pot": problem.pot,
        "mixed": problem.mixed, "source": source,
    }
    validate_record(record)
    return record


def type_name(t) -> str:
    """``int``, ``int or float``: a type (or tuple of types) for error messages."""
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def validate_record(record: dict) -> None:
    """Raise ValueError naming the field when ``record`` is not a valid record."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a dict, got {type(record).__name__}")
    for name, t in FIELD_TYPES.items():
        if name not in record:
            raise ValueError(f"missing field {name!r}")
        value = record[name]
        if not isinstance(value, t) or isinstance(value, bool):
            raise ValueError(f"field {name!r} must be {type_name(t)}, got {type(value).__name__} ({value!r:.40})")
    for name, t in OPTIONAL_FIELDS.items():
        if name in record and (not isinstance(record[name], t) or isinstance(record[name], bool)):
            raise ValueError(f"field {name!r} must be {type_name(t)}, got {type(record[name]).__name__}")
    unknown = sorted(set(record) - set(FIELD_TYPES) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; records have {list(RECORD_FIELDS)} and optionally "
                         f"{list(OPTIONAL_FIELDS)}")
    if record["difficulty"] not in DIFFICULTIES:
        raise ValueError(f"field 'difficulty' must be one of {DIFFICULTIES}, got {record['difficulty']}")
    for name in ("id", "question", "answer"):
        if not record[name].strip():
            raise ValueError(f"field {name!r} must not be empty")
    if not any(record[name] for name in SOLUTION_FIELDS):
        raise ValueError(f"a record needs at least one of the solutions {SOLUTION_FIELDS}")
