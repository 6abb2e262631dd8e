"""Reward model: a Transformer with a scalar head, trained on preference pairs with the Bradley-Terry loss.

    pairs = [{"question": q, "chosen": good, "rejected": bad}, ...]     # or build_preference_pairs(...)
    rm = RewardModel(Transformer(cfg), tokenizer=tok)
    batches = reward_batches(pairs, tok, batch_size=16, max_len=256)
    Trainer(rm, TrainConfig(...), reward_loss_fn, batches, eval_fn=reward_eval_fn(held_out, tok)).train()
    rm.score([(q, response), ...])          # -> [float, ...]
    rm.save("runs/rm"); RewardModel.load("runs/rm")

Input format: the policy's own, `tokenizer.encode_example(question, response)` =
BOS + "Question: {question}\\nAnswer:\\n" + response + EOS; the score is the head's output at the
last real token (the EOS), as in Ouyang et al. 2022 and TRL. A sequence longer than `max_len` loses
tokens from the START of the response, so the prompt and the end of the response (final answer,
EOS) stay visible.

Pairs: dicts with "question", "chosen" and "rejected" (strings; chosen and rejected answer the same
question) and an optional "margin" (float, Llama 2's margin in the loss, default 0). Extra keys
are ignored, so `mathlm.preference.build_preference_pairs(samples)` output trains it as it is.

Training (Ouyang et al. 2022, eq. 1): loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected) - margin),
mean over pairs (`mathlm.losses.reward_loss`). A batch holds the B chosen and the B rejected
sequences as 2B rows of ONE forward pass (rows [0, B) chosen, [B, 2B) rejected).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from .batching import BatchIterator
from .losses import reward_loss
from .model import Transformer
from .scalar_head import ScalarHeadModel, last_token_index
from .tokenizer import Tokenizer, has_tokenizer
from .train import normalized_by

PAIR_FIELDS = ("question", "chosen", "rejected")


# ------------------------------------------------------------------------------------------ encoding


def fit_to_length(head: list[int], body: list[int], tail: list[int], max_len: int) -> list[int]:
    """head + body + tail in at most `max_len` ids: tokens go from the start of `body` first, then
    from `head` just after its first id (the BOS), so the tail (where the score is read) survives."""
    if max_len < len(tail) + 1:
        raise ValueError(f"max_len ({max_len}) must leave room for the first id and the {len(tail)} tail ids")
    excess = len(head) + len(body) + len(tail) - max_len
    if excess > 0:
        cut = min(excess, len(body))
        body = body[cut:]
        excess -= cut
    if excess > 0:
        head = head[:1] + head[1 + excess:]
    return head + body + tail


def encode_response(tokenizer: Tokenizer, question: str, response: str, max_len: int) -> list[int]:
    """BOS + prompt template + response + EOS (= `tokenizer.encode_example`), fitted to `max_len`."""
    return fit_to_length(tokenizer.encode_prompt(question), tokenizer.encode(response, bos=False),
                         [tokenizer.eos_id], max_len)


def _require_text(pair: dict, key: str, where: str) -> str:
    value = pair.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {value!r:.60}")
    return value


@dataclass
class RewardPair:
    chosen: list[int]      # ids of question + chosen response
    rejected: list[int]    # ids of question + rejected response
    margin: float = 0.0


def encode_reward_pairs(pairs: Iterable[dict], tokenizer: Tokenizer, max_len: int) -> list[RewardPair]:
    """Tokenize `{question, chosen, rejected[, margin]}` dicts (see the module docstring)."""
    examples = []
    for i, pair in enumerate(pairs):
        where = f"pair {i}"
        if not isinstance(pair, dict):
            raise ValueError(f"{where}: expected a dict with {list(PAIR_FIELDS)}, got {type(pair).__name__}")
        question, chosen, rejected = (_require_text(pair, k, where) for k in PAIR_FIELDS)
        margin = pair.get("margin", 0.0)
        if not isinstance(margin, (int, float)) or isinstance(margin, bool):
            raise ValueError(f"{where}: field 'margin' must be a number, got {margin!r}")
        examples.append(RewardPair(encode_response(tokenizer, question, chosen, max_len),
                                    encode_response(tokenizer, question, rejected, max_len), float(margin)))
    return examples


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, attention_mask), both (N, longest) int64, right padding."""
    if not sequences:
        raise ValueError("pad_right needs at least one sequence")
    T = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), T, dtype=torch.long)
    for i, s in enumerate(sequences):
        if len(s) == 0:
            raise ValueError(f"sequence {i} is empty")
        tokens[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return tokens, mask


def collate_pairs(examples: Sequence[RewardPair], pad_id: int) -> dict[str, torch.Tensor]:
    """tokens / attention_mask (2B, T): rows [0, B) the chosen, [B, 2B) the rejected; margin (B,)."""
    tokens, mask = pad_right([e.chosen for e in examples] + [e.rejected for e in examples], pad_id)
    return {"tokens": tokens, "attention_mask": mask,
            "margin": torch.tensor([e.margin for e in examples], dtype=torch.float32)}


def reward_batches(pairs: Sequence[dict], tokenizer: Tokenizer, batch_size: int, max_len: int,
                       seed: int = 0) -> BatchIterator:
    """Endless shuffled micro-batches of `batch_size` pairs for `Trainer(..., reward_loss_fn, ...)`."""
    return BatchIterator(encode_reward_pairs(pairs, tokenizer, max_len), batch_size,
                         partial(collate_pairs, pad_id=tokenizer.pad_id), seed=seed)


# ------------------------------------------------------------------------------------------ loss


def last_token_scores(model: nn.Module, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) scores at each row's last real token through `model.forward` (so a DDP wrapper works too)."""
    values = model(tokens, attention_mask=attention_mask)  # (B, T)
    return values.gather(1, last_token_index(attention_mask)[:, None]).squeeze(1)


@normalized_by("micro_batches")
def reward_loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Trainer loss of a `collate_pairs` batch: one forward over chosen and rejected, then
    `reward_loss` (Bradley-Terry) with the pairs' margins."""
    scores = last_token_scores(model, batch["tokens"], batch["attention_mask"])  # (2B,)
    B = scores.shape[0] // 2
    return reward_loss(scores[:B], scores[B:], margin=batch["margin"])


# ------------------------------------------------------------------------------------------ scoring


@torch.no_grad()
def score_sequences(model: nn.Module, sequences: Sequence[Sequence[int]], pad_id: int,
                    batch_size: int = 32) -> list[float]:
    """Scores of token-id sequences, batched by similar length (the order of `sequences` is kept).
    Runs in eval mode and restores the model's mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tokens, mask = pad_right([sequences[i] for i in idx], pad_id)
            values = last_token_scores(model, tokens.to(device), mask.to(device))
            for i, v in zip(idx, values.float().tolist()):
                scores[i] = v
    finally:
        model.train(was_training)
    return scores


def preference_accuracy(model: nn.Module, pairs: Sequence[dict], tokenizer: Tokenizer, max_len: int | None = None,
                        batch_size: int = 32) -> dict[str, float]:
    """On held-out pairs: `accuracy` = fraction with r(chosen) > r(rejected) (a tie counts one half),
    `margin` = mean r(chosen) - r(rejected), `n` pairs."""
    if not pairs:
        raise ValueError("preference_accuracy needs at least one pair")
    max_len = max_len or model.config.max_seq_len
    examples = encode_reward_pairs(pairs, tokenizer, max_len)
    scores = score_sequences(model, [e.chosen for e in examples] + [e.rejected for e in examples],
                             tokenizer.pad_id, batch_size)
    n = len(examples)
    diffs = [c - r for c, r in zip(scores[:n], scores[n:])]
    wins = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs)
    return {"accuracy": wins / n, "margin": sum(diffs) / n, "n": float(n)}


def reward_eval_fn(pairs: Sequence[dict], tokenizer: Tokenizer, max_len: int | None = None,
                   batch_size: int = 32) -> Callable[[nn.Module], dict[str, float]]:
    """`Trainer(eval_fn=...)`: preference accuracy and margin on `pairs` (held out)."""
    def eval_fn(model: nn.Module) -> dict[str, float]:
        return preference_accuracy(model, pairs, tokenizer, max_len, batch_size)
    return eval_fn


# ------------------------------------------------------------------------------------------ the model


class RewardModel(ScalarHeadModel):
    """A ScalarHeadModel that knows its tokenizer and scores texts.

    `score(tokens, attention_mask)` with tensors is ScalarHeadModel's (B,) score (RL code scoring its
    own rollouts calls it that way); `score(items)` with a list scores texts:
    - (question, response) tuples: the training format (see the module docstring);
    - plain strings: BOS + text + EOS, the whole text as one sequence.
    """

    def __init__(self, backbone: Transformer, init_std: float | None = None, tokenizer: Tokenizer | None = None):
        super().__init__(backbone, init_std=init_std)
        self.tokenizer = tokenizer

    def score(self, items, attention_mask: torch.Tensor | None = None, *, tokenizer: Tokenizer | None = None,
              batch_size: int = 32, max_len: int | None = None):
        if isinstance(items, torch.Tensor):
            return super().score(items, attention_mask)
        tok = tokenizer or self.tokenizer
        if tok is None:
            raise ValueError("RewardModel.score of texts needs a tokenizer: pass tokenizer= or build the model "
                             "with one")
        max_len = max_len or self.config.max_seq_len
        sequences = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                sequences.append(fit_to_length([tok.bos_id], tok.encode(item, bos=False), [tok.eos_id], max_len))
            elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
                sequences.append(encode_response(tok, item[0], item[1], max_len))
            else:
                raise ValueError(f"item {i} must be a text or a (question, response) pair of strings, got {item!r:.80}")
        return score_sequences(self, sequences, tok.pad_id, batch_size)

    def save(self, path: str | os.PathLike, tokenizer: Tokenizer | None = None, **extra_meta) -> Path:
        """The ScalarHeadModel folder, with the tokenizer (this model's unless one is given)."""
        return super().save(path, tokenizer=tokenizer or self.tokenizer, kind="reward", **extra_meta)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: torch.dtype | None = None, device="cpu") -> "RewardModel":
        """A saved scalar-head folder; its tokenizer.model, when present, becomes `model.tokenizer`."""
        model = super().load(path, dtype=dtype, device=device)
        model.tokenizer = Tokenizer.from_pretrained(path) if has_tokenizer(path) else None
        return model
