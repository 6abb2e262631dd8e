"""RL rollouts: sample completions with the engine, lay them out as right-padded tensors, and score
every sampled token under the policy, the frozen reference and the value model.

Layout (every per-token tensor of a `Rollout` is (N, L), indexed like `tokens`)

    tokens          BOS Question: ... Answer:\\n | sampled ... ```output\\n42\\n``` ... EOS | pad pad
    attention_mask  1   1 ...                 1 | 1       ... 1                  ... 1   | 0   0
    response_mask   0   0 ...                 0 | 1       ... 0 (tool output)    ... 1   | 0   0

Entry t of `old_logps`, `ref_logps`, `entropy` and `values` belongs to the token `tokens[:, t]`:
its log-prob given `tokens[:, :t]`, the entropy of the distribution it was drawn from, the value
of the state in which it was chosen (the value head read at position t - 1). Column 0 is never a
response token (a prompt has at least one token), so a loss reads `x[:, 1:]` against
`model(tokens)[:, :-1]`. Entries outside `response_mask` are 0.

Rows are prompt-major: the `n` samples of prompt p are rows p*n .. p*n + n - 1, so GRPO groups are
consecutive rows (`Rollout.problem_index[row] == row // n`).

Old log-probs. `generate` returns the log-prob of each token under the distribution it was drawn
from (tempered, filtered), computed through the KV cache. The loss recomputes log-probs with a full
forward and `token_logprobs(..., temperature=T)`; with no top-k/top-p the two are the same function
of the same weights, so `score_tokens` recomputes the old log-probs with the very function the loss
uses (a ratio of exactly 1 before the first update, whatever kernels the cache path took) and
`Rollout.logprob_gap` records how far the engine's numbers were (max |difference| over sampled
tokens: ~1e-6 in float32 on CPU; bf16 on GPU gives more, which is why the recomputed values are used).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from .losses import token_logprobs
from .sampling import Completion, generate

__all__ = ["Rollout", "assemble_rollout", "score_tokens", "token_values", "token_entropy", "sample_rollout"]

# Positions per chunk of the entropy computation: 2**24 float32 logits (64 MiB) at a time.
_ENTROPY_CHUNK_ELEMENTS = 2**24


@dataclass
class Rollout:
    """One rollout batch, (N, L) tensors right-padded (see the module docstring for the layout)."""

    tokens: torch.Tensor             # (N, L) long: prompt + completion, then pad_id
    attention_mask: torch.Tensor     # (N, L) bool: real tokens
    response_mask: torch.Tensor      # (N, L) bool: SAMPLED completion tokens (no prompt, tool output, padding)
    sampled_logps: torch.Tensor      # (N, L) float32: generate's log-probs at response tokens, 0 elsewhere
    prompt_lengths: list[int]
    completions: list[Completion]    # row order
    problem_index: list[int]         # row -> index into the problems this rollout was sampled for
    old_logps: torch.Tensor | None = None   # (N, L) recomputed by score_tokens at the sampling temperature
    entropy: torch.Tensor | None = None     # (N, L) entropy of the tempered policy at response tokens
    ref_logps: torch.Tensor | None = None   # (N, L) frozen reference, same temperature
    values: torch.Tensor | None = None      # (N, L) value model, V of the state choosing each token
    logprob_gap: float = float("nan")       # max |old_logps - sampled_logps| over response tokens
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.tokens.shape[0]


def assemble_rollout(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[Completion]],
                     pad_id: int, device: torch.device | str = "cpu") -> Rollout:
    """Right-padded tensors from prompts (token ids) and `generate`'s output (one list per prompt).

    Every completion needs `logprobs` (generate(..., return_logprobs=True)) and one `sampled_mask`
    entry per token. Returns a Rollout without old/ref log-probs or values (see `sample_rollout`).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} lists of completions")
    rows: list[tuple[list[int], Completion, int]] = []
    for p, (prompt, samples) in enumerate(zip(prompts, completions)):
        if len(prompt) == 0:
            raise ValueError(f"prompt {p} is empty: a rollout row needs at least one prompt token")
        for c in samples:
            if c.logprobs is None:
                raise ValueError(f"a completion of prompt {p} has no logprobs: sample with return_logprobs=True")
            if not (len(c.tokens) == len(c.logprobs) == len(c.sampled_mask)):
                raise ValueError(f"a completion of prompt {p} has {len(c.tokens)} tokens, {len(c.logprobs)} "
                                 f"logprobs and {len(c.sampled_mask)} sampled_mask entries; they must be equal")
            rows.append((list(prompt), c, p))
    if not rows:
        raise ValueError("no completions to assemble")
    N = len(rows)
    L = max(len(prompt) + len(c.tokens) for prompt, c, _ in rows)
    tokens = torch.full((N, L), pad_id, dtype=torch.long)
    attention = torch.zeros((N, L), dtype=torch.bool)
    response = torch.zeros((N, L), dtype=torch.bool)
    sampled_logps = torch.zeros((N, L), dtype=torch.float32)
    for i, (prompt, c, _) in enumerate(rows):
        P, C = len(prompt), len(c.tokens)
        tokens[i, :P + C] = torch.tensor(prompt + list(c.tokens), dtype=torch.long)
        attention[i, :P + C] = True
        sampled = torch.tensor(c.sampled_mask, dtype=torch.bool)
        response[i, P:P + C] = sampled
        sampled_logps[i, P:P + C] = torch.tensor(c.logprobs, dtype=torch.float32).masked_fill(~sampled, 0.0)
    return Rollout(tokens=tokens.to(device), attention_mask=attention.to(device), response_mask=response.to(device),
                   sampled_logps=sampled_logps.to(device), prompt_lengths=[len(r[0]) for r in rows],
                   completions=[r[1] for r in rows], problem_index=[r[2] for r in rows])


