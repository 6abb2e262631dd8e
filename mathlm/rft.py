"""Rejection-sampling fine-tuning (RFT): sample reasoning paths, keep the correct and distinct ones.

    samplers = [ModelSampler(small_a, tok_a, tools=lambda: Session(timeout=2)),
                ModelSampler(small_b, tok_b, tools=lambda: Session(timeout=2))]
    result = rejection_sample(samplers, pool_problems, k=4, temperature=0.7)
    result.records    # SFT records {id, domain, question, answer, response, ...}: train a larger model
    result.samples    # every graded sample, correct and wrong: preference pairs, critique data
    result.stats      # coverage, distinct paths per problem, pass@k, per-sampler counts

Yuan et al. 2023 ("Scaling Relationship on Learning Mathematical Reasoning with Large Language
Models") sample k reasoning paths per training question from SFT models, keep those whose final
answer is correct, and deduplicate them by the list of equations in the path: two paths with the
same equations are one path, whatever their wording. Pooling the samples of several models
(RFT-U13B) gives more distinct paths, and training a larger model on them beats plain SFT.

Signatures (`path_signature`), the rule in full
- Python blocks (```` ```python ... ``` ````, their ```` ```output ```` blocks ignored) are parsed
  with `ast` and canonicalized: comments and docstring statements dropped, every name the program
  binds (assignment/loop/with/comprehension targets, function and class names, parameters, import
  aliases, keyword arguments naming a bound parameter) renamed v0, v1, ... in order of first
  appearance, names it does not bind (print, Fraction, math) kept, integral floats written as ints
  (2.0 -> 2), string constants blanked (print labels and sympy symbol names are cosmetic), then
  `ast.dump`. So the same program with other variable names and comments has the same signature.
  Each block is canonicalized on its own (blocks are self-contained in the data format). A block
  that does not parse keeps its code text, comments and blank lines dropped, whitespace collapsed.
- The prose (the text outside the blocks, `\\boxed{...}` removed) gives the ordered list of its
  equations: maximal runs of numbers, one-letter variables, function calls and operators that
  contain "=", normalized (LaTeX and Unicode operators to + - * / ^, `\\frac{a}{b}` to (a)/(b),
  thousands separators and trailing zeros dropped: "1,200.50" -> "1200.5", whitespace and dollar
  signs removed, unmatched parentheses dropped).
- The signature is the equation list plus the list of code dumps (CoT: equations only; PoT: code
  only; mixed: both). A path with neither keeps its normalized text (lowercase, numbers
  normalized, whitespace collapsed), so answer-only paths merge only when their text is equal.
- Order counts: the same steps in another order is another path (an ordered list, as in Yuan et
  al.; reordering independent steps is cheap diversity that the larger model may still use).

Selection per problem: every sample is graded (`extract_answer` + `math_equal` against the
problem's answer; with `require_final_answer` the path must also state its answer in `\\boxed{}`,
the format SFT trains). The correct ones are visited interleaved across samplers (sample 0 of each
sampler, then sample 1, ...), so no sampler crowds out the others; a path whose signature was seen
already (or equals the gold solution's, with `include_gold`) is dropped; at most
`max_paths_per_problem` sampled paths are kept.
"""
from __future__ import annotations

import ast
import hashlib
import math
import re
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Protocol, Sequence

from .evaluation import pass_at_k
from .grading import boxed_spans, extract_answer, math_equal

__all__ = ["Sampler", "ModelSampler", "RFTResult", "rejection_sample", "path_signature", "path_format",
           "prose_equations", "code_signature"]


# ---------------------------------------------------------------------------------------------
# Samplers


