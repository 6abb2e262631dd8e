"""Verification of records by execution in the sandbox.

A record passes when:

- every non-empty solution ends with the final-answer line of its answer;
- ``pot`` holds exactly one python block, which runs and prints the answer (the recorded
  output block says the same);
- every block of ``mixed`` runs and prints what its output block records, and the last
  output is the answer;
- ``cot`` holds no code.

Output comparison strips surrounding whitespace: ``print`` ends with a newline, and output
blocks are written without it.
"""
from __future__ import annotations

from typing import Sequence

from .format import final_answer_line, parse_blocks

__all__ = ["verify_records", "static_problems"]


def static_problems(record: dict) -> str | None:
    """What is wrong with a record before running anything, or None."""
    final = final_answer_line(record["answer"])
    for name in ("cot", "pot", "mixed"):
        text = record.get(name, "")
        if text and not text.rstrip().endswith(final):
            return f"{name} does not end with {final!r}"
    if record.get("cot") and parse_blocks(record["cot"]):
        return "cot contains a python block"
    if record.get("pot"):
        blocks = parse_blocks(record["pot"])
        if len(blocks) != 1:
            return f"pot has {len(blocks)} python blocks, expected 1"
        if blocks[0][1] is None or blocks[0][1].strip() != record["answer"]:
            return f"pot's output block {blocks[0][1]!r} is not the answer {record['answer']!r}"
    if record.get("mixed"):
        blocks = parse_blocks(record["mixed"])
        if not blocks:
            return "mixed has no python block"
        if any(out is None for _, out in blocks):
            return "a mixed python block has no output block"
        if blocks[-1][1].strip() != record["answer"]:
            return f"mixed's last output {blocks[-1][1]!r} is not the answer {record['answer']!r}"
    return None


def verify_records(records: Sequence[dict], timeout: float = 5.0, workers: int | None = None) -> list[str | None]:
    """For each record, None when it passes, else the reason it fails. All programs of all
    records run in one ``sandbox.run_many`` batch."""
    from mathlm.sandbox import run_many  # imported here: generating without verifying needs no sandbox

    reasons: list[str | None] = [static_problems(r) for r in records]
    jobs: list[tuple[int, str, str, str]] = []  # (record index, where, code, expected stdout)
    for i, r in enumerate(records):
        if reasons[i] is not None:
            continue
        for name in ("pot", "mixed"):
            for b, (code, out) in enumerate(parse_blocks(r.get(name, ""))):
                jobs.append((i, f"{name} block {b + 1}", code, out))
    results = run_many([code for _, _, code, _ in jobs], timeout=timeout, workers=workers)
    for (i, where, _, expected), res in zip(jobs, results):
        if reasons[i] is not None:
            continue
        if res.status != "ok":
            reasons[i] = f"{where}: {res.status} ({(res.error or '').strip()[-200:]})"
        elif res.stdout.strip() != expected.strip():
            reasons[i] = f"{where}: printed {res.stdout.strip()!r}, its output block says {expected.strip()!r}"
    return reasons
