"""A recipe run from its arguments to its final folder, shared by every recipe so that none is a
copy of another (next-token training itself lives in mathlm.lm_training).

- `RunConfig` + `prepare_run(cfg)`: the arguments every recipe takes (`--checkpoint` folder or preset,
  `--data` file, `--out`, tokenizer, prompt format, batch shape) and what they resolve to (distributed
  setup, records, tokenizer, model).
- `read_records(path)`: mathlm's own JSONL as it is (records with the fields a recipe needs and a
  plain `answer`: labelled records, answer-only pools, pairs, corpora), any other dataset layout
  (GSM8K, MATH, MATH-500, NuminaMath, chat messages; .jsonl/.json/.parquet) through
  `mathlm.data.load_problems`.
- `configure_prompt(tokenizer, style, system)`: --prompt_format / --system applied to a tokenizer.
- `load_model(checkpoint, ...)`: a Hugging Face layout folder, or a preset name built fresh.
- `RLRunConfig` + `run_rl(cfg)`: PPO or GRPO on the records' questions.
- `finish_run(...)` / `finish_rl_run(cfg, trainer)`: the end of every recipe (the final folder
  written collectively, `summary.json` and the summary line on rank 0).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import distributed as D
from .chat_template import COT_INSTRUCTION
from .checkpoint import load_hf_checkpoint
from .config import PRESETS, ModelConfig
from .model import Transformer
from .rl import RLConfig, RLTrainer
from .tokenizer import PROMPT_STYLES, Tokenizer, has_tokenizer
from .train import TrainConfig


@dataclass
class RunConfig(TrainConfig):
    """The arguments every recipe takes, on top of the Trainer's."""

    checkpoint: str = "tiny"             # HF-layout folder (config.json + safetensors) or a preset name
    data: str = ""                       # data file (.jsonl/.json/.parquet) in any layout of read_records; empty: generated records
    out: str = "runs/recipe"             # output folder (metrics, checkpoints, the final model)
    tokenizer: str = ""                  # tokenizer file or folder; empty: the checkpoint folder's, else trained on the data
    prompt_format: str = "auto"          # auto (the checkpoint's: chat when it has a chat template), chat or plain
    system: str = "auto"                 # chat system turn: auto (the checkpoint's, else Qwen2.5-Math's CoT), none, or the text
    vocab_size: int = 1024               # vocabulary of a tokenizer trained here
    n_per_domain: int = 20               # generated records per domain when --data is empty
    batch_size: int = 16                 # rows per micro-batch, all ranks together
    seq_len: int = 384                   # tokens per (packed) row; longer examples are cut to it; the model's context is at least this
    weight_decay: float = 0.0            # every recipe fine-tunes or trains small models without decay; --weight_decay to add it
    out_dir: str = dataclasses.field(default="runs/recipe", init=False)  # set from --out

    def __post_init__(self):
        super().__post_init__()
        self.out_dir = self.out  # the Trainer writes metrics and checkpoints under --out
        if self.prompt_format not in ("auto", *PROMPT_STYLES):
            raise ValueError(f"prompt_format ({self.prompt_format!r}) must be auto, chat or plain")


@dataclass
class Run:
    cfg: RunConfig
    dist: D.DistInfo
    records: list[dict]
    tokenizer: Tokenizer
    model: Transformer


