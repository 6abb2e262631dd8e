"""Data cards: counts per domain and difficulty and length histograms, written beside a dataset.

``save_dataset("data/train.jsonl", records)`` writes the JSONL, ``data/train.card.json``
(numbers for scripts) and ``data/train.card.md`` (the same for people). Lengths are in
characters, so the card does not depend on a tokenizer.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from .jsonl import write_jsonl

__all__ = ["data_card", "render_card", "save_dataset", "LENGTH_BINS"]

LENGTH_BINS = (0, 100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000)  # chars; the last bin is open
_FIELDS = ("question", "cot", "pot", "mixed")


def _lengths(values: list[int]) -> dict:
    if not values:
        return {"n": 0}
    s = sorted(values)
    counts = [0] * len(LENGTH_BINS)
    for v in s:
        k = max(i for i, edge in enumerate(LENGTH_BINS) if v >= edge)
        counts[k] += 1
    return {
        "n": len(s), "min": s[0], "p50": s[len(s) // 2], "p90": s[min(len(s) - 1, (9 * len(s)) // 10)],
        "max": s[-1], "mean": round(sum(s) / len(s), 1), "bins": list(LENGTH_BINS), "counts": counts,
    }


def data_card(records: Sequence[dict]) -> dict:
    """Counts and length statistics of ``records`` (empty solutions are not counted)."""
    by_dd: dict[str, Counter] = {}
    for r in records:
        by_dd.setdefault(r["domain"], Counter())[r["difficulty"]] += 1
    lengths = {f: _lengths([len(r[f]) for r in records if r.get(f)]) for f in _FIELDS}
    lengths["question+mixed"] = _lengths([len(r["question"]) + len(r["mixed"]) for r in records if r.get("mixed")])
    return {
        "records": len(records),
        "by_domain": dict(sorted(Counter(r["domain"] for r in records).items())),
        "by_difficulty": {str(k): v for k, v in sorted(Counter(r["difficulty"] for r in records).items())},
        "by_domain_difficulty": {d: {str(k): v for k, v in sorted(c.items())} for d, c in sorted(by_dd.items())},
        "by_source": dict(sorted(Counter(r.get("source", "unknown") for r in records).items())),
        "lengths_chars": lengths,
    }


def render_card(card: dict, title: str = "Data card") -> str:
    """Markdown: a domain x difficulty table and one text histogram per field."""
    levels = sorted({k for c in card["by_domain_difficulty"].values() for k in c}, key=int)
    lines = [f"# {title}", "", f"{card['records']} records; sources: "
             + ", ".join(f"{k} {v}" for k, v in card["by_source"].items()), "",
             "| domain | " + " | ".join(f"difficulty {k}" for k in levels) + " | total |",
             "|---|" + "---|" * (len(levels) + 1)]
    for d, c in card["by_domain_difficulty"].items():
        lines.append(f"| {d} | " + " | ".join(str(c.get(k, 0)) for k in levels) + f" | {sum(c.values())} |")
    lines.append("| total | " + " | ".join(str(card["by_difficulty"].get(k, 0)) for k in levels)
                 + f" | {card['records']} |")
    for field, st in card["lengths_chars"].items():
        lines += ["", f"## {field} length (characters)", ""]
        if not st["n"]:
            lines.append("(none)")
            continue
        lines.append(f"n {st['n']}, min {st['min']}, median {st['p50']}, p90 {st['p90']}, max {st['max']}, "
                     f"mean {st['mean']}")
        lines.append("```")
        top = max(st["counts"]) or 1
        for k, count in enumerate(st["counts"]):
            if count:
                hi = st["bins"][k + 1] if k + 1 < len(st["bins"]) else None
                label = f"{st['bins'][k]}-{hi - 1}" if hi else f"{st['bins'][k]}+"
                lines.append(f"{label:>10} {'#' * max(1, round(40 * count / top))} {count}")
        lines.append("```")
    return "\n".join(lines) + "\n"


def save_dataset(path: str | os.PathLike, records: Sequence[dict], title: str | None = None) -> dict[str, Path]:
    """Write ``records`` to ``path`` (JSONL) and the card beside it; returns the three paths."""
    path = Path(path)
    card = data_card(records)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    card_json, card_md = path.with_name(f"{stem}.card.json"), path.with_name(f"{stem}.card.md")
    write_jsonl(path, records)
    card_json.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    card_md.write_text(render_card(card, title or f"Data card: {path.name}"), encoding="utf-8")
    return {"data": path, "card_json": card_json, "card_md": card_md}
