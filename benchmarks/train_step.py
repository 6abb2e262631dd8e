"""Training-step throughput and MFU of the mathlm Transformer.

    python benchmarks/train_step.py                      # `small` preset, CPU fp32 (or GPU bf16)
    python benchmarks/train_step.py --preset tiny --batch 16 --seq 256

FLOPs per token (PaLM appendix B, `Transformer.flops_per_token`):
    6 * N_matmul + 12 * n_layers * n_heads * head_dim * seq_len
N_matmul = weights of all linear layers and the output head (not the embedding lookup); the
attention term counts QK^T and AV over the full square (causal not halved); backward = 2x forward.

MFU = achieved FLOP/s / peak, where the peak is measured in the same run: the best of a few large
square matmuls at the training dtype (fp32 on CPU, bf16 on GPU). That makes the figure a ratio
against this machine right now, not against a datasheet. Writes JSON (default
benchmarks/results/train_step.json).

The Trainer path (second table; `--no-trainer` skips it): `mathlm.train.Trainer.step` on the same
shapes — causal_lm_loss (chunked sft_loss), gradient clipping, AdamW, the metrics all-reduce and
sync — with gradient accumulation over `--grad-accum` micro-batches and with activation
checkpointing, each against the plain forward+backward above, measured in the same rounds. Its
tokens/s counts every micro-batch of a step; its MFU counts model FLOPs only (the recomputed
forward of activation checkpointing is not credited, as in PaLM's MFU), so checkpointing shows
up as the price it is.

On a shared CPU that other jobs overload, wall-clock rows swing by tens of percent; `--threads 1
--clock cpu` times every row (and the matmul peak) by this process' CPU time instead.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mathlm import ModelConfig, Transformer
from mathlm.train import TrainConfig, Trainer, causal_lm_loss


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# time.perf_counter (wall clock), or time.process_time with --clock cpu: on a shared, overloaded
# machine the CPU time this process used is what stays comparable between rows (use --threads 1).
CLOCK = time.perf_counter


def best_time(fn, device, warmup=2, reps=5) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        sync(device)
        times.append(CLOCK() - t0)
    return min(times)


def matmul_peak(device, dtype, n: int) -> float:
    """FLOP/s of an n x n x n matmul at `dtype`: the machine's practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = best_time(lambda: a @ b, device)
    return 2 * n ** 3 / t


