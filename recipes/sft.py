"""Supervised fine-tuning on math records (mixed CoT+PoT solutions by default).

    python recipes/sft.py                                          # tiny model, generated data, CPU, ~2 min
    python recipes/sft.py --checkpoint runs/pretrain/final --data data/labelled.jsonl --format mixed --out runs/sft
    torchrun --standalone --nproc_per_node=8 recipes/sft.py --checkpoint path/to/Llama-2-7b-hf \\
        --data data/labelled.jsonl --distributed fsdp --batch_size 64 --seq_len 2048 --lr 2e-5

The loss covers the response tokens only (the prompt template is mathlm.tokenizer.PROMPT_TEMPLATE);
examples are packed into rows of --seq_len tokens and never attend across each other. With
--val_fraction > 0, greedy accuracy on held-out records is evaluated every --eval_every steps and
the best weights are kept. The final model is written to <out>/final in Hugging Face layout.
"""
from __future__ import annotations

from dataclasses import dataclass

from mathlm.cli import parse_config
from mathlm.data import train_test_split
from mathlm.stages import RunConfig, lm_examples, prepare_run, train_lm, finish_run


@dataclass
class SFTConfig(RunConfig):
    out: str = "runs/sft"                # output folder
    format: str = "mixed"                # which solution trains: mixed, cot or pot
    lr: float = 2e-3
    warmup_steps: int = 20
    max_steps: int = 200
    weight_decay: float = 0.0
    val_fraction: float = 0.0            # held-out share of the records for checkpoint selection
    eval_every: int = 0                  # evaluate on the held-out share every N steps (0: at the end)

    def __post_init__(self):
        super().__post_init__()
        if self.format not in ("mixed", "cot", "pot"):
            raise ValueError(f"format ({self.format!r}) must be one of mixed, cot, pot")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction ({self.val_fraction}) must be in [0, 1)")


def main(argv=None) -> dict:
    cfg = parse_config(SFTConfig, argv, description=__doc__)
    run = prepare_run(cfg, required=("question", "answer", cfg.format), text_keys=("question", cfg.format))

    # ---- data
    records, val = run.records, None
    if cfg.val_fraction > 0:
        records, val = train_test_split(records, test_fraction=cfg.val_fraction, seed=cfg.seed)
    examples = lm_examples(run.tokenizer, records, response_key=cfg.format, max_len=cfg.seq_len)

    # ---- train
    trainer, best = train_lm(run.model, run.tokenizer, examples, cfg, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                             val_problems=val, eval_every=cfg.eval_every)

    # ---- save
    summary = {"steps": trainer.global_step, "examples": len(examples), "format": cfg.format,
               "best_val_accuracy": best.best if best else None, "best_step": best.step if best else None}
    return finish_run(cfg.out, run.model, run.tokenizer, summary)


if __name__ == "__main__":
    main()
