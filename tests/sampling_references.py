"""Independent references and small fakes shared by test_sampling.py and test_tool_decoding.py.

The references never touch mathlm.sampling: an argmax loop over full forwards without a cache, the
sampling distribution recomputed in float64 with plain Python sorting, and log-probs read off one
full forward of prompt + completion.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from mathlm import ModelConfig, Transformer


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128, max_seq_len=96)
    return ModelConfig(**{**kw, **overrides})


def scale_head(model: Transformer, factor: float) -> Transformer:
    """Spread the logits of a random model (init std 0.02 gives near-ties everywhere), so that greedy
    choices do not hinge on the last bits of float32 arithmetic."""
    with torch.no_grad():
        model.lm_head.weight.mul_(factor)
    return model


def tiny_model(seed: int = 0, head_scale: float = 20.0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return scale_head(Transformer(tiny_config(**overrides)).eval(), head_scale)


@torch.no_grad()
def argmax_loop(model, prompt: list[int], max_new_tokens: int, eos_id: int | None = None) -> list[int]:
    """Greedy decoding the slow way: one full forward of the whole sequence per new token."""
    ids, out = list(prompt), []
    for _ in range(max_new_tokens):
        t = int(model(torch.tensor([ids]))[0, -1].argmax())
        out.append(t)
        ids.append(t)
        if t == eos_id:
            break
    return out


@torch.no_grad()
def completion_logits(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """float64 logits (len(completion), V) that predicted each completion token, from one full forward."""
    ids = torch.tensor([prompt + completion])
    return model(ids)[0, len(prompt) - 1:-1].double()


def reference_distribution(logits: list[float], temperature: float, top_k: int | None,
                           top_p: float | None) -> list[float]:
    """Probabilities (float64, plain Python) after temperature, top-k (ties with the k-th kept), then
    top-p (most probable first, keep while the mass before a token is < top_p), renormalized."""
    x = [v / temperature for v in logits]
    keep = list(range(len(x)))
    if top_k is not None and top_k < len(x):
        kth = sorted(x, reverse=True)[top_k - 1]
        keep = [i for i in keep if x[i] >= kth]
    m = max(x[i] for i in keep)
    weights = {i: math.exp(x[i] - m) for i in keep}
    if top_p is not None and top_p < 1:
        total = sum(weights.values())
        mass, kept = 0.0, {}
        for i in sorted(keep, key=lambda i: -x[i]):
            if mass >= top_p:
                break
            kept[i] = weights[i]
            mass += weights[i] / total
        weights = kept
    total = sum(weights.values())
    return [weights.get(i, 0.0) / total for i in range(len(x))]


def reference_logprobs(model, prompt: list[int], completion: list[int], temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None) -> list[float]:
    """log p(completion[j]) under the processed distribution, from one full forward (temperature 0:
    the plain log_softmax)."""
    logits = completion_logits(model, prompt, completion)
    if temperature == 0:
        return logits.log_softmax(-1).gather(1, torch.tensor(completion)[:, None]).squeeze(1).tolist()
    out = []
    for row, t in zip(logits.tolist(), completion):
        p = reference_distribution(row, temperature, top_k, top_p)[t]
        out.append(math.log(p) if p > 0 else -math.inf)
    return out


class ForwardRecorder:
    """Counts what each forward call of a model processed: batch size, new tokens, real tokens."""

    def __init__(self, model: nn.Module):
        self.calls: list[dict] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        tokens = args[0] if args else kwargs["tokens"]
        mask = kwargs.get("attention_mask")
        real = int(mask.sum()) if mask is not None else tokens.numel()
        cache = kwargs.get("cache")
        fresh = cache is None or cache.pos == 0  # a prefill into an empty cache
        self.calls.append({"batch": tokens.shape[0], "T": tokens.shape[1], "real": real, "fresh": fresh})

    def remove(self):
        self.handle.remove()


class PieceTokenizer:
    """A test tokenizer: greedy longest match over `pieces`, any other printable ASCII character is
    its own token. ids 0 pad, 1 bos, 2 eos."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def __init__(self, pieces=()):
        chars = [chr(c) for c in range(32, 127)] + ["\n"]
        self.pieces = ["<pad>", "<bos>", "<eos>"] + list(pieces) + [c for c in chars if c not in pieces]
        self.index = {p: i for i, p in enumerate(self.pieces)}
        self.longest_first = sorted(pieces, key=len, reverse=True)

    def __len__(self) -> int:
        return len(self.pieces)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids, i = ([self.bos_id] if bos else []), 0
        while i < len(text):
            piece = next((p for p in self.longest_first if text.startswith(p, i)), text[i])
            ids.append(self.index[piece])
            i += len(piece)
        return ids

    def decode(self, ids) -> str:
        return "".join(self.pieces[i] for i in ids if i > 2)


class _BigramHead(nn.Module):
    def __init__(self, head: nn.Linear, table: torch.Tensor, seen: dict):
        super().__init__()
        self.head, self.table, self.seen = head, table, seen

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        tokens = self.seen["tokens"]  # (B, T) input of the current forward
        bias = self.table[tokens] if hidden.dim() == 3 else self.table[tokens[:, -1]]
        return self.head(hidden) + bias.to(hidden.dtype)


class ScriptedModel(Transformer):
    """A random transformer whose logits get +bias at `successor[a]` when the input token is `a`:
    greedy decoding follows the script, while every log-prob still depends on the whole context
    (a wrong cache changes them). The bias is keyed on the input token of each position, so the
    engine's `return_hidden` + `lm_head` path and a full forward see the same model."""

    def __init__(self, cfg: ModelConfig, successor: dict[int, int], bias: float = 8.0, head_scale: float = 6.0):
        super().__init__(cfg)
        table = torch.zeros(cfg.vocab_size, cfg.vocab_size)
        for a, b in successor.items():
            table[a, b] = bias
        self.seen: dict = {}
        with torch.no_grad():
            self.lm_head.weight.mul_(head_scale)
        self.lm_head = _BigramHead(self.lm_head, table, self.seen)

    def forward(self, tokens, **kwargs):
        self.seen["tokens"] = tokens
        return super().forward(tokens, **kwargs)


def refill_schedule(lengths: list[int], rows: int) -> int:
    """Decode steps a continuous-batching engine needs for sequences of `lengths` tokens through
    `rows` rows, refilling a row the moment its sequence ends: a sequence's first token comes from
    its prefill, each further token costs one step of the whole batch."""
    queue, live, steps = list(lengths), [], 0
    while queue or live:
        while queue and len(live) < rows:
            left = queue.pop(0) - 1  # tokens still to decode after the first
            if left > 0:
                live.append(left)
        if live:
            steps += 1
            live = [t - 1 for t in live if t > 1]
    return steps


def script(tokenizer: PieceTokenizer, *chains: list[str]) -> dict[int, int]:
    """Successor table from chains of pieces: each piece is followed by the next one ("<eos>" ends)."""
    succ = {}
    for chain in chains:
        ids = [tokenizer.index[p] for p in chain]
        for a, b in zip(ids, ids[1:]):
            assert succ.get(a, b) == b, f"piece {tokenizer.pieces[a]!r} has two successors"
            succ[a] = b
    return succ