def _own_layout(path: Path, required: Sequence[str]) -> bool:
    """Whether `path` is JSONL in mathlm's own layout: its first record has the `required` fields
    and no GSM8K-style `answer` (a worked solution ending in '#### <answer>')."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return True  # read_jsonl names the file:line
    if not isinstance(record, dict) or not all(k in record for k in required):
        return False
    return not (isinstance(record.get("answer"), str) and "####" in record["answer"])


def read_records(path: str | Path, required: Sequence[str] = ("question", "answer"),
                 missing_answer: str = "skip") -> list[dict]:
    """The records of a data file, in mathlm's own layout or any layout `load_problems` reads
    (problems get an `id` "<file stem>-<index>" where the source has none); every record must have
    the `required` fields."""
    from .data import load_problems, read_jsonl

    path = Path(path)
    if _own_layout(path, required):
        return read_jsonl(path, required_fields=tuple(required))
    problems = load_problems(path, missing_answer=missing_answer)
    for i, p in enumerate(problems):
        p.setdefault("id", f"{path.stem}-{i}")
        missing = [k for k in required if k not in p]
        if missing:
            raise ValueError(f"{path}: problem {i} ({p['layout']} layout) has no field(s) {missing}; "
                             f"fields: {sorted(p)}")
    return problems


def load_records(cfg: RunConfig, required: Sequence[str] = ("question", "answer")) -> list[dict]:
    """--data (`read_records`: errors name file:line), or freshly generated records."""
    from .data import generate_dataset

    if cfg.data:
        return read_records(cfg.data, required)
    return generate_dataset(n_per_domain=cfg.n_per_domain, seed=cfg.seed)


RESPONSE_FIELDS = ("mixed", "cot", "pot", "solution")  # what SFT can train on


def response_field(records: Sequence[dict], fmt: str = "auto") -> str:
    """The field SFT trains on: `fmt`, or for "auto" `mixed` when every record has one (mathlm's
    records) else `solution` (the dataset's own, from load_problems). Every record must hold a
    non-empty string there."""
    if fmt == "auto":
        fmt = "mixed" if all(isinstance(r.get("mixed"), str) and r["mixed"] for r in records) else "solution"
    bad = next((i for i, r in enumerate(records) if not (isinstance(r.get(fmt), str) and r[fmt].strip())), None)
    if bad is not None:
        r = records[bad]
        raise ValueError(f"record {bad} ({r.get('id', 'no id')!r}) has no {fmt!r} text to train on (fields: "
                         f"{sorted(r)}); pick --format among the fields the records have")
    return fmt


def configure_prompt(tokenizer: Tokenizer, style: str = "auto", system: str = "auto") -> Tokenizer:
    """Apply --prompt_format / --system: style auto keeps the tokenizer's (its folder's
    prompt_format.json, else chat when it has a chat template); system auto keeps its system turn in
    chat style (Qwen2.5-Math's CoT instruction unless the folder saved another), "none" drops it."""
    current = tokenizer.prompt_format
    style = current.style if style == "auto" else style
    if system == "auto":
        system = current.system if current.style == "chat" else COT_INSTRUCTION
    tokenizer.set_prompt_format(style, None if system in ("none", "") else system)
    return tokenizer


def load_tokenizer(cfg: RunConfig, records: Sequence[dict], text_keys: Sequence[str] = ("question", "mixed")) -> Tokenizer:
    if cfg.tokenizer:
        return Tokenizer.from_file(cfg.tokenizer)
    if has_tokenizer(cfg.checkpoint):
        return Tokenizer.from_pretrained(cfg.checkpoint)
    texts = [r[k] for r in records for k in text_keys if isinstance(r.get(k), str) and r[k]]
    return Tokenizer.train(texts, vocab_size=cfg.vocab_size)


def prepare_run(cfg: RunConfig, model_overrides: dict | None = None,
                required: Sequence[str] = ("question", "answer"), text_keys: Sequence[str] = ("question", "mixed")) -> Run:
    """Distributed setup (a no-op without torchrun), records, tokenizer and model for a recipe."""
    info = D.init_distributed()
    records = load_records(cfg, required)
    tokenizer = configure_prompt(load_tokenizer(cfg, records, text_keys), cfg.prompt_format, cfg.system)
    # float32 master weights whatever the folder stores: bf16 weights would round away most AdamW updates
    # at fine-tuning learning rates (the Trainer autocasts the forward to bf16 on GPUs).
    model = load_model(cfg.checkpoint, tokenizer, dtype=torch.float32, device=info.device, seed=cfg.seed,
                       seq_len=cfg.seq_len,
                       **(model_overrides or {}))
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}")
    return Run(cfg, info, list(records), tokenizer, model)


def finish_run(out: str | Path, model, tokenizer, summary: dict, *, files: dict | None = None,
               dtype: torch.dtype | None = None, head_meta: dict | None = None) -> dict:
    """The end of every recipe: `<out>/final` written collectively (safe under FSDP2; a scalar-head
    model gets its own layout with `head_meta`), then on rank 0 `summary.json`, each of `files`
    (name -> JSON-able object) and the summary printed as one JSON line; the process group closed."""
    out = Path(out)
    D.save_hf_folder(model, out / "final", tokenizer=tokenizer, dtype=dtype, head_meta=head_meta)
    if D.is_main_process():
        for name, obj in {**(files or {}), "summary.json": summary}.items():
            (out / name).write_text(json.dumps(obj, indent=2, default=str))
        print(json.dumps(summary, default=str))
    D.shutdown()
    return summary


