"""mathlm: teaching language models mathematical reasoning, from scratch in PyTorch.

What notebooks use is re-exported here (`from mathlm import Transformer, generate, ...`); every
name is loaded on first use, so `import mathlm.grading` or `import mathlm.sandbox` in a worker
process does not import torch. Everything else lives in its own module: mathlm.model,
mathlm.checkpoint, mathlm.tokenizer, mathlm.sampling, mathlm.losses, mathlm.train, mathlm.rft,
mathlm.preference, mathlm.reward, mathlm.critique, mathlm.rl, mathlm.evaluation, mathlm.data,
mathlm.grading, mathlm.sandbox, mathlm.kernels.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # model
    "ModelConfig": "config", "PRESETS": "config",
    "Transformer": "model", "KVCache": "model",
    "load_hf_checkpoint": "checkpoint", "save_hf_checkpoint": "checkpoint",
    "Tokenizer": "tokenizer", "PROMPT_TEMPLATE": "tokenizer",
    "ScalarHeadModel": "scalar_head",
    # sampling and evaluation
    "generate": "sampling", "Completion": "sampling",
    "evaluate_model": "evaluation", "pass_at_k": "evaluation", "win_rate": "evaluation",
    "extract_answer": "grading", "math_equal": "grading",
    # data and sandbox
    "generate_dataset": "data", "split_dataset": "data", "train_test_split": "data", "read_jsonl": "data",
    "write_jsonl": "data", "save_dataset": "data", "dedup": "data", "self_instruct": "data",
    "final_answer_line": "data",
    "run_python": "sandbox", "run_many": "sandbox", "Session": "sandbox", "ExecResult": "sandbox",
    # training
    "Trainer": "train", "TrainConfig": "train", "causal_lm_loss": "train", "parse_config": "cli",
    "sft_loss": "losses", "token_logprobs": "losses", "sequence_logprobs": "losses",
    "hard_sample_weights": "losses", "RunningLoss": "losses", "dpo_loss": "losses", "gae": "losses",
    "ppo_policy_loss": "losses", "ppo_value_loss": "losses", "kl_penalty": "losses",
    "grpo_advantages": "losses", "reward_loss": "losses", "critique_loss": "losses",
    # post-training
    "ModelSampler": "rft", "rejection_sample": "rft", "RFTResult": "rft", "path_signature": "rft",
    "build_preference_pairs": "preference", "DPOLoss": "preference",
    "precompute_reference_logps": "preference",
    "RewardModel": "reward", "CritiqueScorer": "critique",
    "RLConfig": "rl", "RLTrainer": "rl",
    # kernels
    "flash_attention": "kernels", "flash_attention_varlen": "kernels", "block_sparse_attention": "kernels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mathlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # next time without __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
