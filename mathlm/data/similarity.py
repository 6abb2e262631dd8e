"""Text similarity for diversity filtering: tokens, ROUGE-L, Jaccard on word n-grams.

Tokens follow the ``rouge_score`` package that self-instruct uses: lowercase, every run of
characters other than ``a-z0-9`` is a separator. ``normalize_question`` is those tokens
joined by single spaces, the key under which two questions count as the same.
"""
from __future__ import annotations

import re

__all__ = ["tokenize", "normalize_question", "lcs_length", "token_masks", "lcs_with_masks", "rouge_l",
           "rouge_l_from_lcs", "word_ngrams", "jaccard", "jaccard_sets"]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """``"What is 3+4?"`` -> ``["what", "is", "3", "4"]`` (rouge_score's tokenizer, no stemming)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def normalize_question(text: str) -> str:
    """The form in which two questions are compared for equality (splits, dedup ids)."""
    return " ".join(tokenize(text))


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyro 2004).

    One machine word per token of ``b`` is replaced by a Python int over all of ``a``:
    O(len(b)) big-int operations instead of the O(len(a) * len(b)) table.
    """
    if not a or not b:
        return 0
    return lcs_with_masks(token_masks(a), len(a), b)


def token_masks(tokens: list) -> dict:
    """For each distinct token, the bitmask of its positions (bit i set when tokens[i] is it)."""
    masks: dict = {}
    for i, tok in enumerate(tokens):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def lcs_with_masks(masks: dict, m: int, b) -> int:
    """LCS length of a (given by ``token_masks(a)`` and ``m = len(a)``) and b."""
    if m == 0:
        return 0
    full = (1 << m) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def rouge_l_from_lcs(lcs: int, m: int, n: int) -> float:
    """ROUGE-L F-measure from the LCS length and the two token counts: 2 L / (m + n)."""
    if lcs == 0:
        return 0.0
    precision, recall = lcs / n, lcs / m
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 on tokens, as ``rouge_score.RougeScorer(["rougeL"]).score(a, b).fmeasure``."""
    ta, tb = tokenize(a), tokenize(b)
    return rouge_l_from_lcs(lcs_length(ta, tb), len(ta), len(tb))


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """The set of word n-grams; a text of fewer than n words is one gram (itself)."""
    toks = tokenize(text)
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of the word n-gram sets; 0.0 when either text has no words."""
    return jaccard_sets(word_ngrams(a, n), word_ngrams(b, n))


def jaccard_sets(a: set, b: set) -> float:
    """|a & b| / |a | b|; 0.0 when either set is empty."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)
