"""The text format of solutions: final-answer line, python/output blocks, canonical answers.

A mixed solution is reasoning sentences, then one or more blocks

    ```python
    <code>
    ```
    ```output
    <stdout>
    ```

then the final-answer line ``The answer is \\boxed{<answer>}.``. A PoT solution is the same
with one block and no reasoning. Every block is self-contained: it runs alone in a fresh
interpreter, so a later block restates the numbers it needs (copied from earlier outputs).
The sampling engine stops a sequence when it emits ``CODE_CLOSE`` after an open
``CODE_OPEN``, runs the code, and appends ``output_block(stdout)``.
"""
from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "FINAL_ANSWER_PREFIX", "FINAL_ANSWER_TEMPLATE", "CODE_OPEN", "CODE_CLOSE", "OUTPUT_OPEN",
    "OUTPUT_CLOSE", "final_answer_line", "code_block", "output_block", "python_block",
    "parse_blocks", "canonical_answer", "format_number",
]

FINAL_ANSWER_PREFIX = "The answer is "
FINAL_ANSWER_TEMPLATE = "The answer is \\boxed{{{}}}."
CODE_OPEN = "```python\n"
CODE_CLOSE = "\n```"  # the stop string: after it the engine runs the code
OUTPUT_OPEN = "\n```output\n"
OUTPUT_CLOSE = "\n```\n"


def final_answer_line(answer: str) -> str:
    """``The answer is \\boxed{<answer>}.``: the last line of every solution."""
    return FINAL_ANSWER_TEMPLATE.format(answer)


def code_block(code: str) -> str:
    """What the model writes: ```` ```python\\n<code>\\n``` ````."""
    return CODE_OPEN + code.strip("\n") + CODE_CLOSE


def output_block(stdout: str) -> str:
    """What the engine appends after a code block: ``\\n```output\\n<stdout>\\n```\\n``.
    Trailing newlines of stdout are dropped (``print`` always writes one)."""
    return OUTPUT_OPEN + stdout.rstrip("\n") + OUTPUT_CLOSE


def python_block(code: str, stdout: str) -> str:
    """A code block and its output block, ending in a newline."""
    return code_block(code) + output_block(stdout)


_BLOCK = re.compile(r"```python\n(.*?)\n```(?:\n```output\n(.*?)\n```)?", re.DOTALL)


def parse_blocks(text: str) -> list[tuple[str, str | None]]:
    """The (code, recorded output or None) pairs of a mixed or PoT solution, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def format_number(x: int | Fraction) -> str:
    """``3``, ``-3/4``: what ``print`` writes for an int or a Fraction."""
    return str(Fraction(x))


def canonical_answer(value) -> str:
    """The canonical answer string: numbers as ``format_number``, tuples as ``(a, b)``,
    vectors and matrices as nested lists ``[[1, -1/2], [0, 1]]``."""
    if isinstance(value, tuple):
        return "(" + ", ".join(canonical_answer(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(canonical_answer(v) for v in value) + "]"
    if isinstance(value, (int, Fraction)) and not isinstance(value, bool):
        return format_number(value)
    raise TypeError(f"answer value {value!r} must be an int, Fraction, tuple or list")
