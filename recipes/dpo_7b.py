"""DPO of a 7B model on a GPU node: torchrun + FSDP2, bf16, activation checkpointing, reference
log-probs precomputed with the starting model (so no second copy of the weights during training).

    python recipes/dpo_7b.py --dry-run --gpus 8                    # the plan: params, GiB per GPU, tokens per step
    torchrun --standalone --nproc_per_node=8 recipes/dpo_7b.py \\
        --checkpoint /models/Llama-2-7b-hf --pairs data/pairs.jsonl --out runs/dpo_7b
    torchrun --standalone --nproc_per_node=8 recipes/dpo_7b.py \\
        --checkpoint /models/deepseek-math-7b-rl --data data/pool.jsonl --k 8   # sample on-policy pairs first
    python recipes/dpo_7b.py --preset tiny                         # the same code path, tiny, on the CPU

--checkpoint is a Hugging Face folder (llama, mistral or qwen2 type; --preset only names the
architecture for --dry-run and the tiny CPU run). Pairs come from --pairs (JSONL: question, chosen,
rejected) or are sampled from --data problems with the model itself (k samples per problem, the
grader splits them into chosen/rejected). The model is built on the meta device, sharded with
FSDP2, allocated shard by shard and filled from rank 0's copy of the checkpoint, so no rank holds
the full fp32 model on the GPU. Sharded checkpoints go to <out>/checkpoints (convert one with
`python -m mathlm.distributed to-hf`); the final model to <out>/final in Hugging Face layout.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

import torch

from mathlm import ModelConfig, Tokenizer, Transformer
from mathlm.batching import BatchIterator
from mathlm.checkpoint import load_hf_state_dict, read_hf_config
from mathlm.cli import parse_config
from mathlm.data import generate_dataset, read_jsonl
from mathlm.distributed import (fsdp_memory_plan, get_rank, get_world_size, init_distributed,
                                shard_model)
from mathlm.preference import (DPOLoss, build_preference_pairs, collate_preference,
                               encode_preference_pairs, precompute_reference_logps, sample_preference_pairs)
from mathlm.recipe_run import finish_run
from mathlm.train import TrainConfig, Trainer


@dataclass
class DPO7BConfig(TrainConfig):
    preset: str = "llama2-7b"            # architecture for --dry-run and the CPU run (tiny); a real run reads --checkpoint
    checkpoint: str = ""                 # Hugging Face folder with the 7B weights (required on GPUs)
    tokenizer: str = ""                  # sentencepiece model; default: the checkpoint's tokenizer.model
    pairs: str = ""                      # JSONL pairs (question, chosen, rejected); empty: sample from --data
    data: str = ""                       # JSONL problems (question, answer) to sample pairs from
    out: str = "runs/dpo_7b"             # output folder
    dry_run: bool = False                # print the plan (parameters, GiB per GPU, tokens per step) and exit
    gpus: int = 8                        # GPUs the dry-run plan is for (a run uses torchrun's world size)
    micro_batch_size: int = 1            # pairs per GPU per forward (2 rows: chosen and rejected)
    max_len: int = 1024                  # tokens per side of a pair
    k: int = 8                           # samples per problem when sampling pairs
    temperature: float = 0.7             # sampling temperature for pairs
    max_new_tokens: int = 768            # tokens per sampled solution
    beta: float = 0.1                    # DPO beta
    loss_type: str = "sigmoid"           # sigmoid (DPO), robust, ipo, hinge
    lr: float = 5e-7
    warmup_steps: int = 10
    max_steps: int = 200
    grad_accum: int = 8
    weight_decay: float = 0.0
    activation_checkpointing: bool = True
    distributed: str = "fsdp"
    checkpoint_format: str = "sharded"
    save_every: int = 100

    def __post_init__(self):
        super().__post_init__()
        self.out_dir = self.out


def model_config(cfg: DPO7BConfig, tokenizer: Tokenizer | None) -> ModelConfig:
    if cfg.checkpoint:
        return ModelConfig.from_hf_config(read_hf_config(cfg.checkpoint))
    extra = {"vocab_size": len(tokenizer)} if tokenizer is not None and cfg.preset == "tiny" else {}
    return ModelConfig.from_preset(cfg.preset, **extra)


# ---------------------------------------------------------------------------- the plan


def dry_run(cfg: DPO7BConfig) -> dict:
    with torch.device("meta"):
        model = Transformer(model_config(cfg, None))
    rows = 2 * cfg.micro_batch_size
    plan = fsdp_memory_plan(model, cfg.gpus, rows, cfg.max_len, cfg.activation_checkpointing)
    tokens = rows * cfg.max_len * cfg.grad_accum * cfg.gpus
    print(f"model: {cfg.checkpoint or cfg.preset}, {model.num_params():,} parameters")
    print(f"per step: {cfg.micro_batch_size} pair(s)/GPU x {cfg.grad_accum} accumulation x {cfg.gpus} GPUs = "
          f"{cfg.micro_batch_size * cfg.grad_accum * cfg.gpus} pairs, up to {tokens:,} tokens (2 x {cfg.max_len} per pair)")
    print(f"memory per GPU (FSDP2 over {cfg.gpus} GPUs, bf16 compute, fp32 AdamW, activation checkpointing "
          f"{'on' if cfg.activation_checkpointing else 'off'}, reference log-probs precomputed):")
    for name, gib in plan.items():
        print(f"  {name:38s} {gib:7.2f} GiB")
    return {"params": model.num_params(), "tokens_per_step": tokens, "memory_gib": plan}


# ---------------------------------------------------------------------------- data


def gold_pairs(records: list[dict], seed: int) -> list[dict]:
    """CPU demo pairs without sampling: the gold solution against another problem's solution of the
    same domain (a wrong answer to this question), paired by build_preference_pairs."""
    rng = random.Random(seed)
    samples = []
    for r in records:
        others = [o for o in records if o["domain"] == r["domain"] and o["answer"] != r["answer"]]
        samples.append({**r, "response": r["mixed"], "correct": True})
        if others:
            samples.append({**r, "response": rng.choice(others)["mixed"], "correct": False})
    return build_preference_pairs(samples, max_pairs_per_prompt=1, seed=seed)


# ---------------------------------------------------------------------------- the run


def build_model(cfg: DPO7BConfig, tokenizer: Tokenizer, device: torch.device) -> Transformer:
    """Meta build -> FSDP2 shard -> allocate shards -> fill from rank 0's checkpoint (or fresh init)."""
    mcfg = model_config(cfg, tokenizer)
    mcfg.attn_backend = "flash" if device.type == "cuda" else "sdpa"
    with torch.device("meta"):
        model = Transformer(mcfg)
    if get_world_size() > 1:
        shard_model(model, mixed_precision=device.type == "cuda")  # each rank allocates its shards only
    model.to_empty(device=device)
    if not cfg.checkpoint:
        torch.manual_seed(cfg.seed)
        model.init_weights()
        return model
    state = load_hf_state_dict(cfg.checkpoint, model, dtype=torch.float32) if get_rank() == 0 else {}
    if get_world_size() > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        model.load_state_dict(state)
    return model


