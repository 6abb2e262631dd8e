"""Splits with no normalized question on two sides: ``split_dataset`` and ``train_test_split``.

Records are grouped by normalized question (``normalize_question``: lowercase, punctuation
removed), groups are shuffled by ``seed`` and dealt to the parts in order, so a question and
its paraphrase-identical twins always land together. With ``stratify="domain"`` each domain
is split on its own so every part keeps the domain mix.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

from .similarity import normalize_question

__all__ = ["split_dataset", "train_test_split"]


def _targets(sizes: Mapping[str, float | int], total: int) -> dict[str, int]:
    """Record counts per part from fractions (summing to 1) or counts (summing to <= total)."""
    if not sizes:
        raise ValueError("sizes must name at least one part")
    values = list(sizes.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if any(v < 0 for v in values) or sum(values) > total:
            raise ValueError(f"counts {dict(sizes)} must be >= 0 and sum to at most the {total} records")
        return dict(sizes)
    if any(not isinstance(v, (int, float)) or v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions {dict(sizes)} must be >= 0 and sum to 1 (they sum to {sum(values):.6g})")
    # largest remainder: counts that sum exactly to total
    raw = {k: v * total for k, v in sizes.items()}
    counts = {k: int(r) for k, r in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def _deal(records: Sequence[dict], sizes: Mapping[str, float | int], rng: random.Random, key: str) -> dict[str, list]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(normalize_question(r[key]), []).append(r)
    order = list(groups)
    rng.shuffle(order)
    targets = _targets(sizes, len(records))
    parts: dict[str, list[dict]] = {name: [] for name in sizes}
    names = list(sizes)
    p = 0
    for g in order:
        # move on once a part is full; a group never straddles two parts
        while p < len(names) - 1 and len(parts[names[p]]) >= targets[names[p]]:
            p += 1
        if len(parts[names[p]]) >= targets[names[p]] and sum(targets.values()) < len(records):
            break  # counts that leave records out: the rest is dropped
        parts[names[p]].extend(groups[g])
    return parts


def split_dataset(records: Sequence[dict], sizes: Mapping[str, float | int], seed: int = 0,
                  stratify: str | None = None, key: str = "question") -> dict[str, list[dict]]:
    """Cut ``records`` into named disjoint parts.

    ``sizes`` maps part names to fractions summing to 1 (``{"labelled": 0.1,
    "answer_only_pool": 0.7, "val": 0.1, "test": 0.1}``) or to record counts (the rest is
    left out). No normalized ``key`` text appears in two parts; part sizes can differ from
    the targets by the size of a group of identical questions. Deterministic by ``seed``.
    """
    rng = random.Random(seed)
    if stratify is None:
        return _deal(records, sizes, rng, key)
    strata: dict = {}
    for r in records:
        strata.setdefault(r[stratify], []).append(r)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in sizes.values()):
        raise ValueError("stratify needs fractions, not counts, in sizes")
    out: dict[str, list[dict]] = {name: [] for name in sizes}
    seen: dict[str, str] = {}  # normalized question -> part, across strata
    for stratum in sorted(strata, key=str):
        fresh, placed = [], []
        for r in strata[stratum]:
            (placed if normalize_question(r[key]) in seen else fresh).append(r)
        for name, part in _deal(fresh, sizes, rng, key).items():
            out[name].extend(part)
            for r in part:
                seen[normalize_question(r[key])] = name
        for r in placed:  # the same question met in an earlier stratum: follow it
            out[seen[normalize_question(r[key])]].append(r)
    return out


def train_test_split(records: Sequence[dict], test_fraction: float = 0.1, seed: int = 0,
                     stratify: str | None = None) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` with no normalized question on both sides."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction ({test_fraction}) must be in (0, 1)")
    parts = split_dataset(records, {"train": 1.0 - test_fraction, "test": test_fraction}, seed=seed, stratify=stratify)
    return parts["train"], parts["test"]
