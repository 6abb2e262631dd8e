"""``generate_dataset``: problems from every domain, deduplicated, verified by execution."""
from __future__ import annotations

import random
import re
import sys
import time
from typing import Callable, Iterable, Sequence

from .algebra import linear_equations, linear_systems
from .arithmetic import arithmetic, fractions_percent, ratios_rates
from .calculus import calculus
from .matrices import matrices
from .number_theory import number_theory, sequences
from .records import DIFFICULTIES, make_record
from .similarity import normalize_question
from .solution import Problem
from .verify import verify_records

__all__ = ["DOMAINS", "generate_problem", "generate_dataset", "problem_signature"]

DOMAINS: dict[str, Callable[[random.Random, int], Problem]] = {
    "arithmetic": arithmetic,
    "fractions_percent": fractions_percent,
    "ratios_rates": ratios_rates,
    "linear_equations": linear_equations,
    "linear_systems": linear_systems,
    "matrices": matrices,
    "calculus": calculus,
    "number_theory": number_theory,
    "sequences": sequences,
}


_NUMBER = re.compile(r"-?\d+(?:/\d+)?")


def _domain_list(domains: Iterable[str] | str | None) -> list[str]:
    if domains is None:
        return list(DOMAINS)
    names = [domains] if isinstance(domains, str) else list(domains)
    unknown = [d for d in names if d not in DOMAINS]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; valid: {sorted(DOMAINS)}")
    return names


def _levels(difficulty: int | Sequence[int] | None) -> list[int]:
    levels = list(DIFFICULTIES) if difficulty is None else [difficulty] if isinstance(difficulty, int) else list(difficulty)
    bad = [d for d in levels if d not in DIFFICULTIES]
    if bad or not levels:
        raise ValueError(f"difficulty ({difficulty!r}) must be None or levels from {DIFFICULTIES}")
    return levels


def problem_signature(record: dict) -> tuple:
    """(domain, sorted numbers of the question, answer): equal for two paraphrases of one
    problem, which ``generate_dataset`` therefore never both keeps (they would leak across a
    split that only compares normalized questions)."""
    return (record["domain"], tuple(sorted(_NUMBER.findall(record["question"]))), record["answer"])


def generate_problem(domain: str, rng: random.Random, difficulty: int) -> dict:
    """One unverified record of ``domain`` at ``difficulty``."""
    _domain_list([domain])
    _levels(difficulty)
    return make_record(DOMAINS[domain](rng, difficulty), domain, difficulty)


def generate_dataset(domains: Iterable[str] | str | None = None, n_per_domain: int = 100, seed: int = 0,
                     difficulty: int | Sequence[int] | None = None, verify: bool = True, timeout: float = 5.0,
                     workers: int | None = None, max_attempts: int = 50, progress: bool = False) -> list[dict]:
    """``n_per_domain`` records per domain, difficulties dealt in turn (``None``: 1, 2, 3).

    Deterministic by ``seed``. Questions are unique after normalization across the whole
    dataset, and so are ``problem_signature``s (no two paraphrases of one problem). With ``verify`` every pot and mixed program runs in the sandbox and a record
    that fails is replaced by a fresh one. Raises RuntimeError when a domain cannot produce
    enough distinct problems within ``max_attempts * n_per_domain`` tries.
    """
    names, levels = _domain_list(domains), _levels(difficulty)
    if n_per_domain < 0:
        raise ValueError(f"n_per_domain ({n_per_domain}) must be >= 0")
    seen: set[str] = set()
    out: list[dict] = []
    for domain in names:
        start = time.perf_counter()
        rng = random.Random(f"{seed}/{domain}")  # str seeds are hashed stably (sha512)
        want = {d: n_per_domain // len(levels) + (k < n_per_domain % len(levels)) for k, d in enumerate(levels)}
        kept: list[dict] = []
        attempts = dropped = 0
        while len(kept) < n_per_domain:
            batch = []
            for d in levels:
                missing = want[d] - sum(r["difficulty"] == d for r in kept)
                while missing > 0 and attempts < max_attempts * max(n_per_domain, 1):
                    attempts += 1
                    record = make_record(DOMAINS[domain](rng, d), domain, d)
                    keys = {normalize_question(record["question"]), problem_signature(record)}
                    if keys & seen:
                        continue
                    seen |= keys
                    batch.append(record)
                    missing -= 1
            if not batch:
                raise RuntimeError(f"domain {domain!r} produced only {len(kept)} distinct verified problems of "
                                   f"{n_per_domain} in {attempts} attempts (levels {levels})")
            reasons = verify_records(batch, timeout=timeout, workers=workers) if verify else [None] * len(batch)
            for record, reason in zip(batch, reasons):
                if reason is None:
                    kept.append(record)
                else:
                    dropped += 1
            if progress:
                el = time.perf_counter() - start
                print(f"[generate] {domain}: {len(kept)}/{n_per_domain} kept, {dropped} failed verification, "
                      f"{len(kept) / max(el, 1e-9):.0f}/s", file=sys.stderr)
        out.extend(_interleave(kept, levels))
    return out


def _interleave(records: list[dict], levels: list[int]) -> list[dict]:
    """1, 2, 3, 1, 2, 3, ...: the order difficulties were dealt in."""
    by_level = {d: [r for r in records if r["difficulty"] == d] for d in levels}
    out = []
    while any(by_level.values()):
        for d in levels:
            if by_level[d]:
                out.append(by_level[d].pop(0))
    return out
