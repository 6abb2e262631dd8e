"""Answer extraction and answer equality for math problems.

Used by rejection sampling, RL rewards and evaluation, so it is called millions of times:
plain numbers take a regex fast path (microseconds), structured answers are parsed by hand,
and only expressions with variables that a numeric test cannot settle reach sympy, which
runs in a helper process that is killed on timeout (a C-level bigint power cannot be
interrupted by a signal, a process can always be killed). This module never imports torch.

Extraction (``extract_answer``) wants a stated answer: a box, "The (final) answer is", "Final
Answer:", "####", an output block, a bare number or a closing "Therefore ... N." sentence; a
response cut off after "3 + 4 = 7" gets None (``last_number=True`` restores the lenient
last-number fallback). ``last_boxed``/``boxed_spans`` are mathlm's one boxed extractor.

Equality rules (``math_equal(pred, ref)``):

- integers and fractions compare exactly (``100000`` != ``100001``); a decimal equals a value
  when it is that value rounded to the digits written, within 1e-4 relative (``0.6667`` ==
  ``2/3``; ``2.0001`` != ``2``, ``0.333`` != ``1/3``); a float printed with 12+ digits within 1e-9;
- fractions, mixed numbers and repeating decimals: ``3/4``, ``\\frac{3}{4}``, ``\\dfrac34``,
  ``1 1/2``, ``1\\frac{1}{2}``, ``0.\\overline{3}``; negative numbers (also U+2212); thousands
  separators (``1,234``, ``1{,}234``, ``1\\,000``); scientific notation (``6.02e23``);
  currency signs and units (``$1,234.50``, ``12 apples``, ``5cm``, ``25\\text{ cm}^2``), but
  letters glued to a number that are not a known unit are variables (``6xy`` != ``6``);
- percentages as ToRA's grader: ``50%`` is 0.5 and a number also matches ``ref/100`` and
  ``ref*100``. ToRA applies that scaling to every pair of numbers (so ``2`` == ``200``);
  by default (``percentage="marked"``) it applies only when one side carries ``%`` or the
  word percent; ``percentage="tora"`` gives ToRA's behaviour, ``"none"`` disables it;
- tuples ``(1, 2)``, lists ``[1, 2]``, sets ``\\{1, 2\\}`` (order does not matter), bare
  comma lists (two of them are solution lists: any order), intervals ``[1, 2)`` and unions
  of them (bracket shapes must match), inequalities as intervals (``2 \\le x < 5``), matrices
  as nested lists or ``pmatrix``/``bmatrix`` (a flat vector equals a one-row or one-column
  matrix);
- ``x = 3`` against ``3``, ``x = 2, y = 3`` against ``(2, 3)``, ``x = 2 \\text{ or } x = 3``
  and ``\\pm`` as solution lists, and equations against equations (``y = 2x + 3`` vs
  ``2y = 4x + 6``);
- expressions (``\\binom``, ``\\log_b`` included): constants are evaluated (exactly for
  rationals, else in floating point: ``2\\sqrt{2}`` == ``\\sqrt{8}``); expressions with
  variables are evaluated at fixed random points (``3x+2`` == ``2+3x``); when evaluation is
  inconclusive sympy decides, with a timeout after which the answer is "not equal" (counted:
  ``sympy_timeouts()``). No signals: safe from threads (one helper per process, behind a
  lock) and from forked workers (each starts its own helper).
"""
from __future__ import annotations

import cmath
import json
import math
import operator
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

__all__ = ["BoxedSpan", "boxed_spans", "extract_answer", "last_boxed", "math_equal", "strip_answer", "sympy_timeouts"]

# ----------------------------------------------------------------------------------------
# extraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_IS = re.compile(r"(?:\bthe\s+(?:final\s+)?answer\s+is|\bfinal\s+answer\s*:|(?:^|\n)[ \t*#]*answer[ \t*]*:)[ \t*:]*",
                        re.IGNORECASE)
