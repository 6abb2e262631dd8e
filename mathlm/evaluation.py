"""Evaluation: accuracy, pass@k and maj@k (overall and by domain) and head-to-head win rates.

Grading is `mathlm.grading`: the final answer is extracted from each completion and compared with
the reference by `math_equal`. The metric functions take plain Python data (completion texts per
problem), so they work with any sampler; `evaluate_model` plugs in mathlm's own `generate`.

- pass@k: the unbiased estimator of Chen et al. 2021 (Codex, eq. 1) from n >= k samples with c correct:
  1 - C(n - c, k) / C(n, k).
- maj@k: majority vote (self-consistency, Wang et al. 2023) over the first k samples' extracted answers;
  answers are clustered with `math_equal`, ties go to the answer seen first.
- win rate: A against B on the same problems, judged by correctness first; when both are right or
  both wrong, an optional judge (the critique model's score) decides, else it is a tie.
- benchmark reports (`summarize_samples`, what recipes/eval.py writes): pass@1 as the mean over all
  n samples (the unbiased estimator at k=1, less noisy than the first sample alone), pass@k for
  k = 1, 2, 4, ... up to n, and maj@n, overall, by domain (MATH's subject, "gsm8k", ...) and by level.
"""
from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from typing import Callable, Sequence

from .grading import extract_answer, math_equal


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, eq. 1)."""
    if not 0 <= c <= n:
        raise ValueError(f"correct count c ({c}) must be within [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k ({k}) must be within [1, n={n}]")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer, clustering equal answers with `math_equal`; None if there is none."""
    clusters: list[list[str]] = []
    for a in answers:
        if a is None:
            continue
        for cluster in clusters:
            if math_equal(a, cluster[0]):
                cluster.append(a)
                break
        else:
            clusters.append([a])
    if not clusters:
        return None
    return max(clusters, key=len)[0]  # max keeps the first of equal lengths


def grade_completions(problems: Sequence[dict], completions: Sequence[Sequence[str]]) -> list[dict]:
    """Per problem: the extracted answers and whether each is correct."""
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completion lists")
    graded = []
    for prob, texts in zip(problems, completions):
        answers = [extract_answer(t) for t in texts]
        graded.append({
            "id": prob.get("id"),
            "domain": prob.get("domain", "all"),
            "answers": answers,
            "correct": [math_equal(a, prob["answer"]) for a in answers],
        })
    return graded


def summarize(problems: Sequence[dict], graded: Sequence[dict], ks: Sequence[int] = (1,)) -> dict:
    """accuracy (first sample), pass@k and maj@k for each k, overall and by domain."""

    def metrics(rows: list[tuple[dict, dict]]) -> dict:
        out = {"n": len(rows), "accuracy": sum(g["correct"][0] for _, g in rows) / max(len(rows), 1)}
        for k in ks:
            if k == 1:
                continue
            out[f"pass@{k}"] = sum(pass_at_k(len(g["correct"]), sum(g["correct"]), k) for _, g in rows) / max(len(rows), 1)
            out[f"maj@{k}"] = sum(math_equal(majority_answer(g["answers"][:k]), p["answer"]) for p, g in rows) / max(len(rows), 1)
        return out

    for k in ks:
        short = [g for g in graded if len(g["correct"]) < k]
        if short:
            raise ValueError(f"k ({k}) exceeds the samples of problem {short[0]['id']!r} ({len(short[0]['correct'])})")
    rows = list(zip(problems, graded))
    by_domain: dict[str, list] = defaultdict(list)
    for p, g in rows:
        by_domain[g["domain"]].append((p, g))
    result = metrics(rows)
    result["by_domain"] = {d: metrics(r) for d, r in sorted(by_domain.items())}
    return result


