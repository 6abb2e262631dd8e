"""The critique model: one scalar-head Transformer that judges questions and solutions.

Given a question it scores quality (well-posed and solvable); given a question and a full solution
it judges correctness. Both are binary: the score is the logit of "good" at the last token of

    question task   "Critique the question:\\n{question}\\nWell-posed?"
    solution task   "Critique the solution:\\n{question}\\n{solution}\\nFinal answer: {a}\\nLast result: {r}\\nCorrect?"

(`solution_evidence` reads a and r off the solution text, so that a final answer the work does not
give stands next to the scoring position). A sequence longer than max_len loses tokens from the
start of the question / solution text; the end of a solution and the trailer stay visible. Trained
with `mathlm.losses.critique_loss` (binary cross-entropy on the logit, optional class weights).

Data (mathlm/critique_data.py, re-exported here): well-posed questions are the positives of the
question task and `corrupt_question` makes the negatives; the solution task takes graded samples
`{question, solution, correct}` (the pipeline's RFT samples, or `synthetic_graded_samples`);
`build_critique_dataset` mixes, balances and splits them.

Used by the data filter (`CritiqueScorer.question_scorer()` / `.solution_scorer()` plug into
`mathlm.data.filter_by_score`), by hard-sample weighting (`mathlm.losses.hard_sample_weights(scores=p)`) and as the
judge of win rates. Evaluated by `evaluate_critique`: agreement with the reference labels and the
precision, recall and F1 of BOTH classes per task and overall, next to the majority-class baseline.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .batching import BatchIterator
from .critique_data import (CORRUPTIONS, SOLUTION_CORRUPTIONS, TASKS, UNANSWERABLE, build_critique_dataset,
                            corrupt_question, corrupt_solution, critique_class_weights, graded_examples,
                            question_examples, synthetic_graded_samples, validate_critique_example)
from .data.format import FINAL_ANSWER_PREFIX, parse_blocks
from .grading import extract_answer
from .losses import critique_loss, reward_loss
from .reward import fit_to_length, last_token_scores, pad_right, score_sequences
from .scalar_head import ScalarHeadModel
from .tokenizer import TOKENIZER_FILE, Tokenizer
from .train import normalized_by

__all__ = [
    "QUESTION_HEADER", "QUESTION_TRAILER", "SOLUTION_HEADER", "SOLUTION_TRAILER", "solution_evidence", "critique_text",
    "encode_critique_input", "CritiqueExample", "encode_critique_examples", "collate_critique", "twin_pairs",
    "critique_loss_fn",
    "critique_batches", "CritiqueScorer", "agreement_metrics",
    "evaluate_critique", "critique_eval_fn",
    # data (mathlm/critique_data.py)
    "CORRUPTIONS", "SOLUTION_CORRUPTIONS", "TASKS", "UNANSWERABLE", "build_critique_dataset", "corrupt_question",
    "corrupt_solution", "critique_class_weights", "graded_examples", "question_examples",
    "synthetic_graded_samples", "validate_critique_example",
]

QUESTION_HEADER = "Critique the question:\n"
QUESTION_TRAILER = "\nWell-posed?"
SOLUTION_HEADER = "Critique the solution:\n"
SOLUTION_TRAILER = "\nCorrect?"


# ------------------------------------------------------------------------------------------ inputs


_RESULT = re.compile(r"= (-?\d+(?:/\d+)?)\.?\s*$", re.MULTILINE)


def solution_evidence(solution: str) -> str:
    """The lines the solution template puts just before its trailer, read off the solution text:

        Final answer: <the \\boxed{...} / "The answer is ..." answer, or none>
        Last result: <the last line of the last output block, else the last "= value" at a line end, or none>

    A wrong sampled solution often states a final answer its own work does not give; these lines put
    the two side by side next to where the score is read, and they survive the truncation of a long
    solution. (Whether a model learns to compare them is another matter: see
    docs/reward_and_critique.md for what a tiny model trained from scratch did.)"""
    stated = extract_answer(solution) if ("\\boxed" in solution or FINAL_ANSWER_PREFIX in solution) else None
    outputs = [out for _, out in parse_blocks(solution) if out is not None and out.strip()]
    if outputs:
        result = outputs[-1].strip().splitlines()[-1].strip()
    else:
        work = solution.split(FINAL_ANSWER_PREFIX)[0]
        found = _RESULT.findall(work)
        result = found[-1] if found else None
    return f"\nFinal answer: {stated or 'none'}\nLast result: {result or 'none'}"


def critique_text(question: str, solution: str | None = None) -> str:
    """The text the critique model reads: the question template, or the solution template."""
    if solution is None:
        return QUESTION_HEADER + question.strip() + QUESTION_TRAILER
    return SOLUTION_HEADER + question.strip() + "\n" + solution.strip() + solution_evidence(solution) + SOLUTION_TRAILER


def encode_critique_input(tokenizer: Tokenizer, question: str, solution: str | None, max_len: int) -> list[int]:
    """BOS + `critique_text(question, solution)` in at most max_len ids (the trailer always kept)."""
    if solution is None:
        head = tokenizer.encode(QUESTION_HEADER, bos=True)
        body = tokenizer.encode(question.strip(), bos=False)
        tail = tokenizer.encode(QUESTION_TRAILER, bos=False)
    else:
        head = tokenizer.encode(SOLUTION_HEADER + question.strip() + "\n", bos=True)
        body = tokenizer.encode(solution.strip(), bos=False)
        tail = tokenizer.encode(solution_evidence(solution) + SOLUTION_TRAILER, bos=False)
    return fit_to_length(head, body, tail, max_len)


# ------------------------------------------------------------------------------------------ training


@dataclass
class CritiqueExample:
    ids: list[int]
    label: float   # 1 good (well-posed / correct), 0 bad
    task: int      # index into TASKS: 0 question, 1 solution
    group: int = 0  # examples about the same original question share it


def encode_critique_examples(examples: Sequence[dict], tokenizer: Tokenizer, max_len: int) -> list[CritiqueExample]:
    """Tokenize critique examples (`build_critique_dataset`'s dicts); groups numbered in order of appearance."""
    out = []
    group_ids: dict[str, int] = {}
    for i, ex in enumerate(examples):
        validate_critique_example(ex, f"example {i}")
        solution = ex["solution"] if ex["task"] == "solution" else None
        group = group_ids.setdefault(str(ex.get("group", i)), len(group_ids))
        out.append(CritiqueExample(encode_critique_input(tokenizer, ex["question"], solution, max_len),
                                   float(ex["label"]), TASKS.index(ex["task"]), group))
    return out


def collate_critique(examples: Sequence[CritiqueExample], pad_id: int) -> dict[str, torch.Tensor]:
    """tokens / attention_mask (B, T) right-padded; labels (B,) float; task and group (B,) int64."""
    tokens, mask = pad_right([e.ids for e in examples], pad_id)
    return {"tokens": tokens, "attention_mask": mask,
            "labels": torch.tensor([e.label for e in examples], dtype=torch.float32),
            "task": torch.tensor([e.task for e in examples], dtype=torch.long),
            "group": torch.tensor([e.group for e in examples], dtype=torch.long)}


def twin_pairs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (good, bad) of every pair of rows with the same group and task and labels 1 and 0."""
    labels, task, group = batch["labels"], batch["task"], batch["group"]
    same = (task[:, None] == task[None, :]) & (group[:, None] == group[None, :])  # (B, B)
    return torch.nonzero(same & (labels[:, None] > 0.5) & (labels[None, :] <= 0.5), as_tuple=True)


@normalized_by("micro_batches")
def critique_loss_fn(model: nn.Module, batch: dict, class_weights: Sequence[float] | None = None,
                     pair_weight: float = 0.0):
    """The Trainer loss of a `collate_critique` batch: `critique_loss` on the last-token logits,
    plus `pair_weight` times the Bradley-Terry loss `reward_loss(s_good, s_bad)` over the twin
    pairs of the batch (`twin_pairs`: a good and a bad example of the same question and task; use
    `critique_batches(..., by_group=True)` so that twins share batches). Bind the options with
    `functools.partial(critique_loss_fn, class_weights=(w_bad, w_good), pair_weight=1.0)`."""
    logits = last_token_scores(model, batch["tokens"], batch["attention_mask"])  # (B,)
    loss, metrics = critique_loss(logits, batch["labels"], class_weights=class_weights)
    if pair_weight > 0:
        good, bad = twin_pairs(batch)
        if good.numel():
            pair_loss, pair_metrics = reward_loss(logits[good], logits[bad])
            loss = loss + pair_weight * pair_loss
            metrics = {**metrics, "pair_loss": pair_loss.detach(), "pair_accuracy": pair_metrics["accuracy"]}
    return loss, metrics


def _collate_groups(groups: Sequence[list[CritiqueExample]], pad_id: int) -> dict[str, torch.Tensor]:
    return collate_critique([e for g in groups for e in g], pad_id)


def critique_batches(examples: Sequence[dict], tokenizer: Tokenizer, batch_size: int, max_len: int,
                     seed: int = 0, by_group: bool = False) -> BatchIterator:
    """Endless shuffled micro-batches for `Trainer(..., critique_loss_fn, ...)`.

    by_group: shuffle whole groups (a question with its corruptions, a question's solutions) and
    put `batch_size` groups in a micro-batch (so its size varies), instead of `batch_size` single
    examples. A good example then meets its bad twins in the same gradient, which differ from it
    only where the error is."""
    encoded = encode_critique_examples(examples, tokenizer, max_len)
    if not by_group:
        return BatchIterator(encoded, batch_size, partial(collate_critique, pad_id=tokenizer.pad_id), seed=seed)
    groups: dict[int, list[CritiqueExample]] = {}
    for enc in encoded:
        groups.setdefault(enc.group, []).append(enc)
    return BatchIterator(list(groups.values()), batch_size, partial(_collate_groups, pad_id=tokenizer.pad_id), seed=seed)


# ------------------------------------------------------------------------------------------ scoring


class CritiqueScorer:
    """Probabilities from a trained critique model: P(well-posed) for questions, P(correct) for
    solutions. `question_scorer()` / `solution_scorer()` give `record -> float` callables for
    `mathlm.data.filter_by_score`; the scores also feed `mathlm.losses.hard_sample_weights`."""

    def __init__(self, model: ScalarHeadModel, tokenizer: Tokenizer, *, max_len: int | None = None,
                 batch_size: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_len = max_len or model.config.max_seq_len
        self.batch_size = batch_size

    def _probabilities(self, questions: Sequence[str], solutions: Sequence[str | None]) -> list[float]:
        sequences = [encode_critique_input(self.tokenizer, q, s, self.max_len) for q, s in zip(questions, solutions)]
        logits = score_sequences(self.model, sequences, self.tokenizer.pad_id, self.batch_size)
        return torch.sigmoid(torch.tensor(logits, dtype=torch.float64)).tolist()

    def score_questions(self, questions: Sequence[str]) -> list[float]:
        """P(well-posed and solvable) of each question."""
        return self._probabilities(list(questions), [None] * len(questions))

    def score_solutions(self, questions: Sequence[str], solutions: Sequence[str]) -> list[float]:
        """P(correct) of each (question, solution)."""
        if len(questions) != len(solutions):
            raise ValueError(f"{len(questions)} questions but {len(solutions)} solutions")
        return self._probabilities(list(questions), list(solutions))

    def score_examples(self, examples: Sequence[dict]) -> list[float]:
        """P(label = 1) of critique examples of either task."""
        for i, ex in enumerate(examples):
            validate_critique_example(ex, f"example {i}")
        return self._probabilities([ex["question"] for ex in examples],
                                   [ex["solution"] if ex["task"] == "solution" else None for ex in examples])

    def question_scorer(self, records: Sequence[dict] = (), question_key: str = "question") -> Callable[[dict], float]:
        """`record -> P(well-posed)`; pass the records you will filter to score them in batches first."""
        return self._cached_scorer(records, lambda r: (r[question_key], None))

    def solution_scorer(self, solution_key: str = "mixed", records: Sequence[dict] = (),
                        question_key: str = "question") -> Callable[[dict], float]:
        """`record -> P(correct)` of `record[solution_key]`; records given are scored in batches first."""
        return self._cached_scorer(records, lambda r: (r[question_key], r[solution_key]))

    def _cached_scorer(self, records: Sequence[dict], key: Callable[[dict], tuple]) -> Callable[[dict], float]:
        cache: dict[tuple, float] = {}
        keys = list(dict.fromkeys(key(r) for r in records))
        if keys:
            cache.update(zip(keys, self._probabilities([k[0] for k in keys], [k[1] for k in keys])))

        def scorer(record: dict) -> float:
            k = key(record)
            if k not in cache:
                cache[k] = self._probabilities([k[0]], [k[1]])[0]
            return cache[k]
        return scorer

    def save(self, path: str | os.PathLike, **extra_meta) -> Path:
        """The model folder (ScalarHeadModel layout) with the tokenizer."""
        return self.model.save(path, tokenizer=self.tokenizer, kind="critique", question_header=QUESTION_HEADER,
                               question_trailer=QUESTION_TRAILER, solution_header=SOLUTION_HEADER,
                               solution_trailer=SOLUTION_TRAILER, **extra_meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu", **kwargs) -> "CritiqueScorer":
        path = Path(path)
        if not (path / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"{path / TOKENIZER_FILE} not found: save critique models with CritiqueScorer.save")
        return cls(ScalarHeadModel.load(path, device=device), Tokenizer.from_file(path), **kwargs)


# ------------------------------------------------------------------------------------------ evaluation


def agreement_metrics(labels: Sequence[int | bool], predictions: Sequence[int | bool]) -> dict[str, float]:
    """Agreement of binary predictions with reference labels (1 = good), both classes reported.

    agreement = (tp + tn) / n; for the positive class precision tp / (tp + fp), recall tp / (tp + fn),
    F1 their harmonic mean; for the negative class the same with the roles swapped (tn / (tn + fn),
    tn / (tn + fp)); a ratio with a zero denominator is 0 (sklearn's zero_division=0).
    macro_f1 = (f1_pos + f1_neg) / 2. majority_baseline = the agreement of always answering the
    more frequent reference label, max(#pos, #neg) / n.
    """
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise ValueError("agreement_metrics needs at least one label")
    y = [int(bool(v)) for v in labels]
    p = [int(bool(v)) for v in predictions]
    tp = sum(a and b for a, b in zip(y, p))
    tn = sum(not a and not b for a, b in zip(y, p))
    fp = sum(not a and b for a, b in zip(y, p))
    fn = sum(a and not b for a, b in zip(y, p))
    n = len(y)

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    def f1(precision: float, recall: float) -> float:
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    out = {"n": float(n), "agreement": (tp + tn) / n, "positive_rate": (tp + fn) / n,
           "precision_pos": ratio(tp, tp + fp), "recall_pos": ratio(tp, tp + fn),
           "precision_neg": ratio(tn, tn + fn), "recall_neg": ratio(tn, tn + fp),
           "majority_baseline": max(tp + fn, tn + fp) / n,
           "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn)}
    out["f1_pos"] = f1(out["precision_pos"], out["recall_pos"])
    out["f1_neg"] = f1(out["precision_neg"], out["recall_neg"])
    out["macro_f1"] = (out["f1_pos"] + out["f1_neg"]) / 2
    return out


def evaluate_critique(model: ScalarHeadModel | CritiqueScorer, examples: Sequence[dict],
                      tokenizer: Tokenizer | None = None, *, threshold: float = 0.5, batch_size: int = 64,
                      by_source: bool = False) -> dict[str, dict[str, float]]:
    """`agreement_metrics` of the predictions (P(good) >= threshold) on held-out examples, for
    "overall" and for each task present ("question", "solution"). With `by_source`, also
    "source/<source>" -> {n, agreement} for each example source ("original", "corruption/<kind>",
    "graded", "final_answer", ...): which kinds of bad input the critique catches."""
    if not examples:
        raise ValueError("evaluate_critique needs at least one example")
    if isinstance(model, CritiqueScorer):
        scorer = model
    else:
        if tokenizer is None:
            raise ValueError("evaluate_critique of a bare model needs its tokenizer")
        scorer = CritiqueScorer(model, tokenizer, batch_size=batch_size)
    probabilities = scorer.score_examples(examples)
    predictions = [p >= threshold for p in probabilities]
    labels = [ex["label"] for ex in examples]
    results = {"overall": agreement_metrics(labels, predictions)}
    for task in TASKS:
        idx = [i for i, ex in enumerate(examples) if ex["task"] == task]
        if idx:
            results[task] = agreement_metrics([labels[i] for i in idx], [predictions[i] for i in idx])
    if by_source:
        for source in sorted({str(ex.get("source")) for ex in examples}):
            idx = [i for i, ex in enumerate(examples) if str(ex.get("source")) == source]
            hits = sum(int(predictions[i]) == int(labels[i]) for i in idx)
            results[f"source/{source}"] = {"n": float(len(idx)), "agreement": hits / len(idx)}
    return results


def critique_eval_fn(examples: Sequence[dict], tokenizer: Tokenizer, *, threshold: float = 0.5,
                     batch_size: int = 64) -> Callable[[nn.Module], dict[str, float]]:
    """`Trainer(eval_fn=...)`: evaluate_critique flattened to "<overall|question|solution>/<metric>"."""
    keep = ("agreement", "macro_f1", "f1_pos", "f1_neg", "majority_baseline")

    def eval_fn(model: nn.Module) -> dict[str, float]:
        results = evaluate_critique(model, examples, tokenizer, threshold=threshold, batch_size=batch_size)
        return {f"{part}/{k}": v[k] for part, v in results.items() for k in keep}
    return eval_fn