def load_model(checkpoint: str, tokenizer=None, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
               seed: int = 0, seq_len: int | None = None, **overrides) -> Transformer:
    """`checkpoint` is an HF-layout folder (config.json + safetensors) or a preset name (fresh weights,
    vocabulary sized to `tokenizer` when given). `overrides` change ModelConfig fields.

    `seq_len` (a recipe's `--seq_len`, the training row length) must fit the model's context: a
    preset's `max_seq_len` is raised to it when shorter; a folder whose `max_seq_len` is shorter
    is an error (its positions were never trained)."""
    path = Path(checkpoint)
    if path.is_dir():
        model = load_hf_checkpoint(path, dtype=dtype, device=device, **overrides)
        if seq_len is not None and seq_len > model.config.max_seq_len:
            raise ValueError(f"seq_len ({seq_len}) exceeds the max_seq_len ({model.config.max_seq_len}) of {path}")
        return model
    if checkpoint not in PRESETS:
        raise ValueError(f"checkpoint {checkpoint!r} is neither a folder nor a preset; presets: {', '.join(PRESETS)}")
    if tokenizer is not None:
        overrides.setdefault("vocab_size", len(tokenizer))
        overrides.setdefault("bos_id", tokenizer.bos_id)
        overrides.setdefault("eos_id", tokenizer.eos_id)
        overrides.setdefault("pad_id", tokenizer.pad_id)
    if seq_len is not None:
        overrides.setdefault("max_seq_len", max(PRESETS[checkpoint]["max_seq_len"], seq_len))
    cfg = ModelConfig.from_preset(checkpoint, **overrides)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Transformer(cfg)
    return model.to(dtype) if dtype is not None else model


@dataclass
class RLRunConfig(RunConfig):
    """A PPO/GRPO recipe: the run, the RL settings (`--rl.<field>`) and how long."""

    rl: RLConfig = dataclasses.field(default_factory=RLConfig)
    rl_steps: int = 20                   # RL steps (rollout + updates)
    max_steps: int = dataclasses.field(default=1, init=False)  # optimizer updates: rl.optimizer_steps(rl_steps), no flag
    reward_model: str = ""               # folder of a reward model (mathlm.reward) scored into the reward
    lr: float = 3e-5                     # RL wants an lr about 10x below SFT's (docs/calibration.md)
    log_every: int = 1000                # the inner optimizer steps; RL steps log through RLTrainer

    def __post_init__(self):
        super().__post_init__()
        self.max_steps = self.rl.optimizer_steps(self.rl_steps)


def run_rl(cfg: RLRunConfig, run: Run | None = None):
    """PPO or GRPO (cfg.rl.algorithm) on the records' questions, graded against their answers.

    Under torchrun each rank rolls out its own share of the problems with its own seed and the
    gradients are averaged (DDP/FSDP2), so the rollout batch grows with the number of ranks.
    Returns the RLTrainer (its `history` holds one statistics dict per RL step)."""
    run = run or prepare_run(cfg)
    problems = run.records[run.dist.rank::run.dist.world_size]
    rl = dataclasses.replace(cfg.rl, seed=cfg.rl.seed + 7919 * run.dist.rank)
    reward_model = None
    if cfg.reward_model:
        from .reward import RewardModel
        reward_model = RewardModel.load(cfg.reward_model, device=run.dist.device)
    trainer = RLTrainer(run.model, run.tokenizer, problems, rl, cfg, reward_model=reward_model)
    trainer.train(cfg.rl_steps)
    return trainer


def finish_rl_run(cfg: RLRunConfig, trainer: RLTrainer) -> dict:
    """The end of an RL recipe: `finish_run` with the trainer's summary and `rl_history.json`."""
    return finish_run(cfg.out, trainer.policy, trainer.tokenizer, trainer.summary(),
                      files={"rl_history.json": trainer.history})
