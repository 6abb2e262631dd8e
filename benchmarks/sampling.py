"""Generation throughput of mathlm.sampling.generate against two baselines in the same run.

    python benchmarks/sampling.py                          # tiny and small presets, batch 1/16/64
    python benchmarks/sampling.py --presets tiny --batches 16 --new-tokens 128 --threads 1

Baselines, on the same weights (a random model of the preset, written with `save_hf_checkpoint`
and read back by `load_hf_checkpoint` for mathlm and by transformers' `from_pretrained` for HF):
- `hf`: Hugging Face transformers `generate`, greedy (`do_sample=False`), with its KV cache.
- `recompute`: a loop that runs the full forward over prompt + tokens so far for every new token
  (no cache), argmax: what decoding costs without a cache.

Figures (tokens/s; every prompt has --prompt-len tokens, every sequence gets exactly --new-tokens):
- prefill = batch * prompt_len / t(generate 1 token)
- decode  = batch * (new_tokens - 1) / (t(generate new_tokens) - t(generate 1 token))
Each timing is the best of --repeats runs, ours and HF's interleaved so both see the same load (the
2-core CPU is shared). `ours sampled` is mathlm at temperature 1 with top-p 0.95 (same work plus the
sampling). `agree` is the share of HF's greedy sequences that mathlm reproduces token for token
(random weights give near-ties, so a last-bit difference can flip a token and what follows).
Writes JSON (default benchmarks/results/sampling.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

from mathlm import ModelConfig, Transformer, load_hf_checkpoint, save_hf_checkpoint
from mathlm.sampling import generate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[float, object]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def ours(model, prompts: torch.Tensor, new_tokens: int, sampled: bool = False):
    kw = dict(temperature=1.0, top_p=0.95, seed=0) if sampled else dict(temperature=0)
    out = generate(model, prompts.tolist(), new_tokens, **kw)
    return [cs[0].tokens for cs in out]


def hf_generate(hf, prompts: torch.Tensor, new_tokens: int):
    # EOS is off in the generation config (see bench_preset): every sequence gets new_tokens tokens.
    out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                      do_sample=False, pad_token_id=0)
    assert out.shape[1] == prompts.shape[1] + new_tokens, "HF stopped early"
    return out[:, prompts.shape[1]:].tolist()


@torch.inference_mode()
def recompute(model, prompts: torch.Tensor, new_tokens: int):
    ids = prompts
    for _ in range(new_tokens):
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[:, prompts.shape[1]:].tolist()


def rates(fns: dict, prompts: torch.Tensor, new_tokens: dict, repeats: int, device) -> dict:
    """{name: (prefill tok/s, decode tok/s, tokens)}; best of `repeats`, the engines interleaved."""
    B, P = prompts.shape
    t1 = {k: float("inf") for k in fns}
    tn = dict(t1)
    outputs = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, _ = timed(lambda: fn(prompts, 1), device)
            t1[name] = min(t1[name], t)
            t, outputs[name] = timed(lambda: fn(prompts, new_tokens[name]), device)
            tn[name] = min(tn[name], t)
    return {k: (B * P / t1[k], B * (new_tokens[k] - 1) / max(tn[k] - t1[k], 1e-9), outputs[k]) for k in fns}


def bench_preset(preset: str, args, device, dtype) -> list[dict]:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset)
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_checkpoint(Transformer(cfg), Path(tmp) / "ckpt")
        model = load_hf_checkpoint(Path(tmp) / "ckpt", dtype=dtype, device=device).eval()
        hf = AutoModelForCausalLM.from_pretrained(Path(tmp) / "ckpt", dtype=dtype).to(device).eval()
    hf.generation_config.eos_token_id = None  # mathlm's generate has no EOS unless given one
    n_new = args.new_tokens
    fns = {
        "ours": lambda p, k: ours(model, p, k),
        "ours sampled": lambda p, k: ours(model, p, k, sampled=True),
        "hf": lambda p, k: hf_generate(hf, p, k),
        "recompute": lambda p, k: recompute(model, p, k),
    }
    rows = []
    for B in args.batches:
        prompts = torch.randint(3, cfg.vocab_size, (B, args.prompt_len), device=device)
        # The no-cache loop is quadratic: fewer new tokens keep it to seconds.
        lengths = {k: (max(2, n_new // 4) if k == "recompute" else n_new) for k in fns}
        r = rates(fns, prompts, lengths, args.repeats, device)
        agree = sum(a == b for a, b in zip(r["ours"][2], r["hf"][2])) / B
        row = {"preset": preset, "batch": B, "prompt_len": args.prompt_len, "new_tokens": n_new,
               "recompute_new_tokens": lengths["recompute"], "agree_with_hf": agree}
        for k, (pre, dec, _) in r.items():
            row[f"{k.replace(' ', '_')}_prefill_tok_s"] = pre
            row[f"{k.replace(' ', '_')}_decode_tok_s"] = dec
        row["decode_vs_hf"] = row["ours_decode_tok_s"] / row["hf_decode_tok_s"]
        row["decode_vs_recompute"] = row["ours_decode_tok_s"] / row["recompute_decode_tok_s"]
        row["prefill_vs_hf"] = row["ours_prefill_tok_s"] / row["hf_prefill_tok_s"]
        rows.append(row)
        print(f"{preset:>6} {B:>5} | {row['ours_prefill_tok_s']:>9.0f} {row['hf_prefill_tok_s']:>9.0f} "
              f"{row['recompute_prefill_tok_s']:>9.0f} | {row['ours_decode_tok_s']:>8.0f} "
              f"{row['ours_sampled_decode_tok_s']:>8.0f} {row['hf_decode_tok_s']:>8.0f} "
              f"{row['recompute_decode_tok_s']:>9.0f} | {row['decode_vs_hf']:>5.2f}x {row['decode_vs_recompute']:>6.1f}x "
              f"| {agree:>5.2f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,small", help="comma-separated ModelConfig presets")
    ap.add_argument("--batches", default="1,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="benchmarks/results/sampling.json")
    args = ap.parse_args()
    if args.new_tokens < 2:
        ap.error(f"--new-tokens ({args.new_tokens}) must be >= 2: decode speed needs one token after the first")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"generation throughput, tokens/s ({machine}, {dtype}); prompt {args.prompt_len}, {args.new_tokens} new tokens, "
          f"best of {args.repeats}")
    print(f"{'preset':>6} {'batch':>5} | {'prefill:':<9} {'hf':>9} {'recompute':>9} | {'decode:':<8} {'sampled':>8} "
          f"{'hf':>8} {'recompute':>9} | {'vs hf':>6} {'vs rec':>7} | agree")
    rows = []
    for preset in args.presets.split(","):
        rows += bench_preset(preset, args, device, dtype)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "torch": torch.__version__, "device": str(device),
                               "dtype": str(dtype), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
