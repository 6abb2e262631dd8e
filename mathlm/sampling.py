"""Batched generation with a static KV cache: n samples per prompt, log-probs, stop strings, tools.

`generate(model, prompts, max_new_tokens, ...)` returns, per prompt, n `Completion`s.

How it runs
- Prefill: the ragged prompts are left padded into one batch and run once, each prompt once; the
  cache rows are then repeated n times (`KVCache.select`), so the n samples share one prefill.
- Decode: one forward per step over the live rows. Each row carries the tokens it still has to feed
  (`pending`): normally the one token it just sampled; after a tool call, the output block. A step
  feeds every row's pending tokens right-aligned in a (B, T) chunk with left-padding-style masking
  (T = the longest pending run, 1 almost always), so a tool row catches up while the others decode.
  A row samples when its pending tokens are all in the cache. The logits of the last position only
  are computed (`return_hidden` then `lm_head` on one position).
- Finished rows stop costing compute: once 1/8 of the batch has finished, the cache keeps only the
  live rows (gathered in place, filled slots only). Rows waiting for a tool feed nothing (masked).
- The shared slot counter runs ahead of a row's real length when that row feeds less than T tokens
  in a step; when the slots run out, `_pack_slots` moves each row's real keys to the right end of
  the filled region (positions are baked into the keys by RoPE, so only slot order matters).
  Sliding-window models whose window is shorter than the cache are the exception: their mask
  counts slots, so there every step feeds one token per row and a row is packed gap-free before it
  feeds again after waiting for a tool.
- Randomness is counter-based: the uniform that picks token j of sample i is a hash of (seed, i, j),
  so a seed reproduces the samples whatever the batch composition, compaction or tool timing.

Log-prob convention
`Completion.logprobs[j]` is log p(token j) under the distribution the token was drawn from: the
logits divided by the temperature, restricted by top-k then top-p, renormalized (vLLM's
"processed_logprobs"). It is the behaviour policy PPO/GRPO needs as old log-probs; without top-k and
top-p it equals `mathlm.losses.token_logprobs(logits, labels, temperature=T)` (TRL's convention).
With temperature 0 (greedy) it is the untempered log_softmax of the logits. Tool-output tokens were
not sampled: `sampled_mask[j]` is False there and `logprobs[j]` is 0.0; mask them out of the loss.
"""
from __future__ import annotations

import math
import numbers
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .model import KVCache, Transformer
from .tool_decoding import TextWatcher, ToolRunner

FINISH_REASONS = ("eos", "stop", "length", "tool_limit")
PROGRESS_EVERY = 10.0  # seconds between progress lines with progress=True


@dataclass
class Completion:
    tokens: list[int]  # the new tokens only: sampled ones and appended tool output
    finish_reason: str  # one of FINISH_REASONS
    text: str | None = None  # tokenizer.decode(tokens), when a tokenizer is given
    logprobs: list[float] | None = None  # per token of `tokens` (0.0 at tool-output tokens)
    sampled_mask: list[bool] = field(default_factory=list)  # False where a tool appended the token
    tool_calls: int = 0


# --------------------------------------------------------------------------- the distribution


