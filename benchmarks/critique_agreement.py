"""Held-out agreement of a tiny critique model trained from scratch on generated data.

    python benchmarks/critique_agreement.py                       # question + solution task, ~10 min on 2 cores
    python benchmarks/critique_agreement.py --tasks question --steps 100

Data: `generate_dataset(n_per_domain)` records (unverified: the generators' own solutions); the
question task from their corruptions, the solution task from `synthetic_graded_samples` (reference
solutions vs `corrupt_solution`). Split 80/20 by question, balanced. Model: a fresh `Transformer`
(dim, layers, 4 heads, 2 KV heads) with a scalar head, trained with `critique_loss_fn` on
`critique_batches(by_group=...)`. The baseline, in the same process, is the majority class of the
held-out labels. Prints a table per task and per example source, writes JSON (default
benchmarks/results/critique_agreement.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

import torch

from mathlm import ModelConfig, Tokenizer, Transformer
from mathlm.critique import (build_critique_dataset, critique_batches, critique_loss_fn, critique_text,
                             evaluate_critique, synthetic_graded_samples)
from mathlm.data import generate_dataset
from mathlm.scalar_head import ScalarHeadModel
from mathlm.train import Trainer, TrainConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="question,solution", help="comma list of question, solution")
    p.add_argument("--n-per-domain", type=int, default=60)
    p.add_argument("--fields", default="pot", help="solution fields for the solution task")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8, help="groups per micro-batch (examples with --no-by-group)")
    p.add_argument("--no-by-group", action="store_true")
    p.add_argument("--pair-weight", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--max-len", type=int, default=384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/critique_agreement.json")
    args = p.parse_args()
    tasks = set(args.tasks.split(","))

    t0 = time.perf_counter()
    records = generate_dataset(n_per_domain=args.n_per_domain, seed=args.seed, verify=False)
    graded = synthetic_graded_samples(records, fields=tuple(args.fields.split(",")), seed=args.seed) \
        if "solution" in tasks else []
    ds = build_critique_dataset(records if "question" in tasks else [], graded, held_out=0.2, seed=args.seed)
    texts = [critique_text(e["question"], e["solution"] if e["task"] == "solution" else None) for e in ds["train"]]
    tok = Tokenizer.train(texts, vocab_size=512)
    torch.manual_seed(args.seed)
    cfg = ModelConfig(vocab_size=len(tok), dim=args.dim, n_layers=args.layers, n_heads=4, n_kv_heads=2,
                      hidden_dim=3 * args.dim, max_seq_len=args.max_len)
    model = ScalarHeadModel(Transformer(cfg))
    batches = critique_batches(ds["train"], tok, args.batch, args.max_len, seed=args.seed, by_group=not args.no_by_group)
    trainer = Trainer(model, TrainConfig(lr=args.lr, warmup_steps=20, max_steps=args.steps, weight_decay=0.0,
                                         log_every=50, out_dir="runs/critique_agreement"),
                      partial(critique_loss_fn, pair_weight=args.pair_weight), batches)
    t1 = time.perf_counter()
    for _ in range(args.steps):
        trainer.step([next(batches)])
    train_s = time.perf_counter() - t1
    results = evaluate_critique(model, ds["held_out"], tok, by_source=True)

    print(f"\n{len(ds['train'])} train / {len(ds['held_out'])} held-out examples, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {args.steps} steps in {train_s:.0f} s")
    print(f"{'part':34s} {'n':>5s} {'agreement':>9s} {'majority':>8s} {'ratio':>6s} {'f1 good':>7s} {'f1 bad':>7s}")
    for part, m in results.items():
        if part.startswith("source/"):
            print(f"{part:34s} {m['n']:5.0f} {m['agreement']:9.3f}")
        else:
            print(f"{part:34s} {m['n']:5.0f} {m['agreement']:9.3f} {m['majority_baseline']:8.3f} "
                  f"{m['agreement'] / m['majority_baseline']:6.2f} {m['f1_pos']:7.3f} {m['f1_neg']:7.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results, "train_seconds": train_s,
                               "total_seconds": time.perf_counter() - t0, "torch": torch.__version__,
                               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
