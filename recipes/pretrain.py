"""Pretraining: next-token prediction on raw text (every token a target).

    python recipes/pretrain.py                                     # tiny model, generated math text, CPU, ~1 min
    python recipes/pretrain.py --checkpoint tiny --data data/corpus.jsonl --text_key text --out runs/pretrain
    torchrun --standalone --nproc_per_node=8 recipes/pretrain.py --checkpoint llama2-7b \\
        --data data/corpus.jsonl --distributed fsdp --batch_size 256 --seq_len 4096 --lr 3e-4

--data is JSONL with one document per line under --text_key (default: the records of mathlm.data,
whose questions and solutions are joined into one text). A preset --checkpoint starts from fresh
weights; a folder continues from its weights. Documents are packed into rows of --seq_len tokens
with document boundaries (no attention across documents). Writes <out>/final (HF layout).
"""
from __future__ import annotations

from dataclasses import dataclass

from mathlm.cli import parse_config
from mathlm.lm_training import lm_examples, train_lm
from mathlm.recipe_run import RunConfig, prepare_run, finish_run


@dataclass
class PretrainConfig(RunConfig):
    out: str = "runs/pretrain"           # output folder
    text_key: str = ""                   # JSONL field holding the text; empty: question + solutions of math records
    lr: float = 2e-3
    warmup_steps: int = 20
    max_steps: int = 100


def documents(records: list[dict], text_key: str) -> list[str]:
    if text_key:
        return [r[text_key] for r in records]
    return ["\n".join(r[k] for k in ("question", "mixed", "cot", "pot") if r.get(k)) for r in records]


def main(argv=None) -> dict:
    cfg = parse_config(PretrainConfig, argv, description=__doc__)
    required = (cfg.text_key,) if cfg.text_key else ("question",)
    text_keys = (cfg.text_key,) if cfg.text_key else ("question", "mixed", "cot", "pot")
    run = prepare_run(cfg, required=required, text_keys=text_keys)

    # ---- data
    examples = lm_examples(run.tokenizer, texts=documents(run.records, cfg.text_key), max_len=cfg.seq_len)

    # ---- train
    trainer, _ = train_lm(run.model, run.tokenizer, examples, cfg, batch_size=cfg.batch_size, seq_len=cfg.seq_len)

    # ---- save
    summary = {"steps": trainer.global_step, "documents": len(examples), "tokens_seen": trainer.tokens_seen}
    return finish_run(cfg.out, run.model, run.tokenizer, summary)


if __name__ == "__main__":
    main()
