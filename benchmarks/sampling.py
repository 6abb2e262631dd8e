"""Rollout speed of mathlm.sampling.generate: every ratio of the rollouts issue, measured in one process.

    python benchmarks/sampling.py                      # all sections, 2 torch threads, 5 rounds
    python benchmarks/sampling.py --sections hf --rounds 7 --threads 1
    python benchmarks/sampling.py --compile            # also torch.compile of the decode step (minutes)

Every comparison runs its contenders interleaved (A, B, A, B, ... for --rounds rounds) in this
process and reports the median time of each, so that both see the same load on a shared machine;
the load average is recorded at the start and the end. Sections:

- `hf`: batch 16, prompts of 48 tokens, 96 new tokens (EOS off), on the demo-sized model (preset
  `tiny`: dim 128, 4 layers) and on a dim-256 one, against Hugging Face transformers' `generate`
  on the same weights (written by `save_hf_checkpoint`, read by `from_pretrained`): greedy against
  greedy, sampled (T=1) against HF sampled (T=1, top_k=0); and ours sampled / greedy and ours
  sampled with `return_logprobs=True` / greedy. `agree` is the share of HF's greedy sequences that
  mathlm reproduces token for token.
- `continuous`: 128 prompts of 16-64 tokens whose greedy completions end (EOS) at very different
  lengths, through 16 rows: one `generate(..., max_batch_size=16)` call against static chunks of 16
  prompts (one call each: what the callers did before), with identical outputs checked.
- `tools`: sequences/s with python blocks run in real sandbox sessions (`mathlm.sandbox.Session`), on
  an RFT-shaped workload: 32 questions x 4 samples at T=0.7, each sample writing prose of its own
  length, a python block, then the answer. The model is a random demo-sized transformer whose
  logits get a bigram bias towards a script (so it writes blocks without a trained checkpoint);
  continuous batching (16 rows, tool calls overlapping the other rows' decode steps) against
  static chunks of 16 sequences.
- `compile` (with --compile): `compile_decode=True` against eager on the demo-sized model.

Writes JSON (default benchmarks/results/sampling.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from mathlm import ModelConfig, Transformer, load_hf_checkpoint, save_hf_checkpoint
from mathlm.sampling import generate

B, PROMPT_LEN, NEW_TOKENS = 16, 48, 96


def load() -> float:
    return os.getloadavg()[0]


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median seconds per contender over `rounds` interleaved rounds (after one warm-up each), and
    each contender's last output."""
    outputs = {k: f() for k, f in fns.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            outputs[k] = f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def model_pair(dim: int):
    """A random model of the demo's shape at width `dim`, in mathlm and in HF transformers."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("tiny", dim=dim, hidden_dim=3 * dim)
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_checkpoint(Transformer(cfg), Path(tmp) / "ckpt")
        ours = load_hf_checkpoint(Path(tmp) / "ckpt").eval()
        hf = AutoModelForCausalLM.from_pretrained(Path(tmp) / "ckpt").eval()
    hf.generation_config.eos_token_id = None  # every sequence gets NEW_TOKENS tokens on both sides
    return ours, hf


# --------------------------------------------------------------------------- against HF generate


def section_hf(args) -> list[dict]:
    rows = []
    for dim in (128, 256):
        ours, hf = model_pair(dim)
        prompts = torch.randint(3, ours.config.vocab_size, (B, PROMPT_LEN))
        ids = prompts.tolist()

        def hf_gen(**kw):
            with torch.inference_mode():
                out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=NEW_TOKENS,
                                  pad_token_id=0, **kw)
            return out[:, PROMPT_LEN:].tolist()

        fns = {
            "ours greedy": lambda: [c[0].tokens for c in generate(ours, ids, NEW_TOKENS, temperature=0)],
            "hf greedy": lambda: hf_gen(do_sample=False),
            "ours sampled": lambda: generate(ours, ids, NEW_TOKENS, temperature=1.0, seed=0),
            "hf sampled": lambda: hf_gen(do_sample=True, temperature=1.0, top_k=0),
            "ours logprobs": lambda: generate(ours, ids, NEW_TOKENS, temperature=1.0, seed=0, return_logprobs=True),
        }
        if dim != 128:  # the issue asks greedy only of the matmul-bound model
            fns = {k: v for k, v in fns.items() if "greedy" in k}
        before = load()
        t, out = interleaved(fns, args.rounds)
        row = {"dim": dim, "batch": B, "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS,
               "ms_per_step": {k: 1000 * v / NEW_TOKENS for k, v in t.items()},
               "greedy_vs_hf": t["hf greedy"] / t["ours greedy"],
               "agree_with_hf": sum(a == b for a, b in zip(out["ours greedy"], out["hf greedy"])) / B,
               "load": [before, load()]}
        if dim == 128:
            row.update(sampled_vs_hf=t["hf sampled"] / t["ours sampled"],
                       sampled_over_greedy=t["ours greedy"] / t["ours sampled"],
                       logprobs_over_greedy=t["ours greedy"] / t["ours logprobs"])
        rows.append(row)
        steps = "  ".join(f"{k} {v:.2f}" for k, v in row["ms_per_step"].items())
        print(f"dim {dim}: ms/step  {steps}", flush=True)
        print(f"dim {dim}: greedy vs HF {row['greedy_vs_hf']:.2f}x (agree {row['agree_with_hf']:.2f})"
              + (f", sampled vs HF {row['sampled_vs_hf']:.2f}x, sampled / greedy {row['sampled_over_greedy']:.2f}x, "
                 f"+logprobs / greedy {row['logprobs_over_greedy']:.2f}x" if dim == 128 else "")
              + f"  [load {before:.1f} -> {load():.1f}]", flush=True)
    return rows


# --------------------------------------------------------------------------- continuous batching


def varied_eos(model, prompts: list[list[int]], new_tokens: int) -> tuple[list[int], list[int]]:
    """EOS ids picked from the free-running greedy outputs so that the completions end at very
    different lengths: the token whose first occurrences are most spread out, then more tokens until
    half the sequences end before a third of the budget. Returns (eos ids, lengths)."""
    free = [c[0].tokens for c in generate(model, prompts, new_tokens, temperature=0, max_batch_size=32)]

    def lengths(eos):
        return [next((j + 1 for j, t in enumerate(f) if t in eos), len(f)) for f in free]

    eos: list[int] = []
    candidates = sorted({t for f in free for t in f})
    while statistics.median(lengths(eos)) > new_tokens / 3 and len(eos) < 8:
        best = max(candidates, key=lambda t: statistics.pstdev(lengths(eos + [t])) if t not in eos else -1)
        eos.append(best)
    return eos, lengths(eos)


def section_continuous(args) -> dict:
    model, _ = model_pair(128)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 1000, (int(n),), generator=g).tolist() for n in torch.randint(16, 65, (128,), generator=g)]
    eos, lengths = varied_eos(model, prompts, NEW_TOKENS)

    def static():
        out = []
        for s in range(0, len(prompts), B):
            out += generate(model, prompts[s:s + B], NEW_TOKENS, temperature=0, eos_id=eos)
        return [c[0].tokens for c in out]

    def continuous():
        return [c[0].tokens for c in generate(model, prompts, NEW_TOKENS, temperature=0, eos_id=eos, max_batch_size=B)]

    before = load()
    t, out = interleaved({"static chunks": static, "continuous": continuous}, args.rounds)
    row = {"prompts": len(prompts), "rows": B, "new_tokens": NEW_TOKENS, "eos_ids": eos,
           "lengths": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
           "seconds": t, "speedup": t["static chunks"] / t["continuous"], "identical": out["static chunks"] == out["continuous"],
           "load": [before, load()]}
    print(f"continuous batching: 128 prompts through {B} rows, completion lengths {min(lengths)}-{max(lengths)} "
          f"(median {row['lengths']['median']}): {row['speedup']:.2f}x static chunks of {B} "
          f"({t['static chunks']:.2f}s vs {t['continuous']:.2f}s), identical outputs: {row['identical']}"
          f"  [load {before:.1f} -> {load():.1f}]", flush=True)
    return row


# --------------------------------------------------------------------------- tools


class PieceTokenizer:
    """Whole pieces (the script's) and single characters; ids 0 pad, 1 bos, 2 eos."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def __init__(self, pieces: list[str]):
        chars = [chr(c) for c in range(32, 127)] + ["\n"]
        self.pieces = ["<pad>", "<bos>", "<eos>"] + pieces + [c for c in chars if c not in pieces]
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


class BigramBias(nn.Module):
    """lm_head + a bias towards the script's successor of each input token."""

    def __init__(self, head: nn.Linear, table: torch.Tensor, seen: dict):
        super().__init__()
        self.head, self.table, self.seen = head, table, seen

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        tokens = self.seen["tokens"]
        bias = self.table[tokens] if hidden.dim() == 3 else self.table[tokens[:, -1]]
        return self.head(hidden) + bias


class ScriptedTransformer(Transformer):
    def __init__(self, cfg: ModelConfig, table: torch.Tensor):
        super().__init__(cfg)
        self.seen: dict = {}
        self.lm_head = BigramBias(self.lm_head, table, self.seen)

    def forward(self, tokens, **kwargs):
        self.seen["tokens"] = tokens
        return super().forward(tokens, **kwargs)


def rft_workload(n_questions: int):
    """Question k: prose of 3k mod 40 words, then a python block (the opener is shared by every question,
    so which program follows is drawn), then the answer and EOS."""
    words = [f" w{i}" for i in range(40)]
    pieces = ["```python\n", "\n```", "\n```\n", "The answer.", *words] + [f"Q{k}" for k in range(n_questions)] \
        + [f"print({k}*7)" for k in range(n_questions)] + [f"S{k}" for k in range(n_questions)]
    tok = PieceTokenizer(pieces)
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("tiny", vocab_size=len(tok))
    table = torch.zeros(cfg.vocab_size, cfg.vocab_size)
    chains = [["\n```\n", "The answer.", "<eos>"]]
    for k in range(n_questions):
        n_words = (3 * k) % 40
        start = 40 - n_words  # each question enters the word chain at its own point
        chains.append([f"Q{k}", f"S{k}"] + words[start:] + ["```python\n", f"print({k}*7)", "\n```"]
                      if n_words else [f"Q{k}", f"S{k}", "```python\n", f"print({k}*7)", "\n```"])
    for chain in chains:
        ids = [tok.index[p] for p in chain]
        for a, b in zip(ids, ids[1:]):
            table[a, b] = 12.0
    model = ScriptedTransformer(cfg, table).eval()
    prompts = [tok.encode(f"Q{k}") for k in range(n_questions)]
    return model, tok, prompts


def section_tools(args) -> dict:
    from mathlm.sandbox import Session

    model, tok, prompts = rft_workload(32)
    n = 4
    kw = dict(temperature=0.7, n=n, seed=0, tokenizer=tok, tools=lambda: Session(timeout=2.0), max_tool_calls=2)

    def static():
        out = []
        for s in range(0, len(prompts), B // n):
            out += generate(model, prompts[s:s + B // n], 160, **kw)
        return out

    def continuous():
        return generate(model, prompts, 160, max_batch_size=B, **kw)

    before = load()
    t, out = interleaved({"static chunks": static, "continuous": continuous}, args.rounds)
    done = out["continuous"]
    seqs = len(prompts) * n
    calls = sum(c.tool_calls for cs in done for c in cs)
    lengths = sorted(len(c.tokens) for cs in done for c in cs)
    row = {"sequences": seqs, "rows": B, "tool_calls": calls, "lengths": [lengths[0], lengths[len(lengths) // 2], lengths[-1]],
           "seconds": t, "seq_per_s": {k: seqs / v for k, v in t.items()}, "speedup": t["static chunks"] / t["continuous"],
           "load": [before, load()]}
    print(f"tools: {seqs} sequences, {calls} python blocks run, lengths {lengths[0]}-{lengths[-1]}: "
          f"continuous {row['seq_per_s']['continuous']:.1f} seq/s vs static chunks {row['seq_per_s']['static chunks']:.1f} "
          f"seq/s ({row['speedup']:.2f}x)  [load {before:.1f} -> {load():.1f}]", flush=True)
    return row


def section_compile(args) -> dict:
    model, _ = model_pair(128)
    ids = torch.randint(3, 1000, (B, PROMPT_LEN)).tolist()
    fns = {"eager": lambda: generate(model, ids, NEW_TOKENS, temperature=0),
           "compiled": lambda: generate(model, ids, NEW_TOKENS, temperature=0, compile_decode=True)}
    before = load()
    t, _ = interleaved(fns, args.rounds)
    row = {"seconds": t, "compiled_vs_eager": t["eager"] / t["compiled"], "load": [before, load()]}
    print(f"compile_decode: {row['compiled_vs_eager']:.2f}x eager  [load {before:.1f} -> {load():.1f}]", flush=True)
    return row


SECTIONS = {"hf": section_hf, "continuous": section_continuous, "tools": section_tools}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {list(SECTIONS)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--compile", action="store_true", help="also measure compile_decode=True")
    ap.add_argument("--out", default="benchmarks/results/sampling.json")
    args = ap.parse_args()
    sections = args.sections.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; valid: {list(SECTIONS)}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    machine = f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
    print(f"rollout speed ({machine}, torch {torch.__version__}, fp32); medians of {args.rounds} interleaved rounds; "
          f"load average at start {load():.1f}", flush=True)
    results = {"machine": machine, "torch": torch.__version__, "rounds": args.rounds}
    for name in sections:
        results[name] = SECTIONS[name](args)
    if args.compile:
        results["compile"] = section_compile(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
