"""Supervised fine-tuning on math records: mathlm's mixed CoT+PoT solutions, or a dataset's own solutions.

    python recipes/sft.py                                          # tiny model, generated data, CPU, ~2 min
    python recipes/sft.py --checkpoint runs/pretrain/final --data data/labelled.jsonl --format mixed --out runs/sft
    python recipes/sft.py --checkpoint Qwen2.5-Math-1.5B --data gsm8k/train.jsonl --lr 1e-5 --bf16 \
        --batch_size 16 --seq_len 1024 --max_steps 400 --out runs/qwen-sft       # chat template, GSM8K solutions
    torchrun --standalone --nproc_per_node=8 recipes/sft.py --checkpoint path/to/Llama-2-7b-hf \\
        --data data/labelled.jsonl --distributed fsdp --batch_size 64 --seq_len 2048 --lr 2e-5

--data is any layout `mathlm.recipe_run.read_records` reads (mathlm JSONL, GSM8K, MATH, MATH-500, NuminaMath,
chat messages; .jsonl/.json/.parquet). --format auto trains on `mixed` for mathlm records and on the
dataset's own `solution` otherwise. A checkpoint with a chat template is prompted through it
(--prompt_format chat|plain, --system; the default system turn is Qwen2.5-Math's CoT instruction)
and each response ends with the template's end-of-turn token; otherwise the prompt is
mathlm.tokenizer.PROMPT_TEMPLATE. The loss covers the response tokens only; examples are packed into rows of --seq_len tokens and never attend across each other. With
--val_fraction > 0, greedy accuracy on held-out records is evaluated every --eval_every steps and
the best weights are kept. The final model is written to <out>/final in Hugging Face layout.
"""
from __future__ import annotations

from dataclasses import dataclass

from mathlm.cli import parse_config
from mathlm.data import train_test_split
from mathlm.lm_training import lm_examples, train_lm
from mathlm.recipe_run import RESPONSE_FIELDS, RunConfig, finish_run, prepare_run, response_field


@dataclass
class SFTConfig(RunConfig):
    out: str = "runs/sft"                # output folder
    format: str = "auto"                 # which solution trains: auto (mixed for mathlm records, else solution), mixed, cot, pot, solution
    lr: float = 2e-3
    warmup_steps: int = 20
    max_steps: int = 200
    val_fraction: float = 0.0            # held-out share of the records for checkpoint selection
    eval_every: int = 0                  # evaluate on the held-out share every N steps (0: at the end)

    def __post_init__(self):
        super().__post_init__()
        if self.format not in ("auto", *RESPONSE_FIELDS):
            raise ValueError(f"format ({self.format!r}) must be one of auto, {', '.join(RESPONSE_FIELDS)}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction ({self.val_fraction}) must be in [0, 1)")


def main(argv=None) -> dict:
    cfg = parse_config(SFTConfig, argv, description=__doc__)
    fields = ("question", "answer") + (() if cfg.format == "auto" else (cfg.format,))
    run = prepare_run(cfg, required=fields, text_keys=("question", *RESPONSE_FIELDS))
    response_key = response_field(run.records, cfg.format)

    # ---- data
    records, val = run.records, None
    if cfg.val_fraction > 0:
        records, val = train_test_split(records, test_fraction=cfg.val_fraction, seed=cfg.seed)
    examples = lm_examples(run.tokenizer, records, response_key=response_key, max_len=cfg.seq_len)

    # ---- train
    trainer, best = train_lm(run.model, run.tokenizer, examples, cfg, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                             val_problems=val, eval_every=cfg.eval_every)

    # ---- save
    summary = {"steps": trainer.global_step, "examples": len(examples), "format": response_key,
               "prompt_format": run.tokenizer.prompt_format.style,
               "best_val_accuracy": best.best if best else None, "best_step": best.step if best else None}
    return finish_run(cfg.out, run.model, run.tokenizer, summary)


if __name__ == "__main__":
    main()
