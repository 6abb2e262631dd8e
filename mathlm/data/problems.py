"""Problems from public math datasets: one loader for GSM8K, MATH, MATH-500, NuminaMath, chat
``messages`` files and mathlm's own records.

    from mathlm.data import load_problems
    problems = load_problems("gsm8k/test.jsonl")     # or .json, .parquet
    problems[0]  # {"question": ..., "answer": "72", "solution": ..., "domain": "gsm8k", "layout": "gsm8k"}

Design choices:

- The layout is detected from the fields of the first record (the most specific layout
  first: MATH-500 and NuminaMath records also have MATH's ``problem``/``solution``), and every
  later record must have that layout's fields. No name-based guessing: a file whose fields
  match no layout raises ValueError naming the fields found and the layouts known.
- Every problem is a dict with ``question``, ``answer`` (the gold final answer, a string),
  ``solution`` (``""`` where the source has none), ``domain`` and ``layout``; ``level`` and
  ``id`` are kept where the source has them, and mathlm records keep all their fields.
- Gold answers come from the source's own convention: GSM8K's ``#### 1,250`` line (``1250``),
  the last ``\\boxed{...}``/``\\fbox{...}`` of a MATH or NuminaMath solution (nested braces,
  via ``mathlm.grading.last_boxed``, the one boxed extractor), MATH-500's ``answer`` field.
  A record whose answer cannot be found raises (naming ``file:line``) unless
  ``missing_answer="skip"`` (NuminaMath has proofs with no boxed answer).
- Files: ``.jsonl`` one object a line; ``.json`` a list of objects (or JSON lines under a
  ``.json`` name, which is what ``datasets.Dataset.to_json`` writes); ``.parquet`` through
  pyarrow. Errors name ``file:line`` (JSON) or ``file:row N`` (parquet, 1-based).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from ..grading import last_boxed
from .jsonl import JsonlError
from .records import FIELD_TYPES, SOLUTION_FIELDS, validate_record

__all__ = ["LAYOUTS", "detect_layout", "load_problems"]

# layout name -> the fields that identify it; checked in this order (most specific first)
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mathlm": tuple(FIELD_TYPES),
    "math500": ("problem", "solution", "answer", "subject", "level", "unique_id"),
    "numinamath": ("problem", "solution", "messages", "source"),
    "math": ("problem", "solution", "level", "type"),
    "gsm8k": ("question", "answer"),
    "chat": ("messages",),
}

_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


class _MissingAnswer(ValueError):
    """The record has the layout's fields but no gold answer can be read from it."""


def detect_layout(record: dict) -> str:
    """The name of the layout (a key of ``LAYOUTS``) whose fields ``record`` has."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name, fields in LAYOUTS.items():
        if all(f in record for f in fields):
            return name
    known = "; ".join(f"{name}: {', '.join(fields)}" for name, fields in LAYOUTS.items())
    raise ValueError(f"unknown layout: fields found {sorted(record)}; layouts known (name: fields) {known}")


def _text(record: dict, field: str) -> str:
    value = record[field]
    if not isinstance(value, str):
        raise ValueError(f"field {field!r} must be str, got {type(value).__name__} ({value!r:.40})")
    return value


def _boxed_answer(solution: str) -> str:
    answer = last_boxed(solution)
    if not answer:
        raise _MissingAnswer("no \\boxed{...} answer in the solution")
    return answer


def _from_gsm8k(r: dict) -> dict:
    text = _text(r, "answer")
    m = _GSM8K_ANSWER.search(text)
    if not m:
        raise _MissingAnswer(f"no '#### <answer>' line in field 'answer' ({text[-60:]!r})")
    answer = m.group(1).split("\n")[0].strip().replace(",", "").rstrip(".")
    return {"question": _text(r, "question"), "answer": answer, "solution": _CALCULATOR_NOTE.sub("", text),
            "domain": "gsm8k"}


def _from_math(r: dict) -> dict:
    solution = _text(r, "solution")
    return {"question": _text(r, "problem"), "answer": _boxed_answer(solution), "solution": solution,
            "domain": str(r["type"]), "level": r["level"]}


def _from_math500(r: dict) -> dict:
    answer = r["answer"]
    if not isinstance(answer, str) or not answer.strip():
        raise _MissingAnswer(f"field 'answer' must be a non-empty str, got {answer!r:.40}")
    return {"question": _text(r, "problem"), "answer": answer.strip(), "solution": _text(r, "solution"),
            "domain": str(r["subject"]), "level": r["level"], "id": str(r["unique_id"])}


def _turns(messages) -> tuple[str, str]:
    """(first user turn, last assistant turn) of a chat ``messages`` list."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in messages):
        raise ValueError(f"field 'messages' must be a list of {{'role', 'content'}} objects, got {messages!r:.60}")
    users = [m["content"] for m in messages if m["role"] == "user"]
    assistants = [m["content"] for m in messages if m["role"] == "assistant"]
    if not users or not assistants:
        roles = [m["role"] for m in messages]
        raise ValueError(f"field 'messages' needs a user and an assistant turn, got roles {roles}")
    if not all(isinstance(t, str) for t in (users[0], assistants[-1])):
        raise ValueError("message 'content' must be str")
    return users[0], assistants[-1]