class Sampler(Protocol):
    """Anything with a `sample` method (and optionally a `name`) can be pooled by `rejection_sample`."""

    def sample(self, questions: list[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        """n completion texts (the response only, without the prompt) per question."""
        ...


class ModelSampler:
    """Samples completions of a mathlm Transformer with `mathlm.sampling.generate`.

    The prompt is `tokenizer.encode_prompt(question)` (the one template of SFT), so each model
    is prompted with its own tokenizer and the texts it returns are tokenizer-independent.
    Questions go to `generate` `batch_size` at a time (batch_size * n rows each); the batch of
    questions[s:s + batch_size] draws with seed `seed + s`, so a seed reproduces the samples
    for a fixed batch_size. Within a batch, at most `max_batch_size` sequences are in flight
    (continuous batching; the samples do not depend on it). tools: a sandbox session factory (`lambda: Session(timeout=2)`) to
    run python blocks while sampling, as for PoT and mixed paths; None samples plain text.
    """

    def __init__(self, model, tokenizer, max_new_tokens: int = 256, tools: Callable[[], Any] | None = None,
                 name: str | None = None, *, max_tool_calls: int = 4, top_k: int | None = None,
                 top_p: float | None = None, batch_size: int = 256, progress: bool = False,
                 max_batch_size: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.tools, self.max_tool_calls, self.top_k, self.top_p = tools, max_tool_calls, top_k, top_p
        self.name = name or getattr(getattr(model, "config", None), "name", "") or "model"
        self.batch_size, self.progress, self.max_batch_size = batch_size, progress, max_batch_size

    def sample(self, questions: list[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        from .sampling import generate  # sampling pulls in the model; fake samplers need none of it

        out: list[list[str]] = []
        t0 = time.perf_counter()
        for start in range(0, len(questions), self.batch_size):
            prompts = [self.tokenizer.encode_prompt(q) for q in questions[start:start + self.batch_size]]
            completions = generate(self.model, prompts, self.max_new_tokens, temperature=temperature,
                                   top_k=self.top_k, top_p=self.top_p, n=n, seed=seed + start,
                                   tokenizer=self.tokenizer, tools=self.tools,
                                   max_tool_calls=self.max_tool_calls, progress=self.progress,
                                   max_batch_size=self.max_batch_size)
            out += [[c.text for c in cs] for cs in completions]
            if self.progress:
                done, elapsed = len(out), time.perf_counter() - t0
                print(f"{self.name}: {done}/{len(questions)} questions x {n} samples, {elapsed:.0f}s, "
                      f"eta {elapsed / done * (len(questions) - done):.0f}s", file=sys.stderr, flush=True)
        return out


# ---------------------------------------------------------------------------------------------
# Signatures

_CODE_BLOCK = re.compile(r"```python\n(.*?)\n?```(?:\n```output\n.*?(?:\n```|\Z))?", re.DOTALL)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SYMBOLS = [("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("\\left", ""), ("\\right", ""), ("\\$", "$"),
            ("×", "*"), ("·", "*"), ("⋅", "*"), ("÷", "/"), ("−", "-"), ("–", "-"), ("**", "^"), ("{", "("),
            ("}", ")")]
# One token of prose; a run of num/func/var/op tokens (spaces and $ skipped) is a candidate equation.
_TOKEN = re.compile(r"(?P<num>\d+(?:\.\d+)?)|(?P<func>[A-Za-z_]\w*(?=\())|(?P<var>[A-Za-z](?:_?\d+)?(?![\w]))"
                    r"|(?P<word>[A-Za-z_]\w*)|(?P<op>[-+*/^%=()\[\],!])|(?P<skip>[ \t$]+)|(?P<other>.)", re.DOTALL)
_EDGE_OPS = "=,+*/^"  # dropped from the ends of a run ("-" only from its end: -3 is a number)


def _normalize_number(s: str) -> str:
    """"007" -> "7", "2.50" -> "2.5", "3.0" -> "3" (string operations: no int() of 5000 digits)."""
    whole, _, frac = s.partition(".")
    frac = frac.rstrip("0")
    return (whole.lstrip("0") or "0") + ("." + frac if frac else "")


def _drop_boxed(text: str) -> str:
    """The text without its \\boxed{...} groups (the final answer is the same in every correct path)."""
    kept, pos = [], 0
    for span in boxed_spans(text):
        if span.start >= pos:  # a box nested in one already dropped is skipped
            kept.append(text[pos:span.start])
            pos = span.end
    return "".join(kept) + text[pos:]


def _split_unmatched(tokens: list[str]) -> list[list[str]]:
    """Cut a run at the parentheses/brackets without a partner inside it: "f(2) = 4 (so 2 = 2)"
    gives "f(2) = 4" and "so 2 = 2", never a merged "4 2"."""
    pairs, stack, cuts = {")": "(", "]": "["}, [], set()
    for i, t in enumerate(tokens):
        if t in "([":
            stack.append(i)
        elif t in ")]":
            if stack and tokens[stack[-1]] == pairs[t]:
                stack.pop()
            else:
                cuts.add(i)
    cuts.update(stack)
    segments, current = [], []
    for i, t in enumerate(tokens):
        if i in cuts:
            segments.append(current)
            current = []
        else:
            current.append(t)
    return segments + [current]


def _equation(tokens: list[str]) -> str | None:
    while tokens and tokens[0] in _EDGE_OPS:
        tokens = tokens[1:]
    while tokens and tokens[-1] in _EDGE_OPS + "-(":
        tokens = tokens[:-1]
    if "=" not in tokens:
        return None
    first, last = tokens.index("="), len(tokens) - 1 - tokens[::-1].index("=")
    has_operand = lambda part: any(t[0].isalnum() or t[0] == "_" for t in part)  # noqa: E731
    if not (has_operand(tokens[:first]) and has_operand(tokens[last + 1:])):
        return None
    # "4x" and "4 x" are one token list; a space only between two operands ("2 x 3" stays apart).
    out = tokens[0]
    for prev, t in zip(tokens, tokens[1:]):
        out += (" " if (prev[-1].isalnum() or prev[-1] == "_") and (t[0].isalnum() or t[0] == "_") else "") + t
    return out


def _normalize_math_text(text: str) -> str:
    while True:
        new = _SQRT.sub(r"sqrt(\1)", _FRAC.sub(r"(\1)/(\2)", text))
        if new == text:
            break
        text = new
    for src, dst in _SYMBOLS:
        text = text.replace(src, dst)
    return _THOUSANDS.sub("", text)


def _run_equations(run: list[str]) -> list[str]:
    if "=" not in run:
        return []
    return [eq for segment in _split_unmatched(run) if (eq := _equation(segment)) is not None]


def prose_equations(text: str) -> list[str]:
    """The ordered, normalized equations of a prose text (see the module docstring).

    >>> prose_equations("Each box holds 1,200 pens, so 3 boxes hold 3 × 1,200 = 3,600 pens.")
    ['3*1200=3600']
    """
    text = _normalize_math_text(_drop_boxed(text))
    equations, run = [], []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "skip":
            continue
        if kind in ("num", "func", "var", "op"):
            run.append(_normalize_number(m.group()) if kind == "num" else m.group())
            continue
        equations += _run_equations(run)  # a word or punctuation ends the run
        run = []
    return equations + _run_equations(run)


class _Canonicalizer(ast.NodeTransformer):
    """Renames the names a program binds to v0, v1, ... in order of first appearance; normalizes
    constants; drops docstring statements."""

    def __init__(self, bound: set[str]):
        self.bound, self.names = bound, {}

    def _rename(self, name: str | None) -> str | None:
        if name is None or name not in self.bound:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._rename(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg, node.annotation = self._rename(node.arg), None
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.keyword:
        node.arg = self._rename(node.arg)
        return self.generic_visit(node)

    def visit_alias(self, node: ast.alias) -> ast.alias:
        node.asname = self._rename(node.asname)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        node.name = self._rename(node.name)
        return self.generic_visit(node)

    def _visit_named(self, node):
        node.name = self._rename(node.name)
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_named

    def visit_Global(self, node):
        node.names = [self._rename(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_Expr(self, node: ast.Expr):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None  # a docstring or a bare string: a comment in disguise
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        v = node.value
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            node.value = int(v)
        elif isinstance(v, (str, bytes)):
            node.value = type(v)()
        node.kind = None
        return node


def _bound_names(tree: ast.AST) -> set[str]:
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias) and node.asname:
            bound.add(node.asname)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def code_signature(code: str) -> str:
    """The canonical `ast.dump` of one python block (see the module docstring)."""
    try:
        tree = ast.parse(code)
        tree = _Canonicalizer(_bound_names(tree)).visit(tree)
        return ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # A sampled block may be cut off or garbled, or nest deeper than the recursive visitors go
        # ("1+1+...+1" a few thousand times): keep its text.
        lines = (re.sub(r"\s+", " ", line.split("#", 1)[0]).strip() for line in code.splitlines())
        return "unparsed: " + " / ".join(line for line in lines if line)


def _split_code(text: str) -> tuple[list[str], str]:
    """(python blocks, the prose around them)."""
    return [m.group(1) for m in _CODE_BLOCK.finditer(text)], _CODE_BLOCK.sub("\n", text)


def path_format(text: str) -> str:
    """"cot" (no python block), "pot" (blocks and no prose besides the final answer) or "mixed"."""
    blocks, prose = _split_code(text)
    if not blocks:
        return "cot"
    rest = re.sub(r"the answer is\s*\.?", "", _drop_boxed(prose), flags=re.IGNORECASE)
    return "pot" if not rest.strip() else "mixed"


@lru_cache(maxsize=1 << 16)  # samples repeat: at T=0.7 many paths of a problem are the same text
def path_signature(text: str) -> str:
    """Two reasoning paths with equal signatures are the same path (rule: the module docstring)."""
    blocks, prose = _split_code(text)
    parts = [f"code: {code_signature(code)}" for code in blocks]
    equations = prose_equations(prose)
    if equations:
        parts.insert(0, "equations: " + " ; ".join(equations))
    if not parts:
        words = _NUMBER.sub(lambda m: _normalize_number(m.group()), _normalize_math_text(text).lower())
        parts.append("text: " + " ".join(words.split()))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Rejection sampling


@dataclass
class RFTResult:
    """What `rejection_sample` returns.

    records: the selected paths as SFT records, problem by problem: the problem's `id`, `domain`,
        `difficulty` (when the problem has one), `question`, `answer`, plus `response` (the path:
        `encode_sft_records(records, tok, max_len)` reads this key), `format` (cot/pot/mixed),
        `sampler` (its name, "gold" for a gold solution), `source` ("rft" or "gold"),
        `signature` (16 hex digits of the sha1 of `path_signature`) and `correct_fraction`.
    samples: every graded sample, in problem order, then sampler order, then sample order: the
        problem fields, `response`, `sampler`, `sample_index`, `predicted` (the extracted answer
        or None), `correct`, `format`, `signature`, `kept` (selected into `records`) and
        `correct_fraction` (of the problem, over all samplers). `build_preference_pairs` and the
        critique model's training data start from here.
    stats: see `rejection_sample`.
    """

    records: list[dict]
    samples: list[dict]
    stats: dict = field(default_factory=dict)


def _signature_id(text: str) -> str:
    return hashlib.sha1(path_signature(text).encode()).hexdigest()[:16]


def _problem_fields(problem: dict, index: int) -> dict:
    if not isinstance(problem, dict):
        raise ValueError(f"problem {index} must be a dict with 'question' and 'answer', got {type(problem).__name__}")
    for key in ("question", "answer"):
        if not isinstance(problem.get(key), str) or not problem[key].strip():
            raise ValueError(f"problem {index} ({problem.get('id', 'no id')!r}): field {key!r} must be a "
                             f"non-empty string, got {problem.get(key)!r:.60}")
    fields = {"id": str(problem.get("id", f"problem-{index}")), "domain": problem.get("domain", "all")}
    if "difficulty" in problem:
        fields["difficulty"] = problem["difficulty"]
    fields.update(question=problem["question"], answer=problem["answer"])
    return fields


def _sampler_names(samplers: Sequence[Any]) -> list[str]:
    names = []
    for i, s in enumerate(samplers):
        if not callable(getattr(s, "sample", None)):
            raise ValueError(f"sampler {i} ({type(s).__name__}) has no sample(questions, n, temperature, seed) method")
        names.append(str(getattr(s, "name", None) or f"sampler{i}"))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"sampler names must be unique (records name their sampler), got {names}; "
                         f"repeated: {repeated}: pass name= to each")
    return names


def _check_texts(texts: Any, name: str, n_questions: int, k: int) -> None:
    if not isinstance(texts, list) or len(texts) != n_questions:
        got = len(texts) if isinstance(texts, list) else type(texts).__name__
        raise ValueError(f"sampler {name!r} returned {got} lists for {n_questions} questions")
    for i, row in enumerate(texts):
        if not isinstance(row, list) or len(row) != k or not all(isinstance(t, str) for t in row):
            raise ValueError(f"sampler {name!r} returned {row!r:.80} for question {i}: expected a list of "
                             f"k={k} strings")


def rejection_sample(samplers: Sampler | Sequence[Sampler], problems: Sequence[dict], k: int,
                     temperature: float = 0.7, max_paths_per_problem: int | None = 4, seed: int = 0,
                     include_gold: bool = False, gold_key: str = "mixed", require_final_answer: bool = True,
                     progress: bool = True) -> RFTResult:
    """Draw k paths per problem from each sampler, grade them, keep the correct and distinct ones.

    problems: dicts with `question` and `answer` (records of mathlm.data, or answer-only pool
        problems); `id`, `domain` and `difficulty` are copied when present.
    samplers: one or several objects with `sample(questions, n, temperature, seed)` (ModelSampler,
        or any scripted sampler); sampler i draws with seed `seed + 1_000_003 * i`.
    max_paths_per_problem: the most sampled paths kept per problem (None: no cap).
    include_gold: also emit each problem's gold solution `problem[gold_key]` as a record (source
        "gold"), first, and count its signature as seen, so a sample equal to it is a duplicate.
        Problems whose gold field is "" (no solution of that kind) get none; gold paths are not
        counted in the distinct-path statistics and not capped.
    require_final_answer: a sample is correct only if it also states its answer in \\boxed{...}
        (what SFT trains the model to write); False grades exactly as mathlm.evaluation does.

    stats (JSON-ready):
        problems, samplers, k, temperature, samples (all of them), correct (count),
        correct_fraction: correct / samples;
        coverage: fraction of problems with >= 1 correct sample (equivalently with a kept path);
        distinct_paths: sampled paths kept (after signature dedup and the cap);
        distinct_paths_per_problem: distinct_paths / problems (over ALL problems);
        distinct_paths_per_covered_problem: distinct_paths / covered problems;
        duplicates_dropped: correct samples dropped for a seen signature; capped: distinct correct
        samples dropped by the cap; gold_paths: gold records added;
        pass@1, pass@k, pass@{n} with n = k * number of samplers: the mean over problems of the
        unbiased estimator (mathlm.evaluation.pass_at_k) on the pooled samples;
        per_sampler: {name: samples, correct, correct_fraction, coverage, pass@1, pass@k,
        distinct_correct (distinct signatures among its correct samples, summed over problems),
        kept (its paths in the selection), wall_s};
        correct_fraction_per_problem: the per-problem fraction of correct samples (hardness: low
        is hard), aligned with `problems`; wall_s.
    """
    samplers = [samplers] if callable(getattr(samplers, "sample", None)) else list(samplers)
    names, fields = _checked_inputs(samplers, problems, k, max_paths_per_problem, include_gold, gold_key)
    t_start = time.perf_counter()
    graded, walls = _sample_and_grade(samplers, names, fields, k, temperature, seed, require_final_answer, progress)
    selection = _Selection()
    for p, f in enumerate(fields):
        gold = problems[p].get(gold_key) if include_gold else ""
        selection.select(f, [graded[s][p] for s in range(len(samplers))], k, gold, max_paths_per_problem)
    stats = _rejection_stats(graded, names, walls, selection, k, temperature)
    stats["wall_s"] = time.perf_counter() - t_start
    if progress:
        print(f"rejection_sample: {stats['problems']} problems, coverage {stats['coverage']:.1%}, "
              f"{stats['distinct_paths_per_problem']:.2f} distinct paths per problem "
              f"({stats['distinct_paths_per_covered_problem']:.2f} per covered), {selection.duplicates} duplicates "
              f"dropped, {selection.capped} over the cap", file=sys.stderr, flush=True)
    return RFTResult(selection.records, selection.samples, stats)


def _checked_inputs(samplers: list, problems: Sequence[dict], k: int, max_paths_per_problem: int | None,
                    include_gold: bool, gold_key: str) -> tuple[list[str], list[dict]]:
    """The samplers' names and the problems' record fields, or a ValueError naming what is wrong."""
    if not samplers:
        raise ValueError("rejection_sample needs at least one sampler")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k ({k!r}) must be an integer >= 1")
    if max_paths_per_problem is not None and max_paths_per_problem < 1:
        raise ValueError(f"max_paths_per_problem ({max_paths_per_problem}) must be None or >= 1")
    if not problems:
        raise ValueError("rejection_sample needs at least one problem")
    names = _sampler_names(samplers)
    fields = [_problem_fields(p, i) for i, p in enumerate(problems)]
    if include_gold:
        for i, p in enumerate(problems):
            if not isinstance(p.get(gold_key), str):
                raise ValueError(f"include_gold: problem {i} ({fields[i]['id']!r}) has no string field "
                                 f"{gold_key!r} (gold_key); it has {sorted(p)}")
    return names, fields


def _sample_and_grade(samplers: list, names: list[str], fields: list[dict], k: int, temperature: float, seed: int,
                      require_final_answer: bool, progress: bool) -> tuple[list[list[list[dict]]], list[float]]:
    """Sampling and grading, sampler by sampler: graded[s][p] is the list of problem p's k sample dicts
    from sampler s; walls[s] its seconds. Sampler s draws with seed `seed + 1_000_003 * s`."""
    questions = [f["question"] for f in fields]
    graded, walls = [], []
    for s, (sampler, name) in enumerate(zip(samplers, names)):
        t0 = time.perf_counter()
        texts = sampler.sample(questions, k, temperature, seed + 1_000_003 * s)
        _check_texts(texts, name, len(questions), k)
        rows = [[_graded_sample(f, text, name, j, require_final_answer) for j, text in enumerate(row)]
                for f, row in zip(fields, texts)]
        graded.append(rows)
        walls.append(time.perf_counter() - t0)
        if progress:
            n_correct = sum(x["correct"] for r in rows for x in r)
            print(f"rejection_sample: {name}: {len(questions) * k} samples in {walls[-1]:.1f}s, "
                  f"{n_correct / (len(questions) * k):.1%} correct", file=sys.stderr, flush=True)
    return graded, walls


def _graded_sample(fields: dict, text: str, sampler: str, index: int, require_final_answer: bool) -> dict:
    predicted = extract_answer(text)
    correct = predicted is not None and math_equal(predicted, fields["answer"])
    if require_final_answer and not boxed_spans(text):
        correct = False
    return {**fields, "response": text, "sampler": sampler, "sample_index": index, "predicted": predicted,
            "correct": bool(correct)}


@dataclass
class _Selection:
    """Distinct-path selection, problem by problem: the kept records, every sample, and the counts."""

    records: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)  # correct fraction per problem (hardness)
    duplicates: int = 0  # correct samples dropped for a seen signature
    capped: int = 0      # distinct correct samples dropped by the cap
    gold_paths: int = 0

    def select(self, fields: dict, per_sampler: list[list[dict]], k: int, gold: str, cap: int | None) -> None:
        """Interleave the samplers (sample 0 of each, then sample 1, ...), drop seen signatures
        (the gold solution's first), keep at most `cap` sampled paths."""
        samples = [x for rows in per_sampler for x in rows]
        fraction = sum(x["correct"] for x in samples) / len(samples)
        self.fractions.append(fraction)
        for x in samples:
            x.update(format=path_format(x["response"]), signature=_signature_id(x["response"]), kept=False,
                     correct_fraction=fraction)
        seen = set()
        if gold:
            sig = _signature_id(gold)
            seen.add(sig)
            self.records.append({**fields, "response": gold, "format": path_format(gold), "sampler": "gold",
                                 "source": "gold", "signature": sig, "correct_fraction": fraction})
            self.gold_paths += 1
        kept = 0
        for x in (rows[j] for j in range(k) for rows in per_sampler):
            if not x["correct"]:
                continue
            if x["signature"] in seen:
                self.duplicates += 1
                continue
            seen.add(x["signature"])
            if cap is not None and kept >= cap:
                self.capped += 1
                continue
            x["kept"] = True
            kept += 1
            self.records.append({**fields, "response": x["response"], "format": x["format"], "sampler": x["sampler"],
                                 "source": "rft", "signature": x["signature"], "correct_fraction": fraction})
        self.samples += samples


def _pass_rates(rows_per_problem: list[list[dict]], n: int, ks: Sequence[int]) -> dict:
    """Mean over problems of the unbiased pass@k estimator, for each k in `ks`."""
    counts = [sum(x["correct"] for x in rows) for rows in rows_per_problem]
    return {f"pass@{kk}": sum(pass_at_k(n, c, kk) for c in counts) / len(counts) for kk in sorted(set(ks))}


def _rejection_stats(graded: list[list[list[dict]]], names: list[str], walls: list[float], selection: _Selection,
                     k: int, temperature: float) -> dict:
    """The statistics `rejection_sample` documents (all but wall_s)."""
    P, n_pooled = len(graded[0]), k * len(names)
    pooled = [[x for rows in graded for x in rows[p]] for p in range(P)]
    covered = sum(any(x["correct"] for x in rows) for rows in pooled)
    all_samples = selection.samples
    distinct = sum(x["kept"] for x in all_samples)
    n_correct = sum(x["correct"] for x in all_samples)
    per_sampler = {}
    for name, rows, wall in zip(names, graded, walls):
        correct = sum(x["correct"] for r in rows for x in r)
        per_sampler[name] = {
            "samples": P * k, "correct": correct, "correct_fraction": correct / (P * k),
            "coverage": sum(any(x["correct"] for x in r) for r in rows) / P,
            **_pass_rates(rows, k, (1, k)),
            "distinct_correct": sum(len({x["signature"] for x in r if x["correct"]}) for r in rows),
            "kept": sum(x["kept"] for r in rows for x in r), "wall_s": wall,
        }
    return {
        "problems": P, "samplers": names, "k": k, "temperature": temperature, "samples": len(all_samples),
        "correct": n_correct, "correct_fraction": n_correct / len(all_samples), "coverage": covered / P,
        "distinct_paths": distinct, "distinct_paths_per_problem": distinct / P,
        "distinct_paths_per_covered_problem": distinct / covered if covered else 0.0,
        "duplicates_dropped": selection.duplicates, "capped": selection.capped, "gold_paths": selection.gold_paths,
        **_pass_rates(pooled, n_pooled, (1, k, n_pooled)),
        "per_sampler": per_sampler, "correct_fraction_per_problem": selection.fractions,
    }