def processed_logprobs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None) -> torch.Tensor:
    """Log-probs (.., V) float32 of the sampling distribution: softmax(logits / temperature), then
    top-k (tokens below the k-th largest logit get -inf; ties with it are kept, as in Hugging Face),
    then top-p on what is left (keep the most probable tokens until their mass reaches top_p, the
    token that crosses it included), renormalized."""
    x = logits.float() / temperature
    if top_k is not None and top_k < x.shape[-1]:
        kth = x.topk(top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        # The most probable tokens in order: a top-K that already holds top_p of the mass is enough
        # (sorting a 32k vocabulary costs ~15x a top-64 on CPUs); K grows until it does.
        V = x.shape[-1]
        lse = x.logsumexp(-1, keepdim=True)
        K = 64
        while True:
            top, order = x.topk(K, dim=-1) if K < V else x.sort(dim=-1, descending=True)  # descending
            p = (top - lse).exp()
            if K >= V or bool((p.sum(-1) >= top_p).all()):
                break
            K *= 8
        keep = p.cumsum(-1) - p < top_p  # the mass before the token has not reached top_p yet
        drop = torch.ones_like(x, dtype=torch.bool).scatter(-1, order, ~keep)
        x = x.masked_fill(drop, -math.inf)
    return x.log_softmax(-1)


_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """(x * c) mod 2**32 for x in [0, 2**32), in halves so that int64 never overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x):
    """lowbias32 (C. Wellons, hash-prospector): a bijection of 32-bit words with full avalanche.
    Works on Python ints and int64 tensors alike."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_uniforms(seed: int, sample_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """A uniform in [0, 1) (float64, 32 random bits) per (seed, sample id, position): counter-based,
    so sample i's token j gets the same number whatever else is in the batch."""
    s0 = _mix32((seed & _M32) ^ _mix32((seed >> 32) & _M32 ^ 0x9E3779B9))
    h = _mix32(_mix32((sample_ids & _M32) ^ s0) ^ (positions & _M32))
    return _mix32(h ^ 0x85EBCA6B).double() / 2.0**32


def sample_from_logprobs(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: (B, V) log-probs and (B,) uniforms -> (B,) token ids. Tokens with
    probability 0 are never drawn (their CDF step is empty)."""
    cdf = logprobs.exp().double().cumsum(-1)  # (B, V)
    total = cdf[:, -1:].contiguous()
    drawn = torch.searchsorted(cdf, uniforms.to(cdf)[:, None] * total, right=True)
    # u * total can round up to total itself: fall back to the last token that carries mass.
    last = torch.searchsorted(cdf, total)
    return torch.minimum(drawn, last).squeeze(1)


# --------------------------------------------------------------------------- cache housekeeping


def _keep_rows(cache: KVCache, keep: torch.Tensor) -> None:
    """Keep the cache rows `keep` (sorted, unique), gathering only the filled slots, in place."""
    n, end = keep.numel(), cache.pos
    cache.k[:, :n, :end] = cache.k[:, keep, :end]
    cache.v[:, :n, :end] = cache.v[:, keep, :end]
    cache.k, cache.v = cache.k[:, :n], cache.v[:, :n]
    cache.key_valid, cache.n_seen = cache.key_valid[keep], cache.n_seen[keep]


def _pack_slots(cache: KVCache) -> None:
    """Move each row's real keys to the right end of the filled slots, in order; frees the padding.

    Attention order is slot order and positions live in the rotated keys, so this changes no result.
    """
    end = cache.pos
    valid = cache.key_valid[:, :end]  # (B, end)
    counts = valid.sum(1)
    new_end = int(counts.max())
    # A stable sort puts each row's padding first and its real slots last, in their order.
    src = torch.sort(valid.to(torch.uint8), dim=1, stable=True).indices[:, end - new_end:]  # (B, new_end)
    rows = torch.arange(valid.shape[0], device=valid.device)[:, None]
    cache.k[:, :, :new_end] = cache.k[:, rows, src]
    cache.v[:, :, :new_end] = cache.v[:, rows, src]
    cache.key_valid[:, :new_end] = valid.gather(1, src)
    cache.key_valid[:, new_end:] = False
    cache.pos = new_end
    cache.has_padding = bool((counts < new_end).any())


def _make_room(cache: KVCache, length: int) -> None:
    """Make the filled slots at least `length` long by moving every row's keys right (new padding at
    the left), so that a prompt of `length` tokens fits right-aligned in front of the next slot."""
    shift, end = length - cache.pos, cache.pos
    if shift <= 0:
        return
    assert length <= cache.max_len, f"a prompt of {length} tokens does not fit the cache ({cache.max_len} slots)"
    if end:
        cache.k[:, :, shift:shift + end] = cache.k[:, :, :end].clone()
        cache.v[:, :, shift:shift + end] = cache.v[:, :, :end].clone()
        cache.key_valid[:, shift:shift + end] = cache.key_valid[:, :end].clone()
    cache.key_valid[:, :shift] = False
    cache.pos = length


def _forward_last(model: Transformer, tokens: torch.Tensor, mask: torch.Tensor | None,
                  cache: KVCache) -> torch.Tensor:
    """Feed tokens (B, T) through the cache; float32 logits (B, V) of the last position only."""
    # The engine checked the prompts and the cache room itself; skip the per-step validation sync.
    hidden = model(tokens, attention_mask=mask, cache=cache, return_hidden=True, validate=False)[:, -1]
    return model.lm_head(hidden).float()


_compiled_forward_last: Callable | None = None


def _compiled_decode() -> Callable:
    global _compiled_forward_last
    if _compiled_forward_last is None:
        _compiled_forward_last = torch.compile(_forward_last, dynamic=True)
    return _compiled_forward_last


# --------------------------------------------------------------------------- the engine


@dataclass(eq=False)
class _Sequence:
    """One sample being generated: a row of the batch while it lives."""
    sid: int  # prompt index * n + sample index: the counter of its random stream
    budget: int  # most completion tokens it may have
    tokens: list[int] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)
    lp_index: list[int] = field(default_factory=list)  # into the engine's log-prob store; -1: tool token
    pending: list[int] = field(default_factory=list)  # tokens to feed before it samples again
    finish_reason: str | None = None
    tool_calls: int = 0
    future: Future | None = None  # its running tool call
    watcher: TextWatcher | None = None
    gapped: bool = False  # skipped a cache slot since the last packing
    uniforms: list[float] = field(default_factory=list)  # the uniform that draws token j, for j < budget


class _Engine:
    def __init__(self, model: Transformer, prompts: list[list[int]], max_new_tokens: int, *, n: int,
                 temperature: float, top_k: int | None, top_p: float | None, stop: list[str],
                 eos_ids: frozenset[int], seed: int, return_logprobs: bool, tokenizer: Any,
                 tools: Callable[[], Any] | None, max_tool_calls: int, compile_decode: bool, progress: bool,
                 max_batch_size: int | None = None):
        self.model, self.prompts, self.n = model, prompts, n
        self.cfg = cfg = model.config
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.eos_ids, self.seed, self.return_logprobs = eos_ids, seed, return_logprobs
        self.tokenizer, self.max_tool_calls, self.progress = tokenizer, max_tool_calls, progress
        self.compiled = compile_decode
        self.decode_fn = _compiled_decode() if compile_decode else _forward_last
        self.seqs = [_Sequence(sid=p * n + j, budget=min(max_new_tokens, cfg.max_seq_len - len(ids)))
                     for p, ids in enumerate(prompts) for j in range(n)]
        if tokenizer is not None and (stop or tools is not None):
            for s in self.seqs:
                s.watcher = TextWatcher(tokenizer, s.tokens, stop, watch_code=tools is not None)
        self.n_rows = len(self.seqs) if max_batch_size is None else min(max_batch_size, len(self.seqs))
        self.queue = deque(self.seqs)  # sequences not admitted to a row yet, in order
        # Prefilled prompts whose samples still wait in the queue: prompt -> (k, v, last logits).
        self.stash: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.tools = ToolRunner(tools, max_workers=min(32, self.n_rows)) if tools is not None else None
        self.waiting: list[_Sequence] = []  # rows whose tool call runs
        self.logprob_chunks: list[torch.Tensor] = []
        self.n_logprobs = 0
        longest = max(len(p) for p in prompts)
        slack = 64 if tools is not None else 0  # room for output blocks before the slots need packing
        # A stream of sequences through fewer rows keeps advancing the slot counter: room for about two
        # lifetimes of a sequence between packings.
        lifetimes = 1 if self.n_rows == len(self.seqs) else 2
        self.max_len = min(cfg.max_seq_len, lifetimes * (longest + max_new_tokens) + slack)
        # Sliding-window masks (sdpa) count slots, not positions: when the window can bind, a row's
        # real slots must stay contiguous.
        self.keep_gap_free = cfg.sliding_window is not None and cfg.sliding_window < self.max_len
        self.rows: list[_Sequence] = []
        self.steps = 0  # forward calls, for the progress line

    # ---- the loop

    def run(self) -> list[list[Completion]]:
        try:
            self.cache = KVCache(self.cfg, self.n_rows, self.max_len, self.device, self.dtype)
            if not self.compiled:
                self.cache.decode_weights = self.model.decode_weights()
            self.rows = [self.queue.popleft() for _ in range(self.n_rows)]
            self._admit(list(range(self.n_rows)))
            last_report = start = time.monotonic()
            while True:
                self._collect_tool_results(block=False)
                self._refill()
                self._drop_finished()
                if not self.rows:
                    break
                if not any(s.pending for s in self.rows):
                    self._collect_tool_results(block=True)  # every live row waits for its tool
                    continue
                self._step()
                if self.progress and time.monotonic() - last_report >= PROGRESS_EVERY:
                    last_report = time.monotonic()
                    self._report(last_report - start)
        finally:
            if self.tools is not None:
                self.tools.close()
        return self._completions()

    # ---- admission: prefill, then a row of the cache

    def _refill(self) -> None:
        """Continuous batching: give every finished row to the next waiting sequence at once."""
        while self.queue:
            free = [i for i, s in enumerate(self.rows) if s.finish_reason is not None]
            if not free:
                return
            slots = free[:len(self.queue)]
            for i in slots:
                self.rows[i] = self.queue.popleft()
            self._admit(slots)  # a sequence may finish on its first token: loop

    def _prefill(self, prompts: list[int]) -> None:
        """One left-padded forward over prompts (indices), each once, into a cache of their own;
        their keys, values and last logits go to the stash until every sample of them is admitted."""
        ids = [self.prompts[p] for p in prompts]
        longest = max(len(p) for p in ids)
        tokens = torch.tensor([[0] * (longest - len(p)) + p for p in ids], device=self.device)
        mask = None
        if any(len(p) < longest for p in ids):
            mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in ids], device=self.device)
        cache = KVCache(self.cfg, len(ids), longest, self.device, self.dtype)
        logits = _forward_last(self.model, tokens, mask, cache)  # (P, V)
        self.steps += 1
        for i, (p, prompt) in enumerate(zip(prompts, ids)):
            self.stash[p] = (cache.k[:, i, longest - len(prompt):], cache.v[:, i, longest - len(prompt):], logits[i])

    def _admit(self, slots: list[int]) -> None:
        """The sequences now in rows `slots` start: their prompts' keys are written right-aligned to
        end at the current slot (positions live in the rotated keys, so only slot order matters),
        then their first tokens are drawn from the prefill's logits."""
        seqs = [self.rows[i] for i in slots]
        new_prompts = sorted({s.sid // self.n for s in seqs} - self.stash.keys())
        if new_prompts:
            self._prefill(new_prompts)
        cache = self.cache
        _make_room(cache, max(self.stash[s.sid // self.n][0].shape[1] for s in seqs))
        end = cache.pos
        for i, s in zip(slots, seqs):
            k, v, _ = self.stash[s.sid // self.n]
            cache.k[:, i, end - k.shape[1]:end] = k
            cache.v[:, i, end - k.shape[1]:end] = v
            cache.key_valid[i, :end] = False
            cache.key_valid[i, end - k.shape[1]:end] = True
            cache.n_seen[i] = k.shape[1]
        cache.has_padding = not bool(cache.key_valid[:, :end].all())
        logits = torch.stack([self.stash[s.sid // self.n][2] for s in seqs])
        if self.temperature > 0:  # each sequence's whole random stream at once: one hash per admission
            ids = torch.tensor([s.sid for s in seqs])[:, None]
            streams = sample_uniforms(self.seed, ids, torch.arange(max(s.budget for s in seqs))[None])
            for s, u in zip(seqs, streams.tolist()):
                s.uniforms = u
        waiting_prompts = {q.sid // self.n for q in self.queue}
        for p in [p for p in self.stash if p not in waiting_prompts]:
            del self.stash[p]
        self._draw(seqs, logits)

    def _step(self) -> None:
        rows, cache = self.rows, self.cache
        T = max(len(s.pending) for s in rows)
        if self.keep_gap_free:
            # A row feeding less than T would get a gap inside the chunk: tool rows catch up one token
            # a step, and rows that skipped steps (waiting for a tool) are packed before they feed again.
            T = 1
            if any(s.gapped and s.pending for s in rows):
                self._pack()
        if cache.pos + T > cache.max_len:
            self._pack()
        T = min(T, cache.max_len - cache.pos)
        assert T >= 1, f"no free cache slot after packing (pos {cache.pos}, max_len {cache.max_len})"
        feeds = [s.pending[:T] for s in rows]
        for s, f in zip(rows, feeds):
            del s.pending[:T]
            s.gapped |= len(f) < T
        if all(len(f) == T for f in feeds):
            tokens, mask = torch.tensor(feeds, device=self.device), None
        else:  # right-align each row's tokens; the rest is padding this step
            tokens = torch.tensor([[0] * (T - len(f)) + f for f in feeds], device=self.device)
            mask = torch.tensor([[0] * (T - len(f)) + [1] * len(f) for f in feeds], device=self.device)
        fn = self.decode_fn if T == 1 else _forward_last
        logits = fn(self.model, tokens, mask, cache)  # (B, V)
        self.steps += 1
        ready = [i for i, (s, f) in enumerate(zip(rows, feeds)) if f and not s.pending and s.future is None]
        if ready:
            if len(ready) < logits.shape[0]:
                logits = logits[torch.tensor(ready, device=logits.device)]
            self._draw([rows[i] for i in ready], logits)

    def _draw(self, rows: list[_Sequence], logits: torch.Tensor) -> None:
        """Draw the next token of sequences `rows` from their logits (len(rows), V)."""
        if self.temperature == 0:
            tok = logits.argmax(-1)
            lp = None
            if self.return_logprobs:
                lp = logits.gather(-1, tok[:, None]).squeeze(-1) - logits.logsumexp(-1)
        else:
            logp = processed_logprobs(logits, self.temperature, self.top_k, self.top_p)
            uniforms = torch.tensor([s.uniforms[len(s.tokens)] for s in rows], dtype=torch.float64,
                                    device=logits.device)
            tok = sample_from_logprobs(logp, uniforms)
            lp = logp.gather(-1, tok[:, None]).squeeze(-1) if self.return_logprobs else None
        base = self.n_logprobs
        if lp is not None:
            self.logprob_chunks.append(lp)
            self.n_logprobs += len(rows)
        for k, (s, t) in enumerate(zip(rows, tok.tolist())):
            self._accept(s, t, base + k)

    def _accept(self, s: _Sequence, token: int, lp_index: int) -> None:
        s.tokens.append(token)
        s.sampled.append(True)
        s.lp_index.append(lp_index)
        if token in self.eos_ids:
            return self._finish(s, "eos")
        if s.watcher is not None:
            s.watcher.push()
            if s.watcher.hit_stop:
                return self._finish(s, "stop")
            code = s.watcher.closed_code
            if code is not None:
                if s.tool_calls >= self.max_tool_calls:
                    return self._finish(s, "tool_limit")
                if len(s.tokens) < s.budget:
                    s.tool_calls += 1
                    s.future = self.tools.submit(s.sid, code)
                    self.waiting.append(s)
        if len(s.tokens) >= s.budget:
            return self._finish(s, "length")
        s.pending.append(token)

    def _collect_tool_results(self, block: bool) -> None:
        if not self.waiting:
            return
        if block:
            wait([s.future for s in self.waiting], return_when=FIRST_COMPLETED)
        still = []
        for s in self.waiting:
            if not s.future.done():
                still.append(s)
                continue
            result, s.future = s.future.result(), None
            out = self.tokenizer.encode(s.watcher.output_text(result), bos=False)
            out = out[:s.budget - len(s.tokens)]
            s.tokens += out
            s.sampled += [False] * len(out)
            s.lp_index += [-1] * len(out)
            s.watcher.push_tool_output()
            if len(s.tokens) >= s.budget:
                self._finish(s, "length")
            else:
                s.pending += out
        self.waiting = still

    def _pack(self) -> None:
        _pack_slots(self.cache)
        for s in self.rows:
            s.gapped = False

    def _finish(self, s: _Sequence, reason: str) -> None:
        s.finish_reason = reason
        s.pending.clear()
        s.uniforms = []
        if self.tools is not None:
            self.tools.release(s.sid)

    def _drop_finished(self) -> None:
        if self.queue:
            return  # the finished rows are refilled instead
        done = sum(s.finish_reason is not None for s in self.rows)
        if done == 0 or done * 8 < len(self.rows):
            return  # compacting copies the cache: wait until 1/8 of the rows are idle
        keep = [i for i, s in enumerate(self.rows) if s.finish_reason is None]
        if keep:
            _keep_rows(self.cache, torch.tensor(keep, device=self.device))
        self.rows = [self.rows[i] for i in keep]

    def _report(self, elapsed: float) -> None:
        done = sum(s.finish_reason is not None for s in self.seqs)
        made = sum(len(s.tokens) for s in self.seqs)
        left = max((s.budget - len(s.tokens) for s in self.rows), default=0)
        steps = max(self.steps, 1)
        print(f"generate: {done}/{len(self.seqs)} sequences done, {made} tokens, {made / elapsed:.0f} tok/s, "
              f"at most {left} steps (~{left * elapsed / steps:.0f}s) left", file=sys.stderr, flush=True)

    def _completions(self) -> list[list[Completion]]:
        logprobs = torch.cat(self.logprob_chunks).tolist() if self.logprob_chunks else []
        out = []
        for s in self.seqs:
            c = Completion(tokens=s.tokens, finish_reason=s.finish_reason, sampled_mask=s.sampled,
                           tool_calls=s.tool_calls)
            if self.tokenizer is not None:
                c.text = self.tokenizer.decode(s.tokens)
            if self.return_logprobs:
                c.logprobs = [logprobs[i] if i >= 0 else 0.0 for i in s.lp_index]
            out.append(c)
        return [out[p * self.n:(p + 1) * self.n] for p in range(len(self.prompts))]


# --------------------------------------------------------------------------- the entry point


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)  # numpy integers too


def default_stop_ids(tokenizer: Any) -> list[int]:
    """The ids generation stops on when `eos_id` is not given: the tokenizer's `stop_ids` (a mathlm
    Tokenizer: its `eos_ids`, plus the end-of-turn token in chat style), else `eos_ids`, else `eos_id`."""
    if tokenizer is None:
        return []
    for name in ("stop_ids", "eos_ids"):
        ids = getattr(tokenizer, name, None)
        if ids:
            return list(ids)
    return [] if getattr(tokenizer, "eos_id", None) is None else [tokenizer.eos_id]


def _token_ids(prompts: Sequence[Any], tokenizer: Any, vocab_size: int, max_seq_len: int) -> list[list[int]]:
    if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise ValueError(f"prompts must be a list of token-id lists or strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: give at least one prompt")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError(f"prompt {i} is a string; pass tokenizer= to encode it, or give token ids")
            ids = tokenizer.encode(p)
        else:
            ids = p.tolist() if hasattr(p, "tolist") else p  # a tensor or numpy array of ids
            if not isinstance(ids, Sequence) or not all(_is_int(t) for t in ids):
                raise ValueError(f"prompt {i} must be a list of int token ids or a string, got {p!r:.80}")
            ids = [int(t) for t in ids]
        if len(ids) == 0:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
        if len(ids) >= max_seq_len:
            raise ValueError(f"prompt {i} has {len(ids)} tokens: the context (max_seq_len={max_seq_len}) "
                             f"leaves no room for a new token")
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"prompt {i} holds token id {bad[0]}, outside the vocabulary [0, {vocab_size})")
        out.append(ids)
    return out


@torch.inference_mode()
def generate(model: Transformer, prompts: Sequence[Sequence[int] | str], max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, n: int = 1,
             stop: str | Sequence[str] | None = None, eos_id: int | Sequence[int] | None = None,
             seed: int | None = None, return_logprobs: bool = False, tokenizer: Any = None,
             tools: Callable[[], Any] | None = None, max_tool_calls: int = 4, compile_decode: bool = False,
             progress: bool = False, max_batch_size: int | None = None) -> list[list[Completion]]:
    """Sample `n` completions of each prompt; returns one list of n `Completion`s per prompt.

    prompts: token-id lists of any lengths, or strings when `tokenizer` is given (encoded as
        `tokenizer.encode(text)`, i.e. BOS + text; use `tokenizer.format_prompt` for the Q/A template).
    max_new_tokens: the most completion tokens, tool output included (also capped by max_seq_len).
    temperature: 0 = greedy (top_k/top_p are then ignored). top_k, top_p: filters, top-k first.
    stop: strings that end a sequence once its decoded text contains one (needs `tokenizer`); the
        tokens up to and including the one completing the stop string are kept (finish_reason "stop").
    eos_id: token id(s) that end a sequence (kept as its last token); default `default_stop_ids(tokenizer)`
        (every EOS of a mathlm Tokenizer, and its chat end-of-turn token in chat style), none without a
        tokenizer (pass `model.config.eos_id` explicitly).
    seed: fixes the samples (counter-based: independent of batch composition); None draws one from
        torch's global generator.
    return_logprobs: fill `Completion.logprobs` (convention in the module docstring).
    tools: a factory of sandbox sessions (`lambda: Session(timeout=2)`), one per sequence: a python
        block the model closes runs in the sequence's session and its output block is appended
        (`sampled_mask` False there); at most `max_tool_calls` blocks run, the next one ends the
        sequence with finish_reason "tool_limit". Needs `tokenizer`.
    compile_decode: run the single-token decode steps through torch.compile (meant for GPUs).
    progress: print progress (sequences done, tokens/s, steps left) to stderr every PROGRESS_EVERY s.
    max_batch_size: continuous batching: at most this many sequences in flight; a row whose sequence
        ends takes the next waiting one at once (None: every sequence is a row from the start). The
        results do not depend on it (greedy up to last-bit near-ties; samples are counter-based).
    """
    cfg = model.config
    V = cfg.vocab_size
    ids = _token_ids(prompts, tokenizer, V, cfg.max_seq_len)
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens!r}) must be a positive integer")
    if not isinstance(temperature, (int, float)) or not temperature >= 0 or math.isinf(temperature):
        raise ValueError(f"temperature ({temperature!r}) must be a finite number >= 0 (0 = greedy)")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k ({top_k!r}) must be None or an integer >= 1")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p ({top_p!r}) must be None or in (0, 1]")
    if not _is_int(n) or n < 1:
        raise ValueError(f"n ({n!r}) must be an integer >= 1")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"stop ({stop!r}) must be a string or a list of non-empty strings")
    if stops and tokenizer is None:
        raise ValueError("stop strings need tokenizer= to decode the text they are searched in")
    if eos_id is None:
        eos_id = default_stop_ids(tokenizer)
    eos_ids = list(eos_id) if isinstance(eos_id, (list, tuple, set, frozenset)) else [eos_id]
    for e in eos_ids:
        if not _is_int(e) or not 0 <= e < V:
            raise ValueError(f"eos_id ({e!r}) must be a token id in [0, {V})")
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    elif not _is_int(seed) or seed < 0:
        raise ValueError(f"seed ({seed!r}) must be None or an integer >= 0")
    if tools is not None:
        if not callable(tools):
            raise ValueError(f"tools ({tools!r}) must be a zero-argument factory of sandbox sessions, "
                             f"e.g. lambda: Session(timeout=2)")
        if tokenizer is None:
            raise ValueError("tools need tokenizer= to find python blocks in the text and encode their output")
    if not _is_int(max_tool_calls) or max_tool_calls < 0:
        raise ValueError(f"max_tool_calls ({max_tool_calls!r}) must be an integer >= 0")
    if max_batch_size is not None and (not _is_int(max_batch_size) or max_batch_size < 1):
        raise ValueError(f"max_batch_size ({max_batch_size!r}) must be None or an integer >= 1")
    engine = _Engine(model, ids, int(max_new_tokens), n=int(n), temperature=float(temperature),
                     top_k=None if top_k is None else int(top_k), top_p=top_p, stop=stops,
                     eos_ids=frozenset(int(e) for e in eos_ids), seed=int(seed), return_logprobs=return_logprobs,
                     tokenizer=tokenizer, tools=tools, max_tool_calls=max_tool_calls,
                     compile_decode=compile_decode, progress=progress,
                     max_batch_size=None if max_batch_size is None else int(max_batch_size))
    return engine.run()


class TextCompleter:
    """`prompt -> completion` text with a mathlm model (BOS + the raw prompt, no template); `batch`
    samples many prompts in one `generate` call. Self-instruct's `generate_fn` is one of these."""

    def __init__(self, model: Transformer, tokenizer: Any, max_new_tokens: int = 128, temperature: float = 1.0,
                 seed: int = 0, stop: str | Sequence[str] | None = None):
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.temperature, self.seed, self.stop = temperature, seed, stop

    def __call__(self, prompt: str) -> str:
        return self.batch([prompt])[0]

    def batch(self, prompts: Sequence[str]) -> list[str]:
        room = self.model.config.max_seq_len - self.max_new_tokens - 1
        ids = [self.tokenizer.encode(p)[-room:] for p in prompts]  # keep the end of an over-long prompt
        self.seed += 1  # a new draw on every call
        outs = generate(self.model, ids, self.max_new_tokens, temperature=self.temperature, seed=self.seed,
                        stop=self.stop, tokenizer=self.tokenizer)
        return [o[0].text for o in outs]