def _from_chat(r: dict) -> dict:
    question, solution = _turns(r["messages"])
    return {"question": question, "answer": _boxed_answer(solution), "solution": solution, "domain": "chat"}


def _from_numinamath(r: dict) -> dict:
    solution = _text(r, "solution")
    return {"question": _text(r, "problem"), "answer": _boxed_answer(solution), "solution": solution,
            "domain": str(r["source"])}


def _from_mathlm(r: dict) -> dict:
    validate_record(r)
    solution = next((r[f] for f in SOLUTION_FIELDS if r[f]), "")
    return {**r, "solution": solution}


_CONVERTERS: dict[str, Callable[[dict], dict]] = {
    "mathlm": _from_mathlm, "math500": _from_math500, "numinamath": _from_numinamath, "math": _from_math,
    "gsm8k": _from_gsm8k, "chat": _from_chat,
}


def _json_objects(path: Path) -> list[tuple[str, object]]:
    """(where, object) for each record of a .jsonl or .json file; where is ``file:line``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data": JSON lines under a .json name
                raise JsonlError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        else:
            if not isinstance(data, list):
                raise JsonlError(f"{path}:1: expected a list of objects, got {type(data).__name__}")
            lines = _object_lines(text, len(data))
            return [(f"{path}:{line}", obj) for line, obj in zip(lines, data)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise JsonlError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return out


def _object_lines(text: str, n: int) -> list[int]:
    """Line on which each of the ``n`` top-level items of a JSON list starts (for messages)."""
    decoder, lines, i = json.JSONDecoder(), [], text.index("[") + 1
    for _ in range(n):
        while text[i] in " \t\r\n,":
            i += 1
        lines.append(text.count("\n", 0, i) + 1)
        _, i = decoder.raw_decode(text, i)
    return lines


def _parquet_objects(path: Path) -> list[tuple[str, object]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a runtime dependency
        raise ImportError(f"reading {path} needs pyarrow (pip install pyarrow)") from None
    rows = pq.read_table(path).to_pylist()
    return [(f"{path}:row {i}", row) for i, row in enumerate(rows, 1)]


def load_problems(path: str | os.PathLike, missing_answer: str = "raise") -> list[dict]:
    """The problems of a ``.jsonl``, ``.json`` or ``.parquet`` file in any layout of ``LAYOUTS``.

    Each is a dict with ``question``, ``answer`` (gold final answer, str), ``solution``,
    ``domain`` and ``layout`` (see the module docstring). ``missing_answer="skip"`` drops
    records whose gold answer cannot be read (else they raise, naming ``file:line``).
    """
    if missing_answer not in ("raise", "skip"):
        raise ValueError(f"missing_answer ({missing_answer!r}) must be 'raise' or 'skip'")
    path = Path(path)
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected .jsonl, .json or .parquet")
    objects = _parquet_objects(path) if path.suffix == ".parquet" else _json_objects(path)
    layout, problems = None, []
    for where, obj in objects:
        try:
            if layout is None:
                layout = detect_layout(obj)
            elif not isinstance(obj, dict) or not all(f in obj for f in LAYOUTS[layout]):
                found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise ValueError(f"not a {layout} record (needs {list(LAYOUTS[layout])}); fields found {found}")
            problems.append({**_CONVERTERS[layout](obj), "layout": layout})
        except _MissingAnswer as e:
            if missing_answer == "raise":
                raise JsonlError(f"{where}: {e} (pass missing_answer='skip' to drop such records)") from None
        except ValueError as e:
            raise JsonlError(f"{where}: {e}") from None
    return problems
