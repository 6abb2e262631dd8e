"""Writes the three solutions of a generated problem side by side.

A generator describes its solution once, as reasoning sentences and computations; the
writer renders it three ways:

- ``cot``: every computation written out, ``<reason>: 5 * 4 = 20.``;
- ``mixed``: the same reasoning, each computation handed to a python block
  (``<reason>.`` then ```` ```python\\nprint(5 * 4)\\n``` ```` and its ```` ```output ````);
- ``pot``: one program (written by the generator, with named variables) in a block.

All three end in the final-answer line.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .format import canonical_answer, final_answer_line, python_block

__all__ = ["Problem", "SolutionWriter", "with_imports", "paren", "literal"]


@dataclass
class Problem:
    """A generated problem before it becomes a record (see ``records.make_record``)."""

    question: str
    answer: str
    cot: str
    pot: str
    mixed: str


def with_imports(code: str) -> str:
    """Prepend the imports a snippet uses (each block runs alone, so each imports for itself)."""
    lines = []
    if "Fraction(" in code and "from fractions import Fraction" not in code:
        lines.append("from fractions import Fraction")
    if "math." in code and "import math" not in code:
        lines.append("import math")
    return "\n".join(lines + [code])


class SolutionWriter:
    """Collects reasoning and computations; ``finish`` renders cot, pot and mixed."""

    def __init__(self) -> None:
        self._cot: list[str] = []
        self._mixed: list[str] = []

    def say(self, text: str) -> None:
        """A reasoning sentence that both CoT and mixed contain."""
        self._cot.append(text)
        self._mixed.append(text)

    def say_cot(self, text: str) -> None:
        """A sentence only CoT contains (arithmetic that mixed leaves to a block)."""
        self._cot.append(text)

    def compute(self, reason: str, code: str, value, work: str | list[str] | None = None,
                unit: str = "", lhs: str = "") -> str:
        """One computation. ``reason`` is an imperative phrase ("Add the 5 new apples");
        ``code`` a Python expression (or a program that prints); ``work`` how CoT writes it,
        a chain of equal forms (default: ``code``); ``lhs`` what it computes ("3x").
        CoT gets ``<reason>: <lhs> = <work> = <value> <unit>.``, mixed ``<reason>.`` and a block.
        Returns the canonical text of ``value``."""
        shown = canonical_answer(value) if not isinstance(value, str) else value
        chain = [work] if isinstance(work, str) else list(work or [code])
        equalities = " = ".join(([lhs] if lhs else []) + chain + ([shown] if chain[-1] != shown else []))
        self._cot.append(f"{reason}: {equalities}{' ' + unit if unit else ''}.")
        self.block(reason, code, shown)
        return shown

    def block(self, reason: str, program: str, value) -> str:
        """A computation only mixed shows (CoT wrote its arithmetic with ``say_cot``)."""
        shown = canonical_answer(value) if not isinstance(value, str) else value
        program = program if "print(" in program else f"print({program})"
        self._mixed.append(f"{reason}.\n" + python_block(with_imports(program), shown).rstrip("\n"))
        return shown

    def finish(self, question: str, answer, program: str) -> Problem:
        """Render the solutions; ``program`` is the PoT program, which must print ``answer``."""
        answer_text = answer if isinstance(answer, str) else canonical_answer(answer)
        final = final_answer_line(answer_text)
        cot = "\n".join(self._cot + [final])
        mixed = "\n".join(self._mixed + [final])
        pot = python_block(with_imports(program.strip("\n")), answer_text) + final
        return Problem(question=question, answer=answer_text, cot=cot, pot=pot, mixed=mixed)


def paren(x: int | Fraction) -> str:
    """How a number is written inside arithmetic: negative numbers and fractions in
    parentheses, so ``6 * (80/81) / (2/3)`` reads (and evaluates) as meant."""
    s = str(Fraction(x))
    return f"({s})" if s.startswith("-") or "/" in s else s


def literal(x: int | Fraction) -> str:
    """A Python literal for an exact number: ``3``, ``(-3)``, ``Fraction(-3, 2)``."""
    x = Fraction(x)
    if x.denominator == 1:
        return paren(x)
    return f"Fraction({x.numerator}, {x.denominator})"