def train_step_rate(model, batch, seq, device, dtype, reps) -> tuple[float, float]:
    """(tokens/s, seconds per step) of forward + cross-entropy + backward."""
    vocab = model.config.vocab_size
    x = torch.randint(0, vocab, (batch, seq), device=device)
    y = torch.randint(0, vocab, (batch, seq), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step():
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, vocab), y.view(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    t = best_time(step, device, warmup=2, reps=reps)
    return batch * seq / t, t


def trainer_step(cfg: ModelConfig, batch, seq, device, grad_accum: int, checkpointing: bool, out_dir: str):
    """A zero-argument function running one Trainer.step over `grad_accum` micro-batches of (batch, seq)."""
    cfg = copy.deepcopy(cfg)  # the trainer switches activation checkpointing on in the model's own config
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    tcfg = TrainConfig(max_steps=1 << 30, grad_accum=grad_accum, activation_checkpointing=checkpointing,
                       log_every=1 << 30, out_dir=out_dir)
    trainer = Trainer(model, tcfg, causal_lm_loss)
    x = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    y = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    micro = [{"tokens": x, "labels": y, "loss_mask": torch.ones_like(x, dtype=torch.bool)}] * grad_accum

    def step():
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer's progress line at step 1
            trainer.step(micro)
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 8 on GPU")
    p.add_argument("--seq", type=int, default=None, help="default: 256 on CPU, 4096 on GPU")
    p.add_argument("--reps", type=int, default=2, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="peak/step measurement rounds (best of each kept)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process' CPU time, for a loaded shared CPU (with --threads 1)")
    p.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step of the accumulation row")
    p.add_argument("--no-trainer", action="store_true", help="skip the Trainer.step rows")
    p.add_argument("--out", default="benchmarks/results/train_step.json")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    if args.clock == "cpu":
        if torch.cuda.is_available() or torch.get_num_threads() != 1:
            p.error("--clock cpu measures one CPU thread: run it on a CPU-only machine with --threads 1")
        CLOCK = time.process_time
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    batch = args.batch or 8
    seq = args.seq or (4096 if gpu else 256)
    cfg = ModelConfig.from_preset(args.preset, max_seq_len=max(seq, 16))
    if gpu:
        cfg.attn_backend = "flash"
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)  # fp32 master weights; bf16 autocast on GPU

    # Interleave the two measurements and keep the best of each: other processes on a shared
    # machine then slow both alike instead of skewing the ratio.
    variants = [] if args.no_trainer else [(1, False), (args.grad_accum, False), (1, True)]
    variants = list(dict.fromkeys(variants))  # --grad-accum 1 would repeat the first row
    scratch = tempfile.TemporaryDirectory()
    trainer_steps = [trainer_step(cfg, batch, seq, device, accum, ckpt, scratch.name) for accum, ckpt in variants]
    trainer_best = [(0.0, float("inf"))] * len(variants)  # (tokens/s, s/step)
    peak, tok_s, step_s = 0.0, 0.0, float("inf")
    for _ in range(args.rounds):
        peak = max(peak, matmul_peak(device, dtype, 8192 if gpu else 2048))
        r, t = train_step_rate(model, batch, seq, device, dtype, args.reps)
        if r > tok_s:
            tok_s, step_s = r, t
        for i, ((accum, _), run) in enumerate(zip(variants, trainer_steps)):
            t = best_time(run, device, warmup=1, reps=args.reps)
            if accum * batch * seq / t > trainer_best[i][0]:
                trainer_best[i] = (accum * batch * seq / t, t)
    scratch.cleanup()
    flops_tok = model.flops_per_token(seq)
    achieved = tok_s * flops_tok
    result = {
        "machine": torch.cuda.get_device_name() if gpu else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "device": device.type, "dtype": str(dtype), "preset": args.preset, "params": model.num_params(),
        "batch": batch, "seq": seq, "flops_per_token": flops_tok,
        "tokens_per_s": tok_s, "step_s": step_s,
        "achieved_tflops": achieved / 1e12, "peak_matmul_tflops": peak / 1e12, "mfu": achieved / peak,
        "torch": torch.__version__, "clock": args.clock,
        "trainer": [{"grad_accum": accum, "activation_checkpointing": ckpt, "tokens_per_step": accum * batch * seq,
                     "tokens_per_s": r, "step_s": t, "mfu": r * flops_tok / peak, "vs_forward_backward": r / tok_s}
                    for (accum, ckpt), (r, t) in zip(variants, trainer_best)],
    }
    print(f"{'preset':8s} {'params':>8s} {'B x T':>10s} {'tok/s':>9s} {'TFLOP/s':>8s} {'peak':>8s} {'MFU':>6s}")
    print(f"{args.preset:8s} {model.num_params() / 1e6:7.1f}M {f'{batch}x{seq}':>10s} {tok_s:9.0f} "
          f"{achieved / 1e12:8.3f} {peak / 1e12:8.3f} {achieved / peak:6.1%}")
    print(f"(peak = best {('8192' if gpu else '2048')}^3 matmul at {dtype} in this run; machine: {result['machine']})")
    if variants:
        print(f"\n{'path':24s} {'accum':>5s} {'act.ckpt':>8s} {'tok/s':>9s} {'MFU':>6s} {'vs fwd+bwd':>10s}")
        print(f"{'forward+backward':24s} {1:5d} {'off':>8s} {tok_s:9.0f} {achieved / peak:6.1%} {1:9.2f}x")
        for row in result["trainer"]:
            print(f"{'Trainer.step':24s} {row['grad_accum']:5d} {'on' if row['activation_checkpointing'] else 'off':>8s} "
                  f"{row['tokens_per_s']:9.0f} {row['mfu']:6.1%} {row['vs_forward_backward']:9.2f}x")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
