"""Wall time of one GRPO and one PPO step (mathlm.rl) against sampling alone, in the same run.

    python benchmarks/rl_step.py                                   # tiny preset, 8 prompts x 8 samples, 64 new tokens
    python benchmarks/rl_step.py --prompts 4 --group 4 --new-tokens 128 --threads 2

Baseline `generate`: `mathlm.sampling.generate` of the same prompts with the same n, temperature
and budget, log-probs on: the sampling an RL step cannot avoid. Each RL row is one `RLTrainer.step`
(a random tiny model, so nearly every sample runs to the budget), split into its rollout part
(sampling + the no-grad forwards for old/reference log-probs, entropy and PPO's values + rewards)
and its update part (`ppo_epochs` x minibatches of `Trainer.step`: forward + backward + AdamW, and
the value model's too for PPO). `ratio` is the row's time over the baseline's. Each timing is the
best of --repeats runs. Prompts are the data generators' questions in the Q/A template, tokenized by
a sentencepiece model trained on them. Writes JSON (default benchmarks/results/rl_step.json).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mathlm import ModelConfig, Tokenizer, Transformer
from mathlm.data import generate_dataset
from mathlm.rl import RLConfig, RLTrainer
from mathlm.sampling import generate
from mathlm.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--minibatch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/rl_step.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    problems = generate_dataset(n_per_domain=20, seed=0, verify=False)
    texts = [p["question"] + "\n" + p["cot"] for p in problems]
    tok = Tokenizer.train(texts, vocab_size=1024)
    cfg = ModelConfig.from_preset(args.preset, vocab_size=len(tok))
    torch.manual_seed(0)
    base_model = Transformer(cfg)
    print(f"{args.preset}: {base_model.num_params() / 1e6:.2f}M parameters, vocab {len(tok)}, "
          f"{args.prompts} prompts x {args.group} samples x {args.new_tokens} new tokens, {args.threads} thread(s)")

    prompts = [tok.encode_prompt(p["question"]) for p in problems[:args.prompts]]

    def baseline() -> float:
        t0 = time.perf_counter()
        generate(base_model, prompts, args.new_tokens, temperature=0.7, n=args.group, seed=0, return_logprobs=True,
                 tokenizer=tok)
        return time.perf_counter() - t0

    rows = [{"name": "generate", "total_s": min(baseline() for _ in range(args.repeats))}]
    for algorithm in ("grpo", "ppo"):
        rl = RLConfig(algorithm=algorithm, prompts_per_step=args.prompts, group_size=args.group,
                      max_new_tokens=args.new_tokens, minibatch_size=args.minibatch, ppo_epochs=args.epochs)
        best = None
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                train = TrainConfig(lr=3e-5, max_steps=rl.updates_per_step, log_every=10**6, out_dir=out)
                trainer = RLTrainer(copy.deepcopy(base_model), tok, problems, rl, train)
                stats = trainer.step()
            if best is None or stats["time_rollout"] + stats["time_update"] < best["rollout_s"] + best["update_s"]:
                best = {"name": algorithm, "rollout_s": stats["time_rollout"], "update_s": stats["time_update"],
                        "total_s": stats["time_rollout"] + stats["time_update"],
                        "sampled_tokens": stats["sampled_tokens"] * args.prompts * args.group,
                        "updates": rl.updates_per_step}
        rows.append(best)

    base = rows[0]["total_s"]
    print(f"\n{'row':<10}{'rollout s':>11}{'update s':>10}{'total s':>9}{'ratio':>8}{'tokens/s':>10}")
    n_tokens = args.prompts * args.group * args.new_tokens
    for row in rows:
        row["ratio"] = row["total_s"] / base
        row["tokens_per_s"] = n_tokens / row["total_s"]
        print(f"{row['name']:<10}{row.get('rollout_s', row['total_s']):>11.2f}{row.get('update_s', 0.0):>10.2f}"
              f"{row['total_s']:>9.2f}{row['ratio']:>8.2f}{row['tokens_per_s']:>10.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": platform.processor() or platform.machine(),
                               "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
