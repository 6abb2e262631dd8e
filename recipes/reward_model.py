"""Reward model: the transformer with a scalar head, trained on preference pairs with the
Bradley-Terry loss (Ouyang et al. 2022); held-out preference accuracy before and after.

    python recipes/reward_model.py                                  # tiny, generated data, CPU, ~2 min
    python recipes/reward_model.py --checkpoint runs/sft/final --pairs runs/pairs.jsonl --out runs/rm
    python recipes/reward_model.py --checkpoint runs/sft/final --data data/pool.jsonl --k 4   # sample pairs
    torchrun --standalone --nproc_per_node=8 recipes/reward_model.py --checkpoint path/to/sft-7b \\
        --pairs pairs.jsonl --distributed fsdp --activation_checkpointing --lr 1e-5 --batch_size 64

Where the pairs come from, in order:
  --pairs   JSONL with `question`, `chosen`, `rejected` (optional `margin`);
  --k > 0   the --checkpoint policy samples k solutions per problem of --data, the grader labels
            them, correct ones are chosen and wrong ones rejected (mathlm.preference);
  neither   synthetic pairs from the records: chosen = the reference solution (--format), rejected =
            the same solution with a wrong final answer or a miscopied number
            (mathlm.critique_data.corrupt_solution). These errors are subtle: a tiny model stays near
            chance on them for hundreds of steps (docs/reward_and_critique.md); give real pairs.
The backbone starts from --checkpoint (usually the SFT model), the head from scratch. About
--held_out of the pairs are held out, whole questions at a time (mathlm.data.train_test_split).
Writes <out>/final (backbone in HF layout + score_head.safetensors + tokenizer; load it with
mathlm.RewardModel.load) and summary.json.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mathlm.cli import parse_config
from mathlm.critique_data import corrupt_solution
from mathlm.data import read_jsonl, train_test_split, write_jsonl
from mathlm.distributed import broadcast_object, is_main_process
from mathlm.preference import sample_preference_pairs
from mathlm.reward import RewardModel, preference_accuracy, reward_batches, reward_eval_fn, reward_loss_fn
from mathlm.recipe_run import RunConfig, prepare_run, finish_run
from mathlm.train import Trainer


@dataclass
class RewardConfig(RunConfig):
    out: str = "runs/reward_model"       # output folder
    pairs: str = ""                      # JSONL pairs (question, chosen, rejected); empty: see --k
    k: int = 0                           # > 0: sample k solutions per problem of --data with the policy for pairs
    temperature: float = 0.7             # sampling temperature for pairs
    max_new_tokens: int = 320            # tokens per sampled solution
    max_pairs_per_prompt: int = 2        # pairs per problem (balance across problems)
    format: str = "mixed"                # synthetic pairs: which reference solution is the chosen one
    held_out: float = 0.2                # share of the pairs held out for accuracy (whole questions)
    batch_size: int = 8                  # pairs per micro-batch (2x sequences)
    lr: float = 1e-3
    warmup_steps: int = 10
    max_steps: int = 100


def synthetic_pairs(records: list[dict], field: str, seed: int) -> list[dict]:
    """chosen = the record's reference solution, rejected = a corrupted copy of it."""
    rng = random.Random(seed)
    pairs = []
    for r in records:
        if not r.get(field):
            continue
        for kind in rng.sample(["final_answer", "copied_number"], 2):
            bad = corrupt_solution(r, kind, rng, field)
            if bad is not None:
                pairs.append({"question": r["question"], "chosen": r[field], "rejected": bad["solution"],
                              "corruption": kind})
                break
    return pairs


def main(argv=None) -> dict:
    cfg = parse_config(RewardConfig, argv, description=__doc__)
    if not 0.0 < cfg.held_out < 1.0:
        raise SystemExit(f"--held_out ({cfg.held_out}) must lie strictly between 0 and 1")
    required = ("question", "answer") if cfg.pairs or cfg.k else ("question", "answer", cfg.format)
    run = prepare_run(cfg, required=required)

    # ---- pairs
    if cfg.pairs:
        pairs = read_jsonl(cfg.pairs, required_fields=("question", "chosen", "rejected"))
    elif cfg.k > 0:
        pairs = broadcast_object(sample_preference_pairs(
            run.model, run.tokenizer, run.records, cfg.k, cfg.temperature, cfg.max_new_tokens,
            cfg.max_pairs_per_prompt, seed=cfg.seed) if is_main_process() else None)
    else:
        pairs = synthetic_pairs(run.records, cfg.format, cfg.seed)
    train, held = train_test_split(list(pairs), test_fraction=cfg.held_out, seed=cfg.seed)  # split by question
    if not train or not held:
        raise SystemExit(f"{len(pairs)} preference pairs over too few questions to hold out {cfg.held_out:.0%} of "
                         "them; give more --data or --pairs (with --k: raise --k or --temperature)")
    if is_main_process():
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(cfg.out) / "pairs_train.jsonl", train)
        write_jsonl(Path(cfg.out) / "pairs_held_out.jsonl", held)

    # ---- train: the backbone from --checkpoint, a fresh head
    model = RewardModel(run.model, tokenizer=run.tokenizer)
    before = preference_accuracy(model, held, run.tokenizer, cfg.seq_len)
    batches = reward_batches(train, run.tokenizer, min(cfg.batch_size, len(train)), cfg.seq_len, seed=cfg.seed)
    trainer = Trainer(model, cfg, reward_loss_fn, batches, eval_fn=reward_eval_fn(held, run.tokenizer, cfg.seq_len))
    trainer.train()
    after = preference_accuracy(model, held, run.tokenizer, cfg.seq_len)

    # ---- save
    summary = {"steps": trainer.global_step, "pairs_train": len(train), "pairs_held_out": len(held),
               "held_out_accuracy_before": before["accuracy"], "held_out_accuracy": after["accuracy"],
               "held_out_margin": after["margin"]}
    return finish_run(cfg.out, model, run.tokenizer, summary, head_meta={"kind": "reward"})


if __name__ == "__main__":
    main()