def main(argv=None) -> dict:
    cfg = parse_config(DPO7BConfig, argv, description=__doc__)
    if cfg.dry_run:
        return dry_run(cfg)
    info = init_distributed()
    tiny = cfg.preset == "tiny" and not cfg.checkpoint
    if not tiny and info.device.type != "cuda":
        raise SystemExit(f"dpo_7b.py trains {cfg.preset} on GPUs: launch it with torchrun --nproc_per_node=<GPUs> on "
                         f"a GPU node. On this machine: --dry-run shows the plan, --preset tiny runs the same code "
                         f"path on the CPU.")
    if not tiny and not cfg.checkpoint:
        raise SystemExit(f"dpo_7b.py needs --checkpoint: a Hugging Face folder with the {cfg.preset} weights "
                         f"(config.json, *.safetensors, tokenizer.model); DPO starts from a trained model.")
    if cfg.tokenizer:
        tokenizer = Tokenizer.from_file(cfg.tokenizer)
    elif cfg.checkpoint:
        tokenizer = Tokenizer.from_file(cfg.checkpoint)
    else:
        records = generate_dataset(n_per_domain=6, seed=cfg.seed)
        tokenizer = Tokenizer.train([r["question"] + "\n" + r["mixed"] for r in records], vocab_size=1024)

    # ---- model, pairs, reference log-probs
    model = build_model(cfg, tokenizer, info.device)
    if cfg.pairs:
        pairs = read_jsonl(cfg.pairs, required_fields=("question", "chosen", "rejected"))
    elif cfg.data:
        problems = read_jsonl(cfg.data, required_fields=("question", "answer"))
        pairs = sample_preference_pairs(model, tokenizer, problems, cfg.k, cfg.temperature, cfg.max_new_tokens,
                                        seed=cfg.seed)  # every rank samples the same pairs (same seed)
    elif tiny:
        pairs = gold_pairs(records, cfg.seed)
    else:
        raise SystemExit("dpo_7b.py needs --pairs (JSONL of question/chosen/rejected) or --data (problems to sample from)")
    examples = encode_preference_pairs(pairs, tokenizer, cfg.max_len)
    precompute_reference_logps(model, examples, tokenizer.pad_id, batch_size=2 * cfg.micro_batch_size)

    # ---- train
    batch_size = cfg.micro_batch_size * info.world_size
    batches = BatchIterator(examples, batch_size, partial(collate_preference, pad_id=tokenizer.pad_id), seed=cfg.seed)
    trainer = Trainer(model, cfg, DPOLoss(beta=cfg.beta, loss_type=cfg.loss_type), batches, tokenizer=tokenizer)
    trainer.resume("latest", missing_ok=True)
    last = trainer.train()

    # ---- save
    summary = {"steps": trainer.global_step, "pairs": len(pairs), "world_size": info.world_size,
               "reward_margin_last": last.get("reward_margin"), "reward_accuracy_last": last.get("reward_accuracy")}
    return finish_run(cfg.out, model, tokenizer, summary, dtype=torch.bfloat16)


if __name__ == "__main__":
    main()
