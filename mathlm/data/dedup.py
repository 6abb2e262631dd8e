"""Diversity and quality filters: ``dedup`` (self-instruct semantics) and ``filter_by_score``.

``dedup(texts)`` walks the texts in order and keeps one unless its similarity to an already
kept text is >= threshold (self-instruct, Wang et al. 2023, drops a generated instruction
whose ROUGE-L with any pool instruction is above 0.7). Methods:

- ``"rougeL"``: exact, near-linear: the prefix index finds candidates, LCS decides;
- ``"jaccard"``: exact Jaccard on word n-gram sets, same index;
- ``"minhash"``: LSH candidates (approximate recall), exact Jaccard decides.

``dedup_exhaustive`` compares every text with every kept one: the reference the fast paths
are tested and benchmarked against.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

from .minhash import MinHashLSH
from .prefix_index import NearDuplicateIndex
from .similarity import jaccard_sets, lcs_with_masks, rouge_l_from_lcs, token_masks, tokenize, word_ngrams

__all__ = ["dedup", "dedup_exhaustive", "filter_by_score", "METHODS"]

METHODS = ("rougeL", "jaccard", "minhash")


def _check(method: str, threshold: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method ({method!r}) must be one of {METHODS}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold ({threshold}) must be in (0, 1]")


class _Progress:
    """One line every ``every`` items to stderr: done, rate, ETA."""

    def __init__(self, total: int, label: str, enabled: bool, every: int = 10000):
        self.total, self.label, self.enabled, self.every = total, label, enabled, every
        self.start = time.perf_counter()

    def step(self, done: int, kept: int) -> None:
        if self.enabled and (done % self.every == 0 or done == self.total):
            el = time.perf_counter() - self.start
            rate = done / el if el > 0 else 0.0
            eta = (self.total - done) / rate if rate else 0.0
            print(f"[{self.label}] {done}/{self.total} kept {kept} {rate:,.0f}/s ETA {eta:.0f}s", file=sys.stderr)


def dedup(texts: Sequence[str], method: str = "rougeL", threshold: float = 0.7, n: int = 3,
          num_perm: int = 128, bands: int = 32, progress: bool = False, always_keep: int = 0) -> list[int]:
    """Indices of the kept texts, in order: a text is dropped when its similarity to any
    already kept text is >= threshold. ``n`` is the word n-gram size of Jaccard/MinHash.
    ``always_keep``: the first that many texts are kept whatever their similarity (an existing
    pool that new texts are filtered against)."""
    _check(method, threshold)
    if not 0 <= always_keep <= len(texts):
        raise ValueError(f"always_keep ({always_keep}) must lie in [0, {len(texts)}]")
    bar = _Progress(len(texts), f"dedup {method}", progress)
    kept: list[int] = []
    if method == "minhash":
        lsh = MinHashLSH(num_perm=num_perm, bands=bands, n=n)
        grams: dict[int, set] = {}
        for i, text in enumerate(texts):
            sig = lsh.signature(text)
            g = word_ngrams(text, n)
            duplicate = False
            for j in lsh.query(signature=sig) if i >= always_keep else ():
                if jaccard_sets(g, grams[j]) >= threshold:
                    duplicate = True
                    break
            if not duplicate:
                kept.append(i)
                grams[i] = g
                lsh.add(i, signature=sig)
            bar.step(i + 1, len(kept))
        return kept
    index = NearDuplicateIndex(method, threshold, n)
    elements = [index.elements(text) for text in texts]
    index.frequencies = index.count_elements(elements)
    for i, prepared in enumerate(elements):
        if i < always_keep:
            index.add(prepared, key=i)
            kept.append(i)
        elif index.add_if_new(prepared, key=i):
            kept.append(i)
        bar.step(i + 1, len(kept))
    return kept


def dedup_exhaustive(texts: Sequence[str], method: str = "rougeL", threshold: float = 0.7, n: int = 3,
                     always_keep: int = 0) -> list[int]:
    """The reference: every text against every kept text (quadratic)."""
    _check(method, threshold)
    kept: list[int] = []
    if method == "rougeL":
        tokens = [tokenize(t) for t in texts]
        kept_tokens: list[list[str]] = []
        for i, toks in enumerate(tokens):
            masks, m = token_masks(toks), len(toks)
            if i < always_keep or not any(rouge_l_from_lcs(lcs_with_masks(masks, m, other), m, len(other)) >= threshold
                                          for other in kept_tokens):
                kept.append(i)
                kept_tokens.append(toks)
        return kept
    grams = [word_ngrams(t, n) for t in texts]
    for i, g in enumerate(grams):
        if i < always_keep or not any(jaccard_sets(g, grams[j]) >= threshold for j in kept):
            kept.append(i)
    return kept



def filter_by_score(records: Sequence[dict], scorer: Callable[[dict], float], threshold: float,
                    score_field: str | None = None) -> list[dict]:
    """Records whose ``scorer(record)`` is >= threshold (a critique or reward model plugs in
    here). With ``score_field`` the kept records are copies carrying their score."""
    kept = []
    for record in records:
        score = float(scorer(record))
        if score >= threshold:
            kept.append({**record, score_field: score} if score_field else record)
    return kept
