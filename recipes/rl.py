"""Reinforcement learning on answer-only problems: GRPO or PPO (`--rl.algorithm`), one recipe.

- GRPO (Shao et al. 2024, DeepSeekMath): `--rl.group_size` samples per problem, advantages normalised
  within each group, no value model, the KL to the reference in the loss.
- PPO (Schulman et al. 2017) with a value model and GAE; the KL to the reference is subtracted from
  the per-token reward (InstructGPT).

    python recipes/rl.py                                           # GRPO, tiny, generated problems, CPU, ~2 min
    python recipes/rl.py --rl.algorithm ppo --rl.group_size 4       # PPO
    python recipes/rl.py --checkpoint runs/rft/final --data data/answer_only_pool.jsonl --rl_steps 80 --out runs/grpo
    python recipes/rl.py --checkpoint runs/qwen/rft/final --data gsm8k/train.parquet --lr 1e-6 --rl.max_new_tokens 1024
    python recipes/rl.py --checkpoint runs/rft/final --rl.kl_coef 0.02 --rl.group_size 8 --rl.tools
    torchrun --standalone --nproc_per_node=8 recipes/rl.py --checkpoint path/to/rft-7b --data pool.jsonl \\
        --distributed fsdp --lr 1e-6 --rl.max_new_tokens 1024

--data is an answer pool in any layout `mathlm.recipe_run.read_records` reads (mathlm, GSM8K, MATH,
MATH-500, ...); chat checkpoints are prompted through their template (--prompt_format, --system).
The reward is the grader's (1 for a correct final answer, 0 otherwise; --rl.format_penalty for no
final answer), plus --rl.reward_model_weight times a reward model's score (--reward_model FOLDER).
Every RL setting is a --rl.<field> flag (see mathlm.rl.RLConfig and docs/rl.md). Under torchrun each
rank rolls out its own share of the problems. Writes <out>/final and <out>/rl_history.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mathlm.cli import parse_config
from mathlm.rl import RLConfig
from mathlm.recipe_run import RLRunConfig, finish_rl_run, run_rl


@dataclass
class RLRecipeConfig(RLRunConfig):
    out: str = "runs/rl"                  # output folder
    rl: RLConfig = field(default_factory=lambda: RLConfig(algorithm="grpo", prompts_per_step=8, group_size=8,
                                                          max_new_tokens=256, tools=True))
    rl_steps: int = 20


def main(argv=None) -> dict:
    cfg = parse_config(RLRecipeConfig, argv, description=__doc__)
    return finish_rl_run(cfg, run_rl(cfg))


if __name__ == "__main__":
    main()
