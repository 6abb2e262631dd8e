"""Exact near-duplicate search for ROUGE-L and Jaccard with a prefix-filtered inverted index.

Why this is exact. Both measures can only reach the threshold ``t`` when two texts share
enough *elements*:

- ROUGE-L: a text of m tokens is the set of its m elements (token, occurrence number), so
  "the"-"the" counts twice only if both texts have two. The LCS cannot exceed the shared
  elements O (a common subsequence pairs equal tokens, each at most once), and
  F = 2 LCS / (m + n) >= t needs LCS >= t (m + n) / 2, hence O >= t (m + n) / 2. Since also
  LCS <= min(m, n), the partner length n lies in [m t / (2 - t), m (2 - t) / t], and the
  needed overlap is at least ``a(m) = t m / (2 - t)`` whatever the partner.
- Jaccard on n-gram sets: J >= t needs O >= t (m + n) / (1 + t); n lies in [t m, m / t]
  and ``a(m) = t m``.

Prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007, "All-Pairs"): sort every
element set by one global order; if two sets share at least ``a`` elements, their first
``size - a + 1`` elements share one. So each kept text indexes only its prefix of
``m - a(m) + 1`` elements, a query probes with its own such prefix, and every pair that can
reach the threshold meets in some posting list: the candidates are a superset of the true
near-duplicates. Each candidate is then checked with the length bound, the exact overlap
bound and finally the exact measure (bit-parallel LCS for ROUGE-L). The decision is the
same float comparison ``similarity >= t`` the exhaustive scan makes; the bounds are relaxed
by 1e-9 so float rounding can never make the filter drop a pair the scan would keep.

The global order puts rare elements first (short posting lists). A batch (``dedup``) counts
frequencies on the whole corpus; an incremental index (self-instruct) takes them from
reference texts, unseen elements first, ties broken by a fixed hash.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from typing import Iterable

from .similarity import lcs_with_masks, rouge_l_from_lcs, token_masks, tokenize, word_ngrams

__all__ = ["NearDuplicateIndex", "rouge_l_elements", "jaccard_elements"]

_SLACK = 1e-9
_QUICK_PROBE = 64


def rouge_l_elements(tokens: list[str]) -> list[tuple[str, int]]:
    """(token, k) for the k-th occurrence of each token: a multiset as a set."""
    seen: dict[str, int] = {}
    out = []
    for tok in tokens:
        k = seen.get(tok, 0) + 1
        seen[tok] = k
        out.append((tok, k))
    return out


def jaccard_elements(text: str, n: int) -> list[tuple[str, ...]]:
    return sorted(word_ngrams(text, n))


class _Entry:
    __slots__ = ("size", "elements", "tokens", "masks")

    def __init__(self, size, elements, tokens, masks):
        self.size, self.elements, self.tokens, self.masks = size, elements, tokens, masks


class NearDuplicateIndex:
    """Kept texts, queried for one with similarity >= threshold (exactly, see module doc).

    ``measure`` is "rougeL" or "jaccard" (word ``n``-grams). ``frequencies`` counts how many
    texts contain each element (from ``count_elements``): rarer elements are indexed first.
    """

    def __init__(self, measure: str = "rougeL", threshold: float = 0.7, n: int = 3,
                 frequencies: Counter | None = None):
        if measure not in ("rougeL", "jaccard"):
            raise ValueError(f"measure ({measure!r}) must be 'rougeL' or 'jaccard'")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold ({threshold}) must be in (0, 1]")
        self.measure, self.threshold, self.n = measure, threshold, n
        self.frequencies = frequencies if frequencies is not None else Counter()
        self._rank: dict = {}
        self._postings: dict = defaultdict(list)
        self._entries: list[_Entry] = []
        self.keys: list = []

    # -- elements and their global order ----------------------------------------------

    def elements(self, text: str) -> tuple[list, list[str]]:
        """(elements, tokens) of a text; tokens only matter for ROUGE-L."""
        if self.measure == "rougeL":
            tokens = tokenize(text)
            return rouge_l_elements(tokens), tokens
        return jaccard_elements(text, self.n), []

    def count_elements(self, texts: Iterable[str | tuple[list, list[str]]]) -> Counter:
        """Document frequency of every element in ``texts`` (pass to ``frequencies``);
        items may be texts or their ``elements(text)``."""
        freq: Counter = Counter()
        for text in texts:
            freq.update(set(self.elements(text)[0] if isinstance(text, str) else text[0]))
        return freq

    def _key(self, element):
        rank = self._rank.get(element)
        if rank is None:
            raw = "\x00".join(map(str, element)).encode()
            rank = (self.frequencies.get(element, 0), zlib.crc32(raw), element)
            self._rank[element] = rank
        return rank

    # -- bounds --------------------------------------------------------------------------

    def _min_overlap(self, m: int) -> int:
        t = self.threshold
        a = t * m / (2 - t) if self.measure == "rougeL" else t * m
        return max(1, math.ceil(a * (1 - _SLACK) - _SLACK))

    def _needed_overlap(self, m: int, k: int) -> float:
        t = self.threshold
        need = t * (m + k) / 2 if self.measure == "rougeL" else t * (m + k) / (1 + t)
        return need * (1 - _SLACK) - _SLACK

    # -- query and insert ----------------------------------------------------------------

    def _similarity(self, query: _Entry, cand: _Entry, overlap: int) -> float:
        if self.measure == "jaccard":
            return overlap / (query.size + cand.size - overlap)
        if query.masks is None:
            query.masks = token_masks(query.tokens)
        lcs = lcs_with_masks(query.masks, query.size, cand.tokens)
        return rouge_l_from_lcs(lcs, query.size, cand.size)

    def _length_range(self, m: int) -> tuple[float, float]:
        """Partner lengths that can reach the threshold (relaxed by the slack)."""
        t = self.threshold
        r = t / (2 - t) if self.measure == "rougeL" else t
        return m * r * (1 - _SLACK) - _SLACK, m / r * (1 + _SLACK) + _SLACK

    def _verify(self, entry: _Entry, j: int, lo: float, hi: float) -> bool:
        cand = self._entries[j]
        if not lo <= cand.size <= hi:
            return False
        overlap = len(entry.elements & cand.elements)
        if overlap < self._needed_overlap(entry.size, cand.size):
            return False
        return self._similarity(entry, cand, overlap) >= self.threshold

    def _find(self, entry: _Entry, ordered: list) -> int | None:
        m = entry.size
        if m == 0:
            return None  # similarity with an empty text is 0
        prefix = ordered[: m - self._min_overlap(m) + 1]
        lo, hi = self._length_range(m)
        # Quick probe: a duplicate usually shares the rarest element, and any verified
        # duplicate settles the decision (dropped), so try that short list first.
        first = self._postings.get(prefix[0], ())
        if len(first) <= _QUICK_PROBE:
            for j in first:
                if self._verify(entry, j, lo, hi):
                    return j
            tried = set(first)
        else:
            tried = set()
        hits: Counter = Counter()
        for element in prefix:
            postings = self._postings.get(element)
            if postings:
                hits.update(postings)  # counted in C
        # most shared prefix elements first: a duplicate is usually found at once
        for j, _ in hits.most_common():
            if j not in tried and self._verify(entry, j, lo, hi):
                return j
        return None

    def _entry(self, text: str | tuple[list, list[str]]):
        """From a text, or from its ``elements(text)`` computed earlier (batch dedup)."""
        elements, tokens = self.elements(text) if isinstance(text, str) else text
        ordered = sorted(elements, key=self._key)
        return _Entry(len(ordered), frozenset(ordered), tokens, None), ordered

    def find(self, text: str | tuple[list, list[str]]):
        """The key of a kept text with similarity >= threshold, or None."""
        entry, ordered = self._entry(text)
        j = self._find(entry, ordered)
        return None if j is None else self.keys[j]

    def add(self, text: str | tuple[list, list[str]], key=None) -> None:
        """Keep ``text`` (no check); ``key`` defaults to its insertion number."""
        entry, ordered = self._entry(text)
        self._insert(entry, ordered, key)

    def _insert(self, entry: _Entry, ordered: list, key) -> None:
        j = len(self._entries)
        self._entries.append(entry)
        self.keys.append(j if key is None else key)
        if entry.size:
            for element in ordered[: entry.size - self._min_overlap(entry.size) + 1]:
                self._postings[element].append(j)

    def add_if_new(self, text: str | tuple[list, list[str]], key=None) -> bool:
        """Keep ``text`` unless a kept text is a near-duplicate; True when kept."""
        entry, ordered = self._entry(text)
        if self._find(entry, ordered) is not None:
            return False
        self._insert(entry, ordered, key)
        return True

    def __len__(self) -> int:
        return len(self._entries)