def pass_ks(n: int) -> list[int]:
    """The k reported for n samples: 1, 2, 4, ... below n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i < n]
    return ks + [n]


def sample_metrics(problems: Sequence[dict], graded: Sequence[dict]) -> dict:
    """pass@1 (mean over the n samples), pass@k for `pass_ks(n)` (unbiased estimator) and maj@n of
    problems that each have the same number n of graded samples."""
    if not graded:
        return {"problems": 0}
    n = len(graded[0]["correct"])
    out: dict = {"problems": len(graded), "n": n}
    for k in pass_ks(n):
        out[f"pass@{k}"] = sum(pass_at_k(n, sum(g["correct"]), k) for g in graded) / len(graded)
    out[f"maj@{n}"] = sum(bool(math_equal(majority_answer(g["answers"]), p["answer"]))
                          for p, g in zip(problems, graded)) / len(graded)
    return out


def summarize_samples(problems: Sequence[dict], graded: Sequence[dict]) -> dict:
    """The benchmark report: `sample_metrics` overall, `by_domain` and `by_level` (problems without
    a level are left out of by_level)."""
    if len(problems) != len(graded):
        raise ValueError(f"{len(problems)} problems but {len(graded)} graded lists")
    counts = {len(g["correct"]) for g in graded}
    if len(counts) > 1:
        raise ValueError(f"every problem needs the same number of samples, got {sorted(counts)}")
    groups: dict[str, dict[str, list]] = {"by_domain": defaultdict(list), "by_level": defaultdict(list)}
    for p, g in zip(problems, graded):
        groups["by_domain"][str(p.get("domain", "all"))].append((p, g))
        if p.get("level") is not None:
            groups["by_level"][str(p["level"])].append((p, g))
    out = sample_metrics(problems, graded)
    for name, by in groups.items():
        out[name] = {key: sample_metrics([p for p, _ in rows], [g for _, g in rows]) for key, rows in sorted(by.items())}
    return out


def win_rate(correct_a: Sequence[bool], correct_b: Sequence[bool],
             judge: Callable[[int], float] | None = None) -> dict:
    """A against B, problem by problem: correctness first, then `judge(i)` (> 0: A better, < 0: B better).

    Returns the fractions of wins, ties and losses of A, `win_rate` (= wins / n, the talk's figure)
    and `net` (wins - losses) / n.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"A has {len(correct_a)} results but B has {len(correct_b)}")
    wins = ties = losses = 0
    for i, (a, b) in enumerate(zip(correct_a, correct_b)):
        if a != b:
            wins, losses = (wins + 1, losses) if a else (wins, losses + 1)
            continue
        s = judge(i) if judge is not None else 0.0
        if s > 0:
            wins += 1
        elif s < 0:
            losses += 1
        else:
            ties += 1
    n = max(len(correct_a), 1)
    return {"n": len(correct_a), "win": wins / n, "tie": ties / n, "loss": losses / n,
            "win_rate": wins / n, "net": (wins - losses) / n}


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def sample_completions(model, tokenizer, problems: Sequence[dict], *, max_new_tokens: int = 320, n: int = 1,
                       temperature: float = 0.0, top_p: float | None = None, tools: bool = True,
                       tool_timeout: float = 2.0, batch_size: int = 256, seed: int = 0,
                       progress: bool = False, max_batch_size: int | None = None) -> list[list]:
    """`n` Completions per problem from mathlm's engine, prompted with `tokenizer.encode_prompt`
    (plain or chat template) and stopped on `tokenizer`'s stop ids; python blocks run in the sandbox
    when `tools`. `progress` prints a line per batch of problems (done, rate, tokens/s, ETA) to stderr."""
    from .sampling import generate  # the metrics above need no torch; this does
    from .sandbox import Session

    factory = (lambda: Session(timeout=tool_timeout)) if tools else None
    was_training = model.training
    model.eval()
    out: list[list] = []
    start_time, made = time.monotonic(), 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        prompts = [tokenizer.encode_prompt(p["question"]) for p in chunk]
        out += generate(model, prompts, max_new_tokens, temperature=temperature, top_p=top_p, n=n,
                        tokenizer=tokenizer, tools=factory, seed=seed + start, progress=progress,
                        max_batch_size=max_batch_size)
        if progress:
            made += sum(len(c.tokens) for o in out[-len(chunk):] for c in o)
            elapsed = time.monotonic() - start_time
            rate = len(out) / elapsed
            print(f"eval: {len(out)}/{len(problems)} problems, {rate:.2f} problems/s, {made / elapsed:.0f} tok/s, "
                  f"ETA {_duration((len(problems) - len(out)) / rate)}", file=sys.stderr, flush=True)
    model.train(was_training)
    return out


def evaluate_model(model, tokenizer, problems: Sequence[dict], *, max_new_tokens: int = 320, n: int = 1,
                   temperature: float = 0.0, ks: Sequence[int] = (1,), tools: bool = True, tool_timeout: float = 2.0,
                   batch_size: int = 256, seed: int = 0, max_batch_size: int | None = None) -> dict:
    """Sample `n` completions per problem with mathlm's engine (python blocks executed when `tools`),
    grade them, and summarize. Returns {"summary": summarize(...), "graded": [...], "completions": [[text]]}.

    `max_batch_size` sequences are in flight at once (continuous batching; results do not depend on it).
    Greedy (temperature 0, n=1) gives accuracy; n > 1 at a temperature gives pass@k / maj@k for k in `ks`.
    """
    outs = sample_completions(model, tokenizer, problems, max_new_tokens=max_new_tokens, n=n, temperature=temperature,
                              tools=tools, tool_timeout=tool_timeout, batch_size=batch_size, seed=seed,
                              max_batch_size=max_batch_size)
    texts = [[c.text for c in o] for o in outs]
    graded = grade_completions(problems, texts)
    return {"summary": summarize(problems, graded, ks), "graded": graded, "completions": texts}
