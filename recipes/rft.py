"""Rejection-sampling fine-tuning (RFT, Yuan et al. 2023): sample k paths per problem from one or
several models, keep the correct and distinct ones, fine-tune on them (plus gold solutions).

    python recipes/rft.py                                          # tiny, generated data, CPU, ~2 min
    python recipes/rft.py --checkpoint runs/sft/final --samplers runs/small_a/final,runs/small_b/final \\
        --data data/answer_only_pool.jsonl --gold data/labelled.jsonl --k 4 --temperature 0.7 --out runs/rft
    torchrun --standalone --nproc_per_node=8 recipes/rft.py --checkpoint path/to/sft-7b \\
        --samplers path/to/sft-7b --data pool.jsonl --gold labelled.jsonl --distributed fsdp --lr 1e-5

--data holds problems with a final answer (mathlm's answer-only pools `question`, `answer`, or any
layout `mathlm.recipe_run.read_records` reads: GSM8K, MATH, MATH-500, ...); --gold holds labelled
records whose `mixed` solutions (mathlm) or own `solution`s (other layouts) join the training data.
Samplers are HF-layout folders with their own tokenizer, prompted in the same --prompt_format /
--system; without --samplers the --checkpoint model samples itself. Sampling runs on rank 0 of a
torchrun job and its records are shared with the other ranks. Writes <out>/rft_records.jsonl,
<out>/rft_stats.json and the fine-tuned model to <out>/final.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mathlm import Tokenizer, load_hf_checkpoint
from mathlm.cli import parse_config
from mathlm.data import write_jsonl
from mathlm.distributed import broadcast_object, is_main_process
from mathlm.rft import ModelSampler, rejection_sample
from mathlm.sandbox import Session
from mathlm.lm_training import lm_examples, train_lm
from mathlm.recipe_run import RunConfig, configure_prompt, finish_run, prepare_run, read_records


@dataclass
class RFTConfig(RunConfig):
    out: str = "runs/rft"                # output folder
    samplers: str = ""                   # comma-separated HF folders that sample; empty: --checkpoint itself
    gold: str = ""                       # labelled records whose `mixed` (mathlm) or `solution` texts are added
    k: int = 4                           # samples per problem per sampler
    temperature: float = 0.7             # sampling temperature
    max_paths: int = 4                   # distinct correct paths kept per problem
    max_new_tokens: int = 320            # tokens per sampled path (tool output included)
    sample_batch_size: int = 64          # problems per generate call (k rows each): bounds the KV cache
    tools: bool = True                   # run the python blocks while sampling
    lr: float = 1e-3
    warmup_steps: int = 10
    max_steps: int = 100


def main(argv=None) -> dict:
    cfg = parse_config(RFTConfig, argv, description=__doc__)
    run = prepare_run(cfg)
    gold = read_records(cfg.gold) if cfg.gold else []

    # ---- sample (rank 0), share the records
    result = None
    if is_main_process():
        tools = (lambda: Session(timeout=2.0)) if cfg.tools else None
        if cfg.samplers:
            samplers = [ModelSampler(load_hf_checkpoint(p).eval(),
                                     configure_prompt(Tokenizer.from_pretrained(p), cfg.prompt_format, cfg.system),
                                     cfg.max_new_tokens, batch_size=cfg.sample_batch_size,
                                     tools=tools, name=Path(p).name if Path(p).name != "final" else Path(p).parent.name)
                        for p in cfg.samplers.split(",")]
        else:
            samplers = [ModelSampler(run.model, run.tokenizer, cfg.max_new_tokens, tools=tools, name="policy",
                                     batch_size=cfg.sample_batch_size)]
        result = rejection_sample(samplers, run.records, cfg.k, cfg.temperature, max_paths_per_problem=cfg.max_paths,
                                  seed=cfg.seed)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(cfg.out) / "rft_records.jsonl", result.records)
        (Path(cfg.out) / "rft_stats.json").write_text(json.dumps(result.stats, indent=2, default=str))
        print(f"RFT: coverage {result.stats['coverage']:.1%}, distinct paths/problem "
              f"{result.stats['distinct_paths_per_problem']:.2f}, {len(result.records)} records")
    records = broadcast_object(result.records if result else None)
    records += [{"question": r["question"], "response": r.get("mixed") or r["solution"]}
                for r in gold if r.get("mixed") or r.get("solution")]
    if not records:
        raise SystemExit("RFT found no correct path and --gold gave no solution: nothing to train on")

    # ---- fine-tune
    examples = lm_examples(run.tokenizer, records, response_key="response", max_len=cfg.seq_len)
    trainer, _ = train_lm(run.model, run.tokenizer, examples, cfg, batch_size=cfg.batch_size,
                          seq_len=cfg.seq_len)

    # ---- save
    summary = {"steps": trainer.global_step, "records": len(records),
               "stats": {k: v for k, v in (result.stats if result else {}).items() if not isinstance(v, (list, dict))}}
    return finish_run(cfg.out, run.model, run.tokenizer, summary)


if __name__ == "__main__":
    main()
