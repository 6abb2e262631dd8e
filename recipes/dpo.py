"""Direct preference optimization (Rafailov et al. 2023) on pairs of correct (chosen) and incorrect
(rejected) solutions of the same problem.

    python recipes/dpo.py                                          # tiny, generated data, CPU, ~2 min
    python recipes/dpo.py --checkpoint runs/rft/final --pairs runs/pairs.jsonl --beta 0.1 --out runs/dpo
    python recipes/dpo.py --checkpoint runs/rft/final --data data/pool.jsonl --k 4   # sample the pairs first
    torchrun --standalone --nproc_per_node=8 recipes/dpo.py --checkpoint path/to/rft-7b \\
        --pairs pairs.jsonl --distributed fsdp --activation_checkpointing --lr 5e-7
    (recipes/dpo_7b.py is the same method set up for 7B models on GPUs)

--pairs is JSONL with `question`, `chosen`, `rejected` (optional `weight`). Without it the policy
samples k solutions per problem of --data at --temperature, the grader labels them, and
`mathlm.preference.build_preference_pairs` pairs correct with incorrect ones. The reference model is
the starting policy; its log-probs are computed once before training. --data takes any layout
`mathlm.recipe_run.read_records` reads; chat checkpoints are prompted through their template. Writes <out>/final.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mathlm.batching import BatchIterator
from mathlm.cli import parse_config
from mathlm.data import read_jsonl, write_jsonl
from mathlm.distributed import broadcast_object, is_main_process
from mathlm.preference import (DPOLoss, collate_preference, encode_preference_pairs,
                               precompute_reference_logps, sample_preference_pairs)
from mathlm.recipe_run import RunConfig, prepare_run, finish_run
from mathlm.train import Trainer


@dataclass
class DPOConfig(RunConfig):
    out: str = "runs/dpo"                # output folder
    pairs: str = ""                      # JSONL pairs (question, chosen, rejected); empty: sample them from --data
    k: int = 4                           # samples per problem when sampling pairs
    temperature: float = 0.7             # sampling temperature for pairs
    max_new_tokens: int = 320            # tokens per sampled solution
    max_pairs_per_prompt: int = 2        # pairs per problem (balance across problems)
    beta: float = 0.1                    # DPO temperature on the implicit reward
    loss_type: str = "sigmoid"           # sigmoid (DPO), robust, ipo, hinge
    label_smoothing: float = 0.0         # conservative DPO epsilon
    rpo_alpha: float = 0.0               # weight of the chosen NLL term (Iterative RPO)
    weighted: bool = False               # weigh pairs by the problem's hardness (`weight` field)
    batch_size: int = 8                  # pairs per micro-batch
    lr: float = 1e-4
    warmup_steps: int = 5
    max_steps: int = 60


def main(argv=None) -> dict:
    cfg = parse_config(DPOConfig, argv, description=__doc__)
    run = prepare_run(cfg)

    # ---- pairs and reference log-probs (the starting policy is the reference)
    if cfg.pairs:
        pairs = read_jsonl(cfg.pairs, required_fields=("question", "chosen", "rejected"))
    else:
        pairs = broadcast_object(sample_preference_pairs(
            run.model, run.tokenizer, run.records, cfg.k, cfg.temperature, cfg.max_new_tokens,
            cfg.max_pairs_per_prompt, seed=cfg.seed) if is_main_process() else None)
        if is_main_process():
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            write_jsonl(Path(cfg.out) / "pairs.jsonl", pairs)
    if not pairs:
        raise SystemExit("no preference pairs: the policy's samples were all correct or all wrong on every problem; "
                         "raise --k or --temperature, or pass --pairs")
    examples = encode_preference_pairs(pairs, run.tokenizer, cfg.seq_len)  # --seq_len: tokens per side
    precompute_reference_logps(run.model, examples, run.tokenizer.pad_id)

    # ---- train
    batches = BatchIterator(examples, min(cfg.batch_size, len(examples)),
                            partial(collate_preference, pad_id=run.tokenizer.pad_id), seed=cfg.seed)
    loss = DPOLoss(beta=cfg.beta, loss_type=cfg.loss_type, label_smoothing=cfg.label_smoothing,
                   rpo_alpha=cfg.rpo_alpha, weighted=cfg.weighted)
    trainer = Trainer(run.model, cfg, loss, batches, tokenizer=run.tokenizer)
    first = trainer.step([next(batches)])
    last = trainer.train()

    # ---- save
    summary = {"steps": trainer.global_step, "pairs": len(pairs),
               "reward_margin_first": first["reward_margin"], "reward_margin_last": last["reward_margin"],
               "reward_accuracy_last": last["reward_accuracy"]}
    return finish_run(cfg.out, run.model, run.tokenizer, summary)


if __name__ == "__main__":
    main()
