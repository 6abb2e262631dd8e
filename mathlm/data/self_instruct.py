"""Self-instruct for math (Wang et al. 2023, adapted): a model writes new problems, PoT
programs solve them several times, and a problem is kept when its programs run and agree
(self-consistency) and it is not a near-duplicate of anything in the pool (ROUGE-L).

``generate_fn`` is any text-to-text callable (``prompt -> completion``); the recipes plug a
mathlm model's sampler in, tests plug in a scripted function. It should sample (temperature
> 0) so that the ``n_solutions`` programs are independent attempts. A callable that also has a
``batch(prompts) -> completions`` method is given all prompts of a round at once (a model then
samples them in one batched call).
"""
from __future__ import annotations

import random
import sys
from collections import Counter
from typing import Callable, Sequence

from .format import CODE_OPEN, code_block, final_answer_line, parse_blocks, python_block
from .prefix_index import NearDuplicateIndex
from .records import make_record
from .solution import Problem

__all__ = ["self_instruct", "task_prompt", "solve_prompt", "extract_program"]

TASK_INSTRUCTION = "Write a new math problem that is different from the examples. It must have one numeric answer."
SOLVE_INSTRUCTION = "Write a Python program that prints the answer."


def task_prompt(examples: Sequence[str]) -> str:
    """The prompt asking for a new problem after ``examples`` (questions)."""
    lines = [TASK_INSTRUCTION]
    lines += [f"Problem: {q.strip()}" for q in examples]
    return "\n".join(lines) + "\nProblem:"


def solve_prompt(question: str, examples: Sequence[tuple[str, str]]) -> str:
    """Few-shot PoT prompt: (question, program) examples, then ``question`` and an open block."""
    parts = [SOLVE_INSTRUCTION]
    parts += [f"Question: {q.strip()}\n{code_block(code)}" for q, code in examples]
    parts.append(f"Question: {question.strip()}\n{CODE_OPEN}")
    return "\n\n".join(parts)


def extract_program(completion: str) -> str | None:
    """The program in a completion of ``solve_prompt``: up to the closing fence, or the
    first full python block when the model wrote one."""
    if CODE_OPEN in completion:
        blocks = parse_blocks(completion)
        return blocks[0][0] if blocks else None
    code = completion.split("```", 1)[0].strip("\n")
    return code or None


def _complete_all(fn: Callable[[str], str], prompts: list[str]) -> list[str]:
    batch = getattr(fn, "batch", None)
    return list(batch(prompts)) if callable(batch) else [fn(p) for p in prompts]


def _first_problem(completion: str) -> str | None:
    text = completion.split("\nProblem:", 1)[0].strip()
    text = text.split("\n\n", 1)[0].strip()
    return text if len(text.split()) >= 3 and len(text) <= 1000 else None


def _agreed_answer(outputs: list[str | None], n: int, min_agreement: float) -> tuple[str, int] | None:
    """The answer most programs printed, when at least ``min_agreement * n`` printed it."""
    from mathlm.grading import math_equal

    groups: list[list] = []  # [answer, count, first index]
    for i, out in enumerate(outputs):
        if not out:
            continue
        for g in groups:
            if math_equal(out, g[0]):
                g[1] += 1
                break
        else:
            groups.append([out, 1, i])
    if not groups:
        return None
    best = max(groups, key=lambda g: g[1])
    return (best[0], best[2]) if best[1] >= min_agreement * n - 1e-9 else None


def self_instruct(seed_tasks: Sequence[dict | str], generate_fn: Callable[[str], str], rounds: int = 1,
                  per_round: int = 10, k: int = 3, n_solutions: int = 4, min_agreement: float = 1.0,
                  threshold: float = 0.7, seed: int = 0, solve_fn: Callable[[str], str] | None = None,
                  domain: str | None = None, difficulty: int = 2, timeout: float = 5.0,
                  workers: int | None = None, progress: bool = False) -> list[dict]:
    """New records grown from ``seed_tasks`` (records, or plain question strings).

    Each round asks ``generate_fn`` ``per_round`` times for a problem, prompting with ``k``
    tasks sampled from the pool (seeds plus what earlier rounds kept). A problem that is a
    near-duplicate of the pool (ROUGE-L >= ``threshold``) is dropped before solving; the
    rest are solved ``n_solutions`` times with ``solve_fn`` (default ``generate_fn``) on a
    few-shot PoT prompt, and kept when at least ``min_agreement`` of the programs run and
    print equal answers (``math_equal``). Kept records carry ``pot`` only (``cot`` and
    ``mixed`` are ""), ``source`` "self_instruct", and the majority ``domain`` of their prompt
    examples unless ``domain`` is given.
    """
    from mathlm.sandbox import run_many

    if not seed_tasks:
        raise ValueError("seed_tasks must not be empty")
    if not 0.0 < min_agreement <= 1.0:
        raise ValueError(f"min_agreement ({min_agreement}) must be in (0, 1]")
    solve_fn = solve_fn or generate_fn
    rng = random.Random(seed)
    pool = [t if isinstance(t, dict) else {"question": t} for t in seed_tasks]
    index = NearDuplicateIndex("rougeL", threshold)
    index.frequencies = index.count_elements(t["question"] for t in pool)
    for t in pool:
        index.add(t["question"])
    kept: list[dict] = []
    for rnd in range(rounds):
        stats: Counter = Counter()
        candidates = []  # (question, examples used)
        drafts = [rng.sample(pool, min(k, len(pool))) for _ in range(per_round)]
        completions = _complete_all(generate_fn, [task_prompt([e["question"] for e in ex]) for ex in drafts])
        for examples, completion in zip(drafts, completions):
            question = _first_problem(completion)
            if question is None:
                stats["unusable"] += 1
            elif index.find(question) is not None or any(question == q for q, _ in candidates):
                stats["near-duplicate"] += 1
            else:
                candidates.append((question, examples))
        prompts = []
        for question, examples in candidates:
            shots = [(e["question"], parse_blocks(e["pot"])[0][0]) for e in examples if e.get("pot") and parse_blocks(e["pot"])]
            prompts += [solve_prompt(question, shots)] * n_solutions
        solved = [extract_program(c) for c in _complete_all(solve_fn, prompts)]
        programs: list[list[str | None]] = [solved[i * n_solutions:(i + 1) * n_solutions] for i in range(len(candidates))]
        flat = [p for ps in programs for p in ps if p]
        results = iter(run_many(flat, timeout=timeout, workers=workers))
        for (question, examples), ps in zip(candidates, programs):
            outputs = []
            for p in ps:
                res = next(results) if p else None
                outputs.append(res.stdout.strip() if res is not None and res.ok else None)
            agreed = _agreed_answer(outputs, n_solutions, min_agreement)
            if agreed is None:
                stats["disagreed or failed"] += 1
                continue
            if not index.add_if_new(question):  # a near-duplicate kept earlier this round
                stats["near-duplicate"] += 1
                continue
            answer, first = agreed
            dom = domain or Counter(e.get("domain", "self_instruct") for e in examples).most_common(1)[0][0]
            problem = Problem(question=question, answer=answer, cot="", mixed="",
                              pot=python_block(ps[first], answer) + final_answer_line(answer))
            record = make_record(problem, dom, difficulty, source="self_instruct")
            kept.append(record)
            pool.append(record)
            stats["kept"] += 1
        if progress:
            print(f"[self-instruct] round {rnd + 1}/{rounds}: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())),
                  file=sys.stderr)
    return kept
