"""Evaluate a checkpoint on a math benchmark file: pass@1 (mean over n samples), pass@k, maj@n, by
domain and by level.

    python recipes/eval.py --checkpoint runs/sft/final --data data/test.jsonl --out runs/eval-sft   # greedy
    python recipes/eval.py --checkpoint Qwen2.5-Math-1.5B --data gsm8k/test.jsonl --max_new_tokens 1024 \\
        --out runs/eval-gsm8k                                                    # greedy, chat template, CoT
    python recipes/eval.py --checkpoint Qwen2.5-Math-1.5B --data math500/test.jsonl --n 8 --temperature 0.7 \\
        --top_p 0.95 --max_new_tokens 2048 --out runs/eval-math500-n8             # pass@1 over 8, maj@8, pass@8
    python recipes/eval.py ... --tools       # tool-integrated: python blocks run in the sandbox

--data is any layout `mathlm.recipe_run.read_records` reads (GSM8K, MATH, MATH-500, NuminaMath, chat
messages, mathlm records; .jsonl/.json/.parquet). The prompt is the checkpoint's chat template
when it has one (--prompt_format, --system; the default system turn is Qwen2.5-Math's CoT
instruction, its TIR instruction with --tools), else mathlm's plain template; generation stops on
every EOS id of the folder and on the template's end-of-turn token. Answers are extracted and
graded by mathlm.grading. Writes OUT/eval.json (the metrics, the settings, the time taken) and
OUT/samples.jsonl (every completion, its extracted answer and its verdict); prints a progress
line per batch of problems (rate, tokens/s, ETA). One process, one device: there is no torchrun
launch; for several GPUs run one process per GPU, each on its own part of the data file.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mathlm import Tokenizer, load_hf_checkpoint
from mathlm.chat_template import COT_INSTRUCTION, TIR_INSTRUCTION
from mathlm.cli import parse_config
from mathlm.data import write_jsonl
from mathlm.evaluation import grade_completions, sample_completions, summarize_samples
from mathlm.recipe_run import configure_prompt, read_records

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class EvalConfig:
    checkpoint: str                      # HF folder: config.json, safetensors, tokenizer files
    data: str                            # benchmark file (.jsonl/.json/.parquet) in any supported layout
    out: str = "runs/eval"               # output folder: eval.json, samples.jsonl
    n: int = 1                           # samples per problem
    temperature: float = 0.0             # 0 = greedy (then n must be 1)
    top_p: float = 1.0                   # nucleus sampling mass (1: off)
    max_new_tokens: int = 1024           # tokens per completion (tool output included)
    tools: bool = False                  # run the completions' python blocks in the sandbox (tool-integrated reasoning)
    tool_timeout: float = 5.0            # seconds per python block
    prompt_format: str = "auto"          # auto (chat when the checkpoint has a chat template), chat or plain
    system: str = "auto"                 # chat system turn: auto (Qwen2.5-Math's CoT, or TIR with --tools), none, or the text
    batch_size: int = 64                 # problems per generate call (each with n samples)
    limit: int = 0                       # evaluate the first N problems only (0: all)
    seed: int = 0
    dtype: str = "auto"                  # auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16
    device: str = "auto"                 # auto (cuda when available), cpu, cuda, cuda:1, ...

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n ({self.n}) must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature ({self.temperature}) must be >= 0")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n ({self.n}) > 1 needs --temperature > 0: greedy samples are all the same")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p ({self.top_p}) must be in (0, 1]")
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype ({self.dtype!r}) must be auto or one of {', '.join(DTYPES)}")
        if self.prompt_format not in ("auto", "chat", "plain"):
            raise ValueError(f"prompt_format ({self.prompt_format!r}) must be auto, chat or plain")


def load(cfg: EvalConfig):
    device = torch.device(cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES.get(cfg.dtype) or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    tokenizer = Tokenizer.from_pretrained(cfg.checkpoint)
    system = cfg.system
    if cfg.tools and system == "auto" and tokenizer.prompt_format.system == COT_INSTRUCTION:
        system = TIR_INSTRUCTION
    configure_prompt(tokenizer, cfg.prompt_format, system)
    model = load_hf_checkpoint(cfg.checkpoint, dtype=dtype, device=device).eval()
    return model, tokenizer


def sample_rows(problems: list[dict], outs: list, graded: list[dict]) -> list[dict]:
    rows = []
    for i, (p, o, g) in enumerate(zip(problems, outs, graded)):
        for j, (c, extracted, correct) in enumerate(zip(o, g["answers"], g["correct"])):
            rows.append({"problem": i, "id": p.get("id"), "domain": p.get("domain"), "level": p.get("level"),
                         "sample": j, "answer": p["answer"], "extracted": extracted, "correct": bool(correct),
                         "finish_reason": c.finish_reason, "tokens": len(c.tokens), "tool_calls": c.tool_calls,
                         "completion": c.text})
    return rows


def main(argv=None) -> dict:
    cfg = parse_config(EvalConfig, argv, description=__doc__)
    problems = read_records(cfg.data, missing_answer="raise")
    problems = problems[:cfg.limit] if cfg.limit else problems
    model, tokenizer = load(cfg)

    # ---- sample and grade
    start = time.monotonic()
    outs = sample_completions(model, tokenizer, problems, max_new_tokens=cfg.max_new_tokens, n=cfg.n,
                              temperature=cfg.temperature, top_p=cfg.top_p if cfg.top_p < 1 else None,
                              tools=cfg.tools, tool_timeout=cfg.tool_timeout, batch_size=cfg.batch_size,
                              seed=cfg.seed, progress=True)
    seconds = time.monotonic() - start
    graded = grade_completions(problems, [[c.text for c in o] for o in outs])

    # ---- write
    report = summarize_samples(problems, graded)
    report["settings"] = {**asdict(cfg), "prompt_format": tokenizer.prompt_format.style,
                          "system": tokenizer.prompt_format.system, "stop_ids": list(tokenizer.stop_ids)}
    report["seconds"] = round(seconds, 1)
    report["completion_tokens"] = sum(len(c.tokens) for o in outs for c in o)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str))
    write_jsonl(out / "samples.jsonl", sample_rows(problems, outs, graded))
    print(json.dumps({k: v for k, v in report.items() if k not in ("by_domain", "by_level", "settings")}))
    return report


if __name__ == "__main__":
    main()