_OUTPUT_BLOCK = re.compile(r"```output\n(.*?)(?:\n?```|\Z)", re.DOTALL)
_LAST_NUMBER = re.compile(r"[-\u2212]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == "{", nested braces allowed."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _closing_braces(text: str) -> dict[int, int]:
    """Index of each "{" -> index of its matching "}", in one pass (unmatched ones absent)."""
    stack, pairs = [], {}
    for i, c in enumerate(text):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


class BoxedSpan(NamedTuple):
    """One ``\\boxed{...}`` (or ``\\fbox{...}``) group: ``text[start:end]`` is the whole group,
    ``text[content_start:content_end]`` what is inside the braces."""

    start: int
    end: int
    content_start: int
    content_end: int


def boxed_spans(text: str) -> list[BoxedSpan]:
    """Every balanced ``\\boxed{...}`` / ``\\fbox{...}`` group of ``text``, in order (nested
    braces included; a group that never closes is skipped). One brace scan for the whole text."""
    spans, pairs = [], None  # computed on demand: rescanning per \boxed would be quadratic
    for m in _BOXED.finditer(text or ""):
        j = m.end()
        if j < len(text) and text[j] == "{":
            pairs = _closing_braces(text) if pairs is None else pairs
            if j in pairs:
                spans.append(BoxedSpan(m.start(), pairs[j] + 1, j + 1, pairs[j]))
    return spans


def last_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text`` (nested braces
    included, surrounding spaces stripped), or None. ``\\boxed 5`` (no braces) gives ``5``.
    The one boxed extractor of mathlm: data loading, RFT, RL and critique data call it."""
    if not text:
        return None
    pairs = None
    for m in reversed(list(_BOXED.finditer(text))):
        j = m.end()
        if j < len(text) and text[j] == "{":
            pairs = _closing_braces(text) if pairs is None else pairs
            if j in pairs:
                return text[j + 1 : pairs[j]].strip()
        elif m.group(0).endswith(" ") or m.group(0).endswith("\t"):
            # "\boxed 5" (no braces): the next token
            token = re.match(r"[^\s$]+", text[j:])
            if token:
                return token.group(0).rstrip(".")
    return None


def _clean_tail(s: str) -> str:
    """"$\\frac{1}{2}$." -> "\\frac{1}{2}": sentence dots and math dollars around an answer."""
    s = s.strip().rstrip(". ").strip("$ ")
    return s.rstrip(". ")


_MATH_SPAN = re.compile(r"^\s*(?:\$\$(.+?)\$\$|\$((?:\\\$|[^$])+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\])", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?=\s|$)|[!?;](?=\s|$)")


def _answer_after_marker(line: str) -> str:
    """The answer that follows "The final answer is": the first math span when the line starts
    with one (``$72$. I hope it is correct.`` -> ``72``), else the text up to the sentence end."""
    line = line.replace("**", "")  # markdown bold: "**Answer: 42**"
    m = _MATH_SPAN.match(line)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    end = _SENTENCE_END.search(line)
    return _clean_tail(line[: end.start()] if end else line)


# "A truncated 3 + 4 = 7" states no answer; "Therefore, she sold 72 clips." does.
_CONCLUSION = re.compile(r"(?:therefore|thus|so|hence|in total|altogether|finally)\b.*?"
                         r"(-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?)[^\d\n]*[.!]$", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n")
_BARE_ANSWER = re.compile(r"^\s*\$?\s*(-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?)\s*\$?\s*\.?\s*$")


def _closing_sentence(text: str) -> re.Match | None:
    """The match of a last sentence "Therefore/Thus/So ... N." (N in group 1), or None."""
    tail = text.rstrip()[-400:]
    if not tail.endswith((".", "!")):
        return None
    return _CONCLUSION.match(_SENTENCES.split(tail)[-1])


def extract_answer(text: str | None, last_number: bool = False) -> str | None:
    """The final answer stated in ``text``, or None.

    Looks, in this order, for: the last ``\\boxed{...}``/``\\fbox{...}`` (nested braces,
    which also covers our final-answer line ``The answer is \\boxed{...}.``); the last "The
    (final) answer is ...", "Final Answer: ..." or "Answer: ..." (its math span, or up to the
    sentence end: ``The final answer is $72$. I hope it is correct.`` gives ``72``); the last
    GSM8K "#### ..."; the last ```` ```output ```` block (its last line); a text that is only
    a number; the last number of a closing "Therefore/Thus/So ... N." sentence. A response
    that never states its answer (one cut off after "3 + 4 = 7") gives None, unless
    ``last_number=True`` (the lenient GSM8K habit: the last number anywhere).
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    matches = _ANSWER_IS.finditer(text) if "answer" in text.lower() else ()  # the regex is slow
    for m in reversed(list(matches)):
        ans = _answer_after_marker(text[m.end() :].split("\n", 1)[0])
        if ans:
            return ans
    if "####" in text:
        ans = _clean_tail(text.rsplit("####", 1)[1].split("\n", 1)[0])
        if ans:
            return ans
    outputs = _OUTPUT_BLOCK.findall(text)
    if outputs:
        lines = [ln.strip() for ln in outputs[-1].strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    if "\u2212" in text:
        text = text.replace("\u2212", "-")
    stated = _BARE_ANSWER.match(text) or _closing_sentence(text)
    if stated:
        return stated.group(1).replace(" ", "")
    numbers = _LAST_NUMBER.findall(text) if last_number else None
    if numbers:
        return numbers[-1].replace(" ", "")
    return None


# ----------------------------------------------------------------------------------------
# normalization

_UNIT_TEXT = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_CURRENCY = re.compile(r"\\\$|\$|€|£|¥|₹|\bUSD\b|\bdollars?\b|\bcents?\b|\beuros?\b")
_SPACES = re.compile(r"(?<!\\)\\[,;:!> ]|~|\\quad|\\qquad")  # not the "\\" of a matrix row
_VAR_ASSIGN = re.compile(r"^\s*\\?[A-Za-z][A-Za-z0-9_']*(?:\([^()=]*\))?\s*=(?!=)\s*(.+)$", re.DOTALL)
_TUPLE_ASSIGN = re.compile(r"^\s*\(\s*[A-Za-z][\w ,]*\)\s*=\s*(.+)$", re.DOTALL)
_UNIT_WORD = re.compile(r"^([A-Za-z]+)[\w^{}/.\-]*$")
_GLUED_UNIT = re.compile(r"^(-?[\d.,]+)([A-Za-z]{2}[\w^{}/.\-]*)$")
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "log", "ln", "exp", "sec", "csc", "cot", "arcsin", "arccos",
               "arctan", "oo", "infty", "frac", "dfrac", "cdot", "times", "abs", "mod", "pmod", "i", "e", "or",
               "and", "binom", "pm", "mp", "le", "ge", "leq", "geq", "lt", "gt", "in", "cup", "cap"}
# Units short enough to be mistaken for variables: only these are dropped when glued to the
# number ("5cm") or written as a two-letter word ("5 km"); "6xy" and "3 ab" are products.
_UNITS = {"mm", "cm", "dm", "km", "ft", "yd", "mi", "mg", "kg", "lb", "lbs", "oz", "ml", "hr", "hrs", "sec", "min",
          "mph", "kph", "kmh", "mps", "sq", "cu", "ms", "ns", "kw", "kwh", "mb", "gb", "kb", "pm", "am", "th", "st",
          "nd", "rd", "cents"}
_PERCENT_WORD = re.compile(r"\s*(?:percent|per\s*cent)\b\.?$", re.IGNORECASE)
_THIN_THOUSANDS = re.compile(r"(?<=\d)(?:\\,|\\ |\\;|\\!|~|\u2009|\u202f|\u00a0)(?=\d{3}(?!\d))")
_TRAILING_TEXT_UNIT = re.compile(r"^(.*?\S)\s*\\(?:text|textnormal|textrm|mbox|mathrm|rm)\s*\{\s*([A-Za-z][A-Za-z .]*?)\s*\}"
                                 r"\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*\.?$")
_UNICODE = {"\u2212": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ", "\u00f7": "\\div ",
            "\u2264": "\\le ", "\u2265": "\\ge ", "\u00b1": "\\pm ", "\u2213": "\\mp ", "\u221e": "\\infty ",
            "\u2208": "\\in ", "\u222a": "\\cup ", "\u2009": " ", "\u202f": " ", "\u00a0": " "}
_UNICODE_CHARS = re.compile("[" + "".join(_UNICODE) + "]")
_IN_PREFIX = re.compile(r"^[A-Za-z]\s*\\in\s*")
_BASE_SUBSCRIPT = re.compile(r"(\d)_\{(\w+)\}")  # a numeral's base, not \log_{10}


@lru_cache(maxsize=65536)
def strip_answer(answer: str) -> str:
    """Canonical text of an answer: LaTeX spacing, ``$``, ``\\left``, ``dfrac``, degrees,
    currency, ``\\text{}`` wrappers and trailing units (``5\\text{ cm}^2``) removed, Unicode
    signs (U+2212 minus, ``×``, ``≤``) made LaTeX, thin-space thousands (``1\\,000``) joined,
    ``x \\in`` dropped. The meaning is left untouched."""
    s = str(answer).strip()
    if s.startswith("\\boxed") or s.startswith("\\fbox"):
        inner = last_boxed(s)
        if inner is not None:
            s = inner
    if not s.isascii():
        s = _THIN_THOUSANDS.sub("", s)
        s = _UNICODE_CHARS.sub(lambda m: _UNICODE[m.group(0)], s)
    s = s.replace("\n", " ")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\displaystyle", "")
    s = _THIN_THOUSANDS.sub("", s)
    s = s.replace(",\\!", ",")  # MATH's thousands: 32,\!348
    s = _BASE_SUBSCRIPT.sub(r"\1_\2", s)  # 4210_{5} -> 4210_5
    s = _SPACES.sub(" ", s)
    s = s.replace("{,}", ",")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("\\degree", "")
    s = s.replace("\\%", "%")
    s = _PERCENT_WORD.sub("%", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    while (m := _TRAILING_TEXT_UNIT.match(s.strip().rstrip("$ "))) and m.group(2) not in ("i", "e") \
            and any(c.isdigit() for c in m.group(1)):
        s = m.group(1)
    s = _UNIT_TEXT.sub(r" \1 ", s)
    s = _CURRENCY.sub("", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    s = _IN_PREFIX.sub("", s)
    if s == "\\mathbb{R}" or s == "\\mathbb R":
        s = "(-\\infty, \\infty)"
    return _drop_unit_words(s.replace(" ^", "^"))


def _is_unit_word(word: str, glued: bool) -> bool:
    m = _UNIT_WORD.match(word)
    if not m:
        return False
    letters = m.group(1).lower()
    if letters in _MATH_WORDS:
        return False
    return letters in _UNITS or len(letters) >= (4 if glued else 3)


def _drop_unit_words(s: str) -> str:
    """"12 apples", "60 km/h", "5cm" -> the number. Words of three letters or more that are
    not math names, or known units (so "5 x", "2 pi", "6xy" stay), and only when a number or
    constant is left."""
    words = s.split(" ")
    m = _GLUED_UNIT.match(words[-1])
    if m and _is_unit_word(m.group(2), glued=True):
        words[-1:] = [m.group(1), m.group(2)]
    k = len(words)
    while k > 1 and _is_unit_word(words[k - 1], glued=False):
        k -= 1
    if k < len(words):
        head = " ".join(words[:k])
        if _parse_number(head) is not None or _is_constant(head):
            return head
    return s


# ----------------------------------------------------------------------------------------
# numbers


class _Number:
    """An exact rational, with how it was written: ``quantum`` is the unit of the last digit
    written (``2.50`` -> 1/100, ``6.02e23`` -> 10^21; None for integers and fractions, which
    compare exactly), ``noisy`` marks a float printed with 12+ significant digits."""

    __slots__ = ("value", "decimal", "percent", "quantum", "noisy")

    def __init__(self, value: Fraction, decimal: bool, percent: bool, quantum: Fraction | None = None,
                 noisy: bool = False):
        self.value, self.decimal, self.percent = value, decimal, percent
        self.quantum, self.noisy = quantum, noisy


_INT = re.compile(r"^[+-]?\d+$")
_DEC = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SPACE_THOUSANDS = re.compile(r"^\d{1,3}(?: \d{3})+(?:\.\d+)?$")
_SLASH = re.compile(r"^([+-]?)\s*(\d+)\s*/\s*(\d+)$")
_MIXED = re.compile(r"^([+-]?)(\d+)\s+(\d+)\s*/\s*(\d+)$")
_FRAC = re.compile(r"^([+-]?)\s*\\frac\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))$")
_MIXED_FRAC = re.compile(r"^([+-]?)(\d+)\s*\\frac\s*(?:\{(\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))$")
_REPEATING = re.compile(r"^(\d*)\.(\d*)\\(?:overline|bar|dot)\s*\{?(\d+)\}?$")  # 0.1\overline{6} = 1/6


def _decimal(s: str) -> tuple[Fraction, Fraction, bool]:
    """(value, quantum, noisy) of a decimal numeral such as ``2.50`` or ``6.02e23``."""
    mantissa, _, exponent = s.lower().partition("e")
    places = len(mantissa.partition(".")[2])
    significant = len(mantissa.replace(".", "").lstrip("0"))
    return Fraction(s), Fraction(10) ** (int(exponent or 0) - places), significant >= 12


def _repeating(m: re.Match) -> Fraction:
    whole, fixed, cycle = m.group(1) or "0", m.group(2), m.group(3)
    head = Fraction(int(fixed or "0"), 10 ** len(fixed))
    return int(whole) + head + Fraction(int(cycle), (10 ** len(cycle) - 1) * 10 ** len(fixed))


def _parse_fraction_forms(s: str) -> tuple[Fraction | None, bool]:
    """(value, written with a decimal point) of 3/4, 1 1/2, \\frac{3}{4}, 1\\frac12; (None, _)
    when ``s`` is none of them or divides by zero."""
    m = _SLASH.match(s)
    if m:
        return (None if int(m.group(3)) == 0 else Fraction(int(m.group(2)), int(m.group(3)))
                * (-1 if m.group(1) == "-" else 1)), False
    m = _MIXED.match(s)
    if m:
        if int(m.group(4)) == 0:
            return None, False
        return (int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))) * (-1 if m.group(1) == "-" else 1), False
    m = _FRAC.match(s)
    if m:
        num, den = m.group(2) or m.group(3), m.group(4) or m.group(5)
        if Fraction(den) == 0:
            return None, False
        return Fraction(num) / Fraction(den) * (-1 if m.group(1) == "-" else 1), "." in num + den
    m = _MIXED_FRAC.match(s)
    if m:
        den = int(m.group(5) or m.group(6))
        if den == 0:
            return None, False
        value = int(m.group(2)) + Fraction(int(m.group(3) or m.group(4)), den)
        return value * (-1 if m.group(1) == "-" else 1), False
    return None, False


@lru_cache(maxsize=65536)
def _parse_number(s: str) -> _Number | None:
    """Parse a plain number (no expression); None when ``s`` is not one."""
    s = s.strip()
    percent = False
    if s.endswith("%"):
        percent, s = True, s[:-1].strip()
    if s.startswith("+"):
        s = s[1:]
    neg = False
    if s.startswith("-"):
        neg, s = True, s[1:].strip()
    quantum, noisy, decimal = None, False, False
    if s.isascii() and s.isdigit():
        value = Fraction(int(s))  # int() first: much cheaper than Fraction's string parser
    elif _DEC.match(s):
        (value, quantum, noisy), decimal = _decimal(s), True
    elif _THOUSANDS.match(s) or _SPACE_THOUSANDS.match(s):
        t = s.replace(",", "").replace(" ", "")
        decimal = "." in t
        value, quantum, noisy = _decimal(t) if decimal else (Fraction(int(t)), None, False)
    elif (m := _REPEATING.match(s)) is not None:
        value = _repeating(m)
    else:
        value, decimal = _parse_fraction_forms(s)
    if value is None:
        return None
    if neg:
        value = -value
    if percent:
        value /= 100
        quantum = quantum / 100 if quantum is not None else None
    return _Number(value, decimal or percent, percent, quantum, noisy)


def _close(a: Fraction, b: Fraction, exact: bool) -> bool:
    if a == b:
        return True
    if exact:
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-4)


def _decimals_equal(p: _Number, r: _Number) -> bool:
    """A decimal equals a value when it is that value rounded to the digits written (``0.6667``
    is 2/3, ``2.0001`` is not 2), and within 1e-4 relative (``0.333`` is not 1/3); a float
    printed with 12+ digits (``0.30000000000000004``) within 1e-9."""
    a, b = float(p.value), float(r.value)
    if p.noisy or r.noisy:
        return math.isclose(a, b, rel_tol=1e-9)
    if not math.isclose(a, b, rel_tol=1e-4):
        return False
    quanta = [n.quantum for n in (p, r) if n.quantum is not None]
    return not quanta or abs(p.value - r.value) * 2 <= max(quanta)


def _numbers_equal(p: _Number, r: _Number, percentage: str) -> bool:
    if p.value == r.value:
        return True
    if (p.decimal or r.decimal) and _decimals_equal(p, r):
        return True
    scale = percentage == "tora" or (percentage == "marked" and (p.percent or r.percent))
    if scale:
        # ToRA: the prediction may equal the reference, or it divided or multiplied by 100
        for candidate in (r.value / 100, r.value * 100):
            if _close(p.value, candidate, False):
                return True
    return False


# ----------------------------------------------------------------------------------------
# structures: matrices, tuples, lists, sets, intervals


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and braces."""
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _closing(s: str, start: int) -> int:
    """Index of the bracket closing the one at s[start] (any bracket kind), or -1."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


_MATRIX_ENV = re.compile(r"^\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.DOTALL)


@lru_cache(maxsize=65536)
def _structure(s: str):
    """Classify an answer: ("matrix", rows) | ("set", items) | ("seq", open, close, items) |
    ("union", parts) | ("scalar", s)."""
    m = _MATRIX_ENV.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        return ("matrix", tuple(tuple(c.strip() for c in r.split("&")) for r in rows))
    if "\\cup" in s:
        parts = [p.strip() for p in s.split("\\cup")]
        if all(_structure(p)[0] == "seq" for p in parts):
            return ("union", tuple(parts))
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        return ("set", tuple(_split_top(inner)) if inner else ())
    if s and s[0] in "([{" and _closing(s, 0) == len(s) - 1:
        # any closing bracket counts, so "[1, 2)" (an interval) is one bracketed whole
        inner = s[1:-1].strip()
        items = _split_top(inner) if inner else []
        if s[0] == "{":
            if len(items) > 1:
                return ("set", tuple(items))
            return ("scalar", s)
        if s[0] == "[" and items and all(_structure(it)[0] == "seq" and it.startswith("[") for it in items):
            rows = [_structure(it)[3] for it in items]
            if len({len(r) for r in rows}) == 1:
                return ("matrix", tuple(rows))
        if len(items) == 1 and s[0] == "(":
            return _structure(items[0])  # "(5)" is just 5
        return ("seq", s[0], s[-1], tuple(items))
    parts = _split_top(s)
    if len(parts) > 1 and not _THOUSANDS.match(s):
        return ("seq", "", "", tuple(parts))
    return ("scalar", s)


def _items_equal(ps: list[str], rs: list[str], ctx) -> bool:
    return len(ps) == len(rs) and all(_equal(p, r, ctx) for p, r in zip(ps, rs))


def _unordered_equal(ps: list[str], rs: list[str], ctx) -> bool:
    if len(ps) != len(rs):
        return False
    left = list(rs)
    for p in ps:
        for i, r in enumerate(left):
            if _equal(p, r, ctx):
                del left[i]
                break
        else:
            return False
    return True


def _structures_equal(P, R, ctx) -> bool | None:
    """True/False when the shapes decide, None when both are scalars."""
    kp, kr = P[0], R[0]
    if kp == kr == "scalar":
        return None
    if kp == "matrix" or kr == "matrix":
        if kp == kr:
            return len(P[1]) == len(R[1]) and all(_items_equal(a, b, ctx) for a, b in zip(P[1], R[1]))
        mat, other = (P, R) if kp == "matrix" else (R, P)
        if other[0] != "seq":
            return False
        rows = mat[1]
        flat = [c for row in rows for c in row]
        if len(rows) == 1 or all(len(row) == 1 for row in rows):
            return _items_equal(flat, other[3], ctx) if mat is P else _items_equal(other[3], flat, ctx)
        return False
    if kp == "union" or kr == "union":
        if kp != kr:
            return False
        return _unordered_equal(P[1], R[1], ctx)
    if kp == "set" or kr == "set":
        ps = P[1] if kp == "set" else (P[3] if kp == "seq" and P[1] == "" else None)
        rs = R[1] if kr == "set" else (R[3] if kr == "seq" and R[1] == "" else None)
        if ps is None or rs is None:
            return False
        return _unordered_equal(ps, rs, ctx)
    if kp == "seq" and kr == "seq":
        po, pc, ro, rc = P[1], P[2], R[1], R[2]
        if po == ro == "":  # two bare lists: solutions, "2, 3" == "3, 2"
            return _unordered_equal(P[3], R[3], ctx)
        if po and ro:
            if (po, pc) != (ro, rc):  # (1, 2) and [1, 2] are different intervals
                return False
        elif ((ro, rc) if po == "" else (po, pc)) not in {("", ""), ("(", ")"), ("[", "]")}:
            return False  # a bare list may be a tuple or a list, never an interval
        return _items_equal(P[3], R[3], ctx)
    return False  # a scalar against a structure


# ----------------------------------------------------------------------------------------
# expressions: a small LaTeX-aware parser, exact and numeric evaluation


class _Unsupported(Exception):
    pass


_FUNCS = {
    "sqrt": (math.sqrt, cmath.sqrt), "sin": (math.sin, cmath.sin), "cos": (math.cos, cmath.cos),
    "tan": (math.tan, cmath.tan), "ln": (math.log, cmath.log), "log": (math.log, cmath.log),
    "exp": (math.exp, cmath.exp), "arcsin": (math.asin, cmath.asin), "arccos": (math.acos, cmath.acos),
    "arctan": (math.atan, cmath.atan), "sec": (lambda x: 1 / math.cos(x), lambda x: 1 / cmath.cos(x)),
    "csc": (lambda x: 1 / math.sin(x), lambda x: 1 / cmath.sin(x)),
    "cot": (lambda x: 1 / math.tan(x), lambda x: 1 / cmath.tan(x)),
    "abs": (abs, abs),
}
_CONSTS = {"pi": math.pi, "oo": math.inf, "e": math.e}  # "e" in an answer is Euler's number
_NAMES = sorted([*_FUNCS, *_CONSTS], key=len, reverse=True)  # longest first: "arcsin" before "sin"
_TOKEN = re.compile(r"\s*(?:((?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+(?![\d.]))?)|([A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?)|(\*\*|[-+*/^()!|]))")


def _latex_arg(s: str, i: int) -> tuple[str, int]:
    """The argument of a LaTeX command starting at s[i]: a brace group or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise _Unsupported(s)
    if s[i] == "{":
        inner = _braced(s, i)
        if inner is None:
            raise _Unsupported(s)
        return inner, i + len(inner) + 2
    return s[i], i + 1


_BARE_LOG = re.compile(r"(?<![A-Za-z\\])log_")
_LOG_ARG = re.compile(r"\s*(\d+(?:\.\d+)?|[A-Za-z])")


def _log_arg(s: str, i: int) -> tuple[str, int]:
    """The argument of ``\\log_b``: a (...) or {...} group, else one number or letter with its power."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "(":
        j = _closing(s, i)
        if j < 0:
            raise _Unsupported(s)
        return s[i + 1 : j], j + 1
    if i < len(s) and s[i] == "{":
        return _latex_arg(s, i)
    m = _LOG_ARG.match(s, i)
    if not m:
        raise _Unsupported(s)
    arg, i = m.group(1), m.end()
    if s.startswith("^", i):  # \log_2 2^{10} is log_2(2^10)
        exponent, i = _latex_arg(s, i + 1)
        arg = f"{arg}^{{{exponent}}}"
    return arg, i


def _latex_to_plain(s: str) -> str:
    """Rewrite the LaTeX we accept into plain infix: \\frac{a}{b} -> ((a)/(b)) and so on."""
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\div", "/")
    s = s.replace("\\infty", "oo").replace("∞", "oo").replace("π", "pi").replace("√", "\\sqrt")
    s = _BARE_LOG.sub(r"\\log_", s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom"))
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i):
            num, i = _latex_arg(s, i + 5)
            den, i = _latex_arg(s, i)
            out.append(f"(({_latex_to_plain(num)})/({_latex_to_plain(den)}))")
        elif s.startswith("\\sqrt", i):
            i += 5
            index = None
            if i < len(s) and s[i] == "[":
                j = s.find("]", i)
                if j < 0:
                    raise _Unsupported(s)
                index, i = s[i + 1 : j], j + 1
            inner, i = _latex_arg(s, i)
            arg = _latex_to_plain(inner)
            out.append(f"sqrt({arg})" if index is None else f"(({arg})^(1/({_latex_to_plain(index)})))")
        elif s.startswith("\\binom", i):
            top, i = _latex_arg(s, i + 6)
            bottom, i = _latex_arg(s, i)
            n, k = _latex_to_plain(top), _latex_to_plain(bottom)
            out.append(f"(({n})!/(({k})!(({n})-({k}))!))")
        elif s.startswith("\\log_", i):
            base, i = _latex_arg(s, i + 5)
            arg, i = _log_arg(s, i)
            out.append(f"((ln({_latex_to_plain(arg)}))/(ln({_latex_to_plain(base)})))")
        elif s[i] == "\\":
            m = re.match(r"\\([A-Za-z]+)", s[i:])
            if not m:
                raise _Unsupported(s)
            out.append(" " + m.group(1) + " ")
            i += len(m.group(0))
        elif s[i] == "{":
            out.append("(")
            i += 1
        elif s[i] == "}":
            out.append(")")
            i += 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _tokens(s: str) -> list[tuple[str, str]]:
    toks, i = [], 0
    s = s.strip()
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m or m.end() == i:
            raise _Unsupported(s)
        i = m.end()
        if m.group(1):
            toks.append(("num", m.group(1)))
        elif m.group(2):
            word = m.group(2)
            if word in _FUNCS or word in _CONSTS:
                toks.append(("func" if word in _FUNCS else "const", word))
            elif "_" in word:
                toks.append(("var", word.replace("{", "").replace("}", "")))
            else:
                # "xy" is x*y and "sinx" is sin x: a known name wins, other letters are variables
                j = 0
                while j < len(word):
                    name = next((n for n in _NAMES if word.startswith(n, j)), None)
                    if name:
                        toks.append(("func" if name in _FUNCS else "const", name))
                        j += len(name)
                    else:
                        toks.append(("var", word[j]))
                        j += 1
        else:
            toks.append(("op", "^" if m.group(3) == "**" else m.group(3)))
    return toks


class _Parser:
    """Pratt parser with implicit multiplication. Nodes are tuples: ("num", Fraction, is_decimal),
    ("var", name), ("const", name), ("neg", a), ("+"|"-"|"*"|"/"|"^", a, b), ("func", name, a),
    ("fact", a)."""

    def __init__(self, toks):
        self.toks, self.i = toks, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def parse(self):
        node = self.expr(0)
        if self.peek()[0] != "end":
            raise _Unsupported(self.peek())
        return node

    def starts_atom(self, t):
        return t[0] in ("num", "var", "const", "func") or t == ("op", "(") or t == ("op", "|")

    def expr(self, min_bp):
        left = self.unary()
        while True:
            t = self.peek()
            if t[0] == "op" and t[1] in "+-":
                bp, op = 10, t[1]
            elif t[0] == "op" and t[1] in "*/":
                bp, op = 20, t[1]
            elif self.starts_atom(t) and t != ("op", "|"):
                bp, op = 20, "implicit"
            else:
                return left
            if bp < min_bp + 1:
                return left
            if op != "implicit":
                self.take()
            right = self.expr(bp)
            left = ("*" if op == "implicit" else op, left, right)

    def unary(self):
        t = self.peek()
        if t == ("op", "-"):
            self.take()
            return ("neg", self.expr(25))
        if t == ("op", "+"):
            self.take()
            return self.expr(25)
        return self.power()

    def power(self):
        base = self.postfix(self.atom())
        if self.peek() == ("op", "^"):
            self.take()
            exp = self.unary() if self.peek() in (("op", "-"), ("op", "+")) else self.power()
            return ("^", base, exp)
        return base

    def postfix(self, node):
        while self.peek() == ("op", "!"):
            self.take()
            node = ("fact", node)
        return node

    def atom(self):
        t = self.take()
        if t[0] == "num":
            return ("num", Fraction(t[1]), "." in t[1])
        if t[0] in ("var", "const"):
            return t
        if t[0] == "func":
            if self.peek() == ("op", "^"):  # \sin^2 x
                self.take()
                exp = self.atom()
                return ("^", ("func", t[1], self.power()), exp)
            return ("func", t[1], self.power())
        if t == ("op", "("):
            node = self.expr(0)
            if self.take() != ("op", ")"):
                raise _Unsupported("unbalanced parenthesis")
            return node
        if t == ("op", "|"):
            node = self.expr(0)
            if self.take() != ("op", "|"):
                raise _Unsupported("unbalanced |")
            return ("func", "abs", node)
        raise _Unsupported(t)


@lru_cache(maxsize=65536)
def _parse_expr(s: str):
    if len(s) > 500:
        raise _Unsupported("too long")
    return _Parser(_tokens(_latex_to_plain(s))).parse()


def _is_constant(s: str) -> bool:
    """Whether ``s`` parses as an expression without variables (``5\\sqrt{2}``, ``2\\pi``)."""
    try:
        return not _variables(_parse_expr(s))
    except (_Unsupported, RecursionError, ValueError, ZeroDivisionError):
        return False


def _variables(node) -> set[str]:
    if node[0] == "var":
        return {node[1]}
    out: set[str] = set()
    for child in node[1:]:
        if isinstance(child, tuple):
            out |= _variables(child)
    return out


def _has_decimal(node) -> bool:
    if node[0] == "num":
        return node[2]
    return any(isinstance(c, tuple) and _has_decimal(c) for c in node[1:])


_MAX_BITS = 100_000  # exact powers up to ~30,000 digits; beyond that only sympy could, and slowly
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _exact(node) -> Fraction:
    """Rational value of a constant expression; _Unsupported when not rational or too big."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "neg":
        return -_exact(node[1])
    if kind in _ARITH:
        return _ARITH[kind](_exact(node[1]), _exact(node[2]))  # x/0 raises ZeroDivisionError
    if kind == "^":
        a, b = _exact(node[1]), _exact(node[2])
        if b.denominator != 1 or abs(b) > 10000:
            raise _Unsupported("non-integer power")
        bits = max(abs(a.numerator), abs(a.denominator)).bit_length() * abs(b.numerator)
        if bits > _MAX_BITS or (a == 0 and b < 0):
            raise _Unsupported("power too big")
        return a ** int(b)
    if kind == "fact":
        a = _exact(node[1])
        if a.denominator != 1 or not 0 <= a <= 300:
            raise _Unsupported("factorial")
        return Fraction(math.factorial(int(a)))
    raise _Unsupported(kind)


def _numeric(node, env: dict[str, complex]) -> complex:
    kind = node[0]
    if kind == "num":
        return complex(node[1])
    if kind == "var":
        return env[node[1]]
    if kind == "const":
        return complex(_CONSTS[node[1]])
    if kind == "neg":
        return -_numeric(node[1], env)
    if kind == "fact":
        a = _numeric(node[1], env)
        if a.imag or a.real != int(a.real) or not 0 <= a.real <= 170:
            raise _Unsupported("factorial")
        return complex(math.factorial(int(a.real)))
    if kind == "func":
        a = _numeric(node[2], env)
        real_fn, complex_fn = _FUNCS[node[1]]
        if node[1] == "abs":
            return complex(abs(a))
        if a.imag == 0:
            try:
                return complex(real_fn(a.real))
            except ValueError:
                pass
        return complex_fn(a)
    a, b = _numeric(node[1], env), _numeric(node[2], env)
    if kind in _ARITH:
        return _ARITH[kind](a, b)
    if kind == "^":
        if a.imag == 0 and b.imag == 0 and (a.real >= 0 or b.real == int(b.real)):
            return complex(a.real ** b.real)
        return a**b
    raise _Unsupported(kind)


def _complex_close(a: complex, b: complex, rel: float) -> bool:
    if cmath.isinf(a) or cmath.isinf(b):
        return a == b
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), 1e-12)


# Fixed points for the polynomial-identity test (Schwartz-Zippel): irrational-looking values
# so that different expressions agreeing at every point is practically impossible.
_POINTS = (0.5377, 1.8339, -2.2588, 0.8622, 0.3188, -1.3077, 2.7694, -0.4336)
_MIN_AGREEING = 3


def _at_points(a, b):
    """(a, b) evaluated at each fixed point where both are defined; every variable gets its
    own value (shifted by 0.1 per variable so that x and y never coincide)."""
    variables = sorted(_variables(a) | _variables(b))
    for k in range(len(_POINTS)):
        env = {v: complex(_POINTS[(k + 3 * j) % len(_POINTS)] + 0.1 * j) for j, v in enumerate(variables)}
        try:
            yield _numeric(a, env), _numeric(b, env)
        except (_Unsupported, ZeroDivisionError, OverflowError, ValueError):
            continue


def _evaluate_equal(a, b, decimal: bool) -> bool | None:
    """Decide by evaluation; None when inconclusive."""
    variables = sorted(_variables(a) | _variables(b))
    if not variables:
        try:
            if not decimal:
                return _exact(a) == _exact(b)
            return _close(_exact(a), _exact(b), False)
        except (_Unsupported, ZeroDivisionError, OverflowError):
            pass
        try:
            va, vb = _numeric(a, {}), _numeric(b, {})
        except (_Unsupported, ZeroDivisionError, OverflowError, ValueError):
            # a constant too big for exact arithmetic and for floats (9^9^9): sympy would
            # have to build the same number, so it is not asked
            return False
        return _complex_close(va, vb, 1e-4 if decimal else 1e-9)
    agreeing = 0
    for va, vb in _at_points(a, b):
        if cmath.isnan(va) or cmath.isnan(vb):
            continue
        if not _complex_close(va, vb, 1e-4 if decimal else 1e-7):
            return False
        agreeing += 1
    return True if agreeing >= _MIN_AGREEING else None


def _to_sympy_text(node) -> str:
    """Python/sympy syntax for a parsed node (only numbers, whitelisted names, operators)."""
    kind = node[0]
    if kind == "num":
        return f"Rational('{node[1]}')"
    if kind == "var":
        return f"Symbol('{node[1]}')"
    if kind == "const":
        return {"pi": "pi", "oo": "oo", "e": "E"}[node[1]]
    if kind == "neg":
        return f"(-{_to_sympy_text(node[1])})"
    if kind == "fact":
        return f"factorial({_to_sympy_text(node[1])})"
    if kind == "func":
        name = {"ln": "log", "arcsin": "asin", "arccos": "acos", "arctan": "atan", "abs": "Abs"}.get(node[1], node[1])
        return f"{name}({_to_sympy_text(node[2])})"
    op = "**" if kind == "^" else kind
    return f"({_to_sympy_text(node[1])}{op}{_to_sympy_text(node[2])})"


# ----------------------------------------------------------------------------------------
# sympy in a killable helper process

_WORKER_SOURCE = r"""
import json, sys
from sympy import (Rational, Symbol, pi, oo, E, sqrt, sin, cos, tan, log, exp, asin, acos, atan,
                   sec, csc, cot, Abs, factorial, simplify, nsimplify)
names = dict(Rational=Rational, Symbol=Symbol, pi=pi, oo=oo, E=E, sqrt=sqrt, sin=sin, cos=cos,
             tan=tan, log=log, exp=exp, asin=asin, acos=acos, atan=atan, sec=sec, csc=csc,
             cot=cot, Abs=Abs, factorial=factorial)
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    try:
        a = eval(job["a"], {"__builtins__": {}}, names)
        b = eval(job["b"], {"__builtins__": {}}, names)
        if job["mode"] == "ratio":
            r = simplify(a / b)
            ok = bool(r.is_number and r != 0)
        else:
            ok = bool(simplify(a - b) == 0) or bool(a.equals(b))
    except Exception:
        ok = False
    print(json.dumps(ok), flush=True)
"""


class _SympyWorker:
    """One long-lived sympy process per caller process; killed and restarted on timeout."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.timeouts = 0  # questions killed on timeout in this process (see sympy_timeouts)

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_SOURCE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        if self._readline(120.0) != "ready":
            self._kill()
            raise RuntimeError("the sympy helper process did not start")

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _readline(self, timeout: float) -> str | None:
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            data += chunk
        return data.decode().strip()

    def ask(self, a: str, b: str, mode: str, timeout: float) -> bool:
        with self.lock:
            if self.pid != os.getpid():  # forked: the parent's process is not ours to use
                self.proc, self.pid = None, os.getpid()
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            self.proc.stdin.write((json.dumps({"a": a, "b": b, "mode": mode}) + "\n").encode())
            self.proc.stdin.flush()
            answer = self._readline(timeout)
            if answer is None:
                self._kill()
                self.timeouts += 1
                return False
            return json.loads(answer)


_WORKER = _SympyWorker()


def sympy_timeouts() -> int:
    """How many pairs this process has graded "not equal" because sympy ran past its timeout
    (counted, not hidden: a run that reports many needs a larger ``timeout``)."""
    return _WORKER.timeouts


def _sympy_equal(a, b, mode: str, timeout: float) -> bool:
    try:
        return _WORKER.ask(_to_sympy_text(a), _to_sympy_text(b), mode, timeout)
    except (OSError, RuntimeError):
        return False


def _expressions_equal(p: str, r: str, ctx) -> bool:
    p, r = (x.replace(",", "") if _THOUSANDS.match(x) else x for x in (p, r))  # 10^6 vs 1,000,000
    try:
        a, b = _parse_expr(p), _parse_expr(r)
    except (_Unsupported, RecursionError, ValueError, ZeroDivisionError):
        return False
    verdict = _evaluate_equal(a, b, _has_decimal(a) or _has_decimal(b))
    if verdict is None:
        verdict = _sympy_equal(a, b, "diff", ctx[1])
    return verdict


def _equations_equal(p: str, r: str, ctx) -> bool:
    pl, pr = p.split("=")
    rl, rr = r.split("=")
    if _equal(pl, rl, ctx) and _equal(pr, rr, ctx):
        return True
    try:
        dp = ("-", _parse_expr(pl.strip()), _parse_expr(pr.strip()))
        dr = ("-", _parse_expr(rl.strip()), _parse_expr(rr.strip()))
    except (_Unsupported, RecursionError, ValueError, ZeroDivisionError):
        return False
    # Same solution set when lhs - rhs of one is a nonzero constant multiple of the other's.
    ratios = []
    for va, vb in _at_points(dp, dr):
        if abs(vb) < 1e-12 or abs(va) < 1e-12:
            if abs(vb) < 1e-12 and abs(va) < 1e-12:
                continue
            return False
        ratios.append(va / vb)
    if len(ratios) >= _MIN_AGREEING:
        return all(_complex_close(q, ratios[0], 1e-7) for q in ratios)
    return _sympy_equal(dp, dr, "ratio", ctx[1])


# ----------------------------------------------------------------------------------------
# the comparison


def _drop_assignment(s: str) -> str:
    """``x = 3`` -> ``3``; ``x = 2, y = 3`` -> ``(2, 3)``; ``(x, y) = (2, 3)`` -> ``(2, 3)``."""
    parts = _split_top(s)
    if len(parts) > 1 and all(_VAR_ASSIGN.match(p) and p.count("=") == 1 for p in parts):
        return "(" + ", ".join(_VAR_ASSIGN.match(p).group(1).strip() for p in parts) + ")"
    if s.count("=") == 1:
        m = _TUPLE_ASSIGN.match(s) or _VAR_ASSIGN.match(s)
        if m:
            return m.group(1).strip()
    return s


_REL = r"(\\leq|\\le|\\geq|\\ge|\\lt|\\gt|<=|>=|<|>)"
_TWO_SIDED = re.compile(rf"^(.+?)\s*{_REL}\s*([A-Za-z])\s*{_REL}\s*(.+)$")
_VAR_FIRST = re.compile(rf"^([A-Za-z])\s*{_REL}\s*(.+)$")
_VAR_LAST = re.compile(rf"^(.+?)\s*{_REL}\s*([A-Za-z])$")
_LESS = {"<": "<", "\\lt": "<", "\\le": "<=", "\\leq": "<=", "<=": "<=",
         ">": ">", "\\gt": ">", "\\ge": ">=", "\\geq": ">=", ">=": ">="}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OR_AND = re.compile(r"\s*,?\s+(?:or|and)\s+")


def _one_interval(s: str) -> str | None:
    """``2 \\le x < 5`` -> ``[2, 5)``; ``x > 3`` and ``3 < x`` -> ``(3, \\infty)``; None otherwise."""
    m = _TWO_SIDED.match(s)
    if m:
        lo, r1, r2, hi = m.group(1), _LESS[m.group(2)], _LESS[m.group(4)], m.group(5)
        if r1[0] == ">" and r2[0] == ">":
            lo, hi, r1, r2 = hi, lo, _FLIP[r2], _FLIP[r1]
        if r1[0] != "<" or r2[0] != "<":
            return None
        return ("[" if r1 == "<=" else "(") + f"{lo}, {hi}" + ("]" if r2 == "<=" else ")")
    m = _VAR_FIRST.match(s)
    rel, bound = (_LESS[m.group(2)], m.group(3)) if m else (None, None)
    if m is None:
        m = _VAR_LAST.match(s)
        if m is None:
            return None
        rel, bound = _FLIP[_LESS[m.group(2)]], m.group(1)
    if rel[0] == "<":
        return f"(-\\infty, {bound}" + ("]" if rel == "<=" else ")")
    return ("[" if rel == ">=" else "(") + f"{bound}, \\infty)"


def _as_interval(s: str) -> str:
    """Inequalities in one variable as intervals: ``x < -1 or x > 2`` -> ``(-\\infty, -1) \\cup (2, \\infty)``."""
    if not re.search(r"[<>]|\\[lg]", s):
        return s
    parts = [_one_interval(part.strip()) for part in re.split(r"\s+or\s+|\\cup|\\vee", s)]
    return s if None in parts else " \\cup ".join(parts)


def _expand_pm(s: str, depth: int = 0) -> list[str]:
    """``2 \\pm \\sqrt{3}`` -> [``2 + \\sqrt{3}``, ``2 - \\sqrt{3}``] (at most two signs expanded)."""
    m = re.search(r"\\(pm|mp)(?![A-Za-z])", s)
    if m is None or depth == 2:
        return [s]
    signs = ("+", "-") if m.group(1) == "pm" else ("-", "+")
    return [x for sign in signs for x in _expand_pm(s[: m.start()] + sign + s[m.end() :], depth + 1)]


def _solution_list(s: str) -> str:
    """Several solutions as a bare list (compared as a set): ``x = 2 \\text{ or } x = 3``,
    ``x = 2, x = 3``, ``x = \\pm 2``, ``2 \\pm \\sqrt{3}``. Assignments to different variables
    (``x = 2, y = 3``) are left for ``_drop_assignment`` (a tuple)."""
    if " or " in s or " and " in s:
        parts = [p.strip() for p in _OR_AND.split(s) if p.strip()]
    elif "\\pm" in s or "\\mp" in s or ("=" in s and "," in s):
        parts = _split_top(s)
    else:
        return s
    parts = [x for p in parts for x in _expand_pm(p)]
    if len(parts) < 2:
        return parts[0] if parts else s
    assigned = [_VAR_ASSIGN.match(p) if p.count("=") == 1 else None for p in parts]
    if all(assigned):
        names = {p.split("=")[0].strip() for p in parts}
        if len(names) != 1:
            return s
        parts = [m.group(1).strip() for m in assigned]
    elif any(assigned) or any("=" in p for p in parts):
        return s
    return ", ".join(parts)


@lru_cache(maxsize=65536)
def _normal_form(s: str) -> str:
    return _solution_list(_as_interval(strip_answer(s)))


def _equal(p: str, r: str, ctx) -> bool:
    p, r = _normal_form(p), _normal_form(r)
    if not p or not r:
        return False
    if p == r or p.lower() == r.lower():
        return True
    if p.count("=") == 1 and r.count("=") == 1 and "\\le" not in p + r:
        if _equations_equal(p, r, ctx):
            return True
    if "=" in p and "=" not in r:
        p = _drop_assignment(p)
    elif "=" in r and "=" not in p:
        r = _drop_assignment(r)
    np_, nr = _parse_number(p), _parse_number(r)
    if np_ is not None and nr is not None:
        return _numbers_equal(np_, nr, ctx[0])
    shapes = _structures_equal(_structure(p), _structure(r), ctx)
    if shapes is not None:
        return shapes
    if p.endswith("%") or r.endswith("%"):
        return False
    return _expressions_equal(p, r, ctx)


_CLEAN = re.compile(r"^[-+]?[\d.][\d.\s/]*%?$")
_PERCENTAGE_MODES = ("marked", "tora", "none")
_MAX_ANSWER_CHARS = 1000


def math_equal(pred: str | float | int | None, ref: str | float | int | None, timeout: float = 3.0,
               percentage: str = "marked") -> bool:
    """Whether the predicted answer equals the reference answer (see the module docstring).

    ``timeout`` bounds the sympy fallback (seconds); ``percentage`` is "marked" (default),
    "tora" or "none". Never raises on odd input: anything unparsable compares as text.
    """
    if percentage not in _PERCENTAGE_MODES:
        raise ValueError(f"percentage ({percentage!r}) must be one of {_PERCENTAGE_MODES}")
    if pred is None or ref is None:
        return False
    p, r = str(pred).strip(), str(ref).strip()
    if p == r:
        return p != ""
    if len(p) > _MAX_ANSWER_CHARS or len(r) > _MAX_ANSWER_CHARS:
        return False  # not an answer; parsing it could only cost time
    # the common case: two clean numbers (12, -0.5, 3/4, 1 1/2) need no normalization
    if _CLEAN.match(p) and _CLEAN.match(r):
        np_, nr = _parse_number(p), _parse_number(r)
        if np_ is not None and nr is not None:
            return _numbers_equal(np_, nr, percentage)
    try:
        return _equal(p, r, (percentage, timeout))
    except Exception:  # odd input (deep nesting, 5000-digit literals, ...) is simply not equal
        return False