def token_entropy(logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / temperature) at the positions of `mask`, 0 elsewhere.

    logits (B, T, V), mask (B, T) bool; returns float32 (B, T). Works through the masked positions a
    chunk at a time, so no full-vocabulary float32 copy of the whole batch is ever made.
    """
    out = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    rows, cols = mask.nonzero(as_tuple=True)
    step = max(1, _ENTROPY_CHUNK_ELEMENTS // logits.shape[-1])
    for s in range(0, rows.numel(), step):
        r, c = rows[s:s + step], cols[s:s + step]
        logp = (logits[r, c].float() / temperature).log_softmax(-1)  # (n, V)
        out[r, c] = -(logp.exp() * logp).sum(-1)
    return out


def _row_chunks(attention_mask: torch.Tensor, batch_size: int):
    """(row slice, length) per chunk of rows; length = the chunk's longest real row (trims padding)."""
    lengths = attention_mask.sum(1)
    for s in range(0, attention_mask.shape[0], batch_size):
        rows = slice(s, s + batch_size)
        yield rows, int(lengths[rows].max())


@torch.no_grad()
def score_tokens(model: nn.Module, tokens: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
                 temperature: float, batch_size: int = 16,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (N, L) of the response tokens under softmax(model logits / temperature), token-aligned
    (entry t = log p(tokens[t] | tokens[:t]), 0 outside `response_mask`); with `with_entropy` also the
    entropy of that distribution at the same positions. One full forward per `batch_size` rows, each
    trimmed to its longest real row; right padding needs no attention mask (causal attention never
    looks ahead). Computed with `mathlm.losses.token_logprobs`, the function the RL loss uses.
    """
    N, L = tokens.shape
    logps = torch.zeros((N, L), dtype=torch.float32, device=tokens.device)
    entropy = torch.zeros((N, L), dtype=torch.float32, device=tokens.device) if with_entropy else None
    for rows, length in _row_chunks(attention_mask, batch_size):
        ids = tokens[rows, :length]
        mask = response_mask[rows, 1:length]  # (b, length - 1): targets
        logits = model(ids)[:, :-1]  # (b, length - 1, V): position t predicts ids[:, t + 1]
        labels = ids[:, 1:].masked_fill(~mask, -100)
        logps[rows, 1:length] = token_logprobs(logits, labels, temperature=temperature).float()
        if entropy is not None:
            entropy[rows, 1:length] = token_entropy(logits, mask, temperature)
    return logps, entropy


@torch.no_grad()
def token_values(value_model: nn.Module, tokens: torch.Tensor, attention_mask: torch.Tensor,
                 response_mask: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Values (N, L) token-aligned: entry t = the value head at position t - 1, i.e. V of the state
    in which token t is chosen (`mathlm.losses.gae`'s convention); 0 outside `response_mask`."""
    N, L = tokens.shape
    values = torch.zeros((N, L), dtype=torch.float32, device=tokens.device)
    for rows, length in _row_chunks(attention_mask, batch_size):
        values[rows, 1:length] = value_model(tokens[rows, :length])[:, :-1].float()
    return torch.where(response_mask, values, 0.0)


def sample_rollout(policy: nn.Module, prompts: Sequence[Sequence[int]], *, n: int, temperature: float,
                   max_new_tokens: int, seed: int, tokenizer: Any, pad_id: int, stop: Sequence[str] = (),
                   tools: Callable[[], Any] | None = None, max_tool_calls: int = 4,
                   ref_model: nn.Module | None = None, value_model: nn.Module | None = None,
                   batch_size: int = 16, score_context: Callable[[], Any] | None = None,
                   max_batch_size: int | None = None) -> Rollout:
    """Sample `n` completions per prompt at `temperature` (no top-k/top-p: the loss must see the
    distribution the tokens came from) and fill the rollout: tensors, old log-probs recomputed on
    the policy (+ entropy), reference log-probs when `ref_model` is given, values when
    `value_model` is given. `tools` is a sandbox session factory (python blocks run as written).
    `score_context` (a zero-argument context-manager factory) wraps the scoring forwards: pass the
    training loop's autocast so old log-probs are computed at the precision of the loss forward.
    `max_batch_size`: sequences in flight while sampling (continuous batching; samples do not depend on it)."""
    if not temperature > 0:
        raise ValueError(f"temperature ({temperature}) must be > 0: RL samples from the tempered policy")
    completions = generate(policy, prompts, max_new_tokens, temperature=temperature, n=n, seed=seed,
                           stop=list(stop) or None, return_logprobs=True, tokenizer=tokenizer, tools=tools,
                           max_tool_calls=max_tool_calls, max_batch_size=max_batch_size)
    device = next(policy.parameters()).device
    r = assemble_rollout(prompts, completions, pad_id, device)
    with (score_context or contextlib.nullcontext)():
        r.old_logps, r.entropy = score_tokens(policy, r.tokens, r.attention_mask, r.response_mask, temperature,
                                              batch_size, with_entropy=True)
        if ref_model is not None:
            r.ref_logps, _ = score_tokens(ref_model, r.tokens, r.attention_mask, r.response_mask, temperature,
                                          batch_size)
        if value_model is not None:
            r.values = token_values(value_model, r.tokens, r.attention_mask, r.response_mask, batch_size)
    r.logprob_gap = float((r.old_logps - r.sampled_logps).abs().masked_fill(~r.response_mask, 0.0).max())
    return r
