"""PPO and GRPO for verifiable math rewards: rollouts, rewards, KL to a frozen reference, updates.

    trainer = RLTrainer(policy, tokenizer, problems, RLConfig(algorithm="grpo"), TrainConfig(lr=3e-5, ...))
    history = trainer.train(steps=80)          # one dict of statistics per RL step
    history[0]["reward_mean"], history[-1]["reward_mean"]

One RL step
1. Rollout (mathlm.rollout): `prompts_per_step` problems, `group_size` samples each at
   `temperature` through `mathlm.sampling.generate` (python blocks executed when `tools` is on);
   old log-probs recomputed on the policy, reference log-probs on the frozen initial policy, values
   on the value model (PPO).
2. Rewards: the grader (`extract_answer` + `math_equal` against the problem's answer: correct /
   wrong reward, minus a format penalty when no final answer is stated) times `grader_weight`,
   plus `reward_model_weight` times a reward model's score.
3. KL to the reference, ONE explicit placement (`kl_placement`):
   "reward": -kl_coef * kl per token added to the token rewards (InstructGPT, Ouyang et al. 2022,
   eq. 2); "loss": kl_coef * KL estimate added to the policy loss (GRPO, Shao et al. 2024, eq. 3,
   k3 estimator); "none": neither (the KL is still measured when a reference exists).
4. Advantages. PPO: GAE (Schulman et al. 2016) over the token rewards with the value model's
   values, whitened over the batch. GRPO: each sample's reward normalised within its group of
   `group_size` samples of the same prompt (no value model).
5. Update: `ppo_epochs` passes over the rollout in shuffled minibatches of `minibatch_size`
   sequences; each minibatch is one `Trainer.step` (policy; and the value model's own Trainer for
   PPO), so the optimizer, schedule, clipping, NaN guard and checkpoints are the shared ones.
   `TrainConfig.max_steps` therefore counts optimizer updates: `config.optimizer_steps(rl_steps)`.

docs/rl.md has the equations, the configuration and what the tests show.
"""
from __future__ import annotations

import copy
import json
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from .grading import boxed_spans, extract_answer, math_equal
from .losses import (AGGREGATIONS, KL_KINDS, aggregate_token_losses, gae, grpo_advantages, kl_penalty,
                     masked_mean, masked_sum, masked_var, masked_whiten, ppo_policy_loss, ppo_value_loss,
                     token_level_rewards, token_logprobs)
from .rollout import Rollout, sample_rollout
from .scalar_head import ScalarHeadModel
from .train import TrainConfig, Trainer, normalized_by

__all__ = ["RLConfig", "RLTrainer", "Advantages", "grade_response", "has_final_answer", "compute_rewards",
           "reward_model_fn",
           "compute_advantages", "rl_policy_loss", "rl_value_loss", "ALGORITHMS", "KL_PLACEMENTS"]

ALGORITHMS = ("ppo", "grpo")
KL_PLACEMENTS = ("reward", "loss", "none")

# Where each algorithm puts the KL and which estimator it uses, when the config leaves them None.
_DEFAULT_KL_PLACEMENT = {"ppo": "reward", "grpo": "loss"}
_DEFAULT_KL_ESTIMATOR = {"reward": "k1", "loss": "k3", "none": "k3"}


@dataclass
class RLConfig:
    """PPO / GRPO settings. The optimizer (lr, schedule, clipping, ...) is the TrainConfig's."""

    algorithm: str = "grpo"               # "ppo" (value model + GAE) or "grpo" (group-normalised, no value model)
    # ---- rollouts
    prompts_per_step: int = 8             # problems per RL step
    group_size: int = 8                   # samples per problem (GRPO needs >= 2)
    temperature: float = 0.7              # sampling temperature, also used for every log-prob (no top-k/top-p)
    max_new_tokens: int = 256             # completion budget, tool output included
    stop: tuple[str, ...] = ()            # stop strings (need a tokenizer)
    tools: bool = False                   # run python blocks in the sandbox while sampling
    max_tool_calls: int = 4               # python blocks per completion
    tool_timeout: float = 2.0             # seconds per block (default Session factory)
    forward_batch_size: int = 16          # rows per no-grad forward (old/ref log-probs, values)
    logprob_tolerance: float = 1e-3       # warn when generate's log-probs differ more from the recomputed ones
    # ---- rewards
    correct_reward: float = 1.0           # grader: a correct final answer
    wrong_reward: float = 0.0             # grader: a wrong one
    format_penalty: float = 0.0           # subtracted when the response states no final answer
    grader_weight: float = 1.0            # weight of the grader's reward
    reward_model_weight: float = 0.0      # weight of the reward model's score (needs reward_model=)
    # ---- KL to the frozen reference
    kl_placement: str | None = None       # "reward", "loss" or "none"; None: ppo -> reward, grpo -> loss
    kl_coef: float = 0.04                 # beta
    kl_estimator: str | None = None       # "k1", "k2" or "k3"; None: k1 in the reward, k3 in the loss
    # ---- the update
    ppo_epochs: int = 2                   # passes over each rollout batch (PPO and GRPO)
    minibatch_size: int = 16              # sequences per optimizer update
    micro_batch_size: int | None = None   # sequences per forward/backward (None: the minibatch)
    clip_eps: float = 0.2                 # ratio clip
    clip_eps_high: float | None = None    # upper ratio clip (DAPO clip-higher); None: clip_eps
    dual_clip: float | None = None        # dual-clip bound c > 1 for negative advantages
    aggregation: str = "token_mean"       # token loss reduction (losses.AGGREGATIONS); Dr. GRPO: ..._sum_norm
    # ---- GRPO
    normalize_group_std: bool = True      # divide by the group's std (False: Dr. GRPO)
    # ---- PPO
    gamma: float = 1.0                    # GAE discount
    lam: float = 0.95                     # GAE lambda
    whiten_advantages: bool = True        # whiten GAE advantages over the rollout batch
    value_clip: float | None = 0.2        # value clip in reward units (None: plain squared error)
    value_coef: float = 1.0               # scale of the value loss (its own optimizer: matters for clipping only)
    value_lr: float | None = None         # value model's learning rate (None: the policy's)
    # ---- bookkeeping
    seed: int = 0                         # prompt order, sampling and minibatch shuffling
    log_every: int = 1                    # progress line every N RL steps

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm ({self.algorithm!r}) must be one of {ALGORITHMS}")
        if self.kl_placement is None:
            self.kl_placement = _DEFAULT_KL_PLACEMENT[self.algorithm]
        if self.kl_placement not in KL_PLACEMENTS:
            raise ValueError(f"kl_placement ({self.kl_placement!r}) must be one of {KL_PLACEMENTS}")
        if self.kl_estimator is None:
            self.kl_estimator = _DEFAULT_KL_ESTIMATOR[self.kl_placement]
        if self.kl_estimator not in KL_KINDS:
            raise ValueError(f"kl_estimator ({self.kl_estimator!r}) must be one of {KL_KINDS}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation ({self.aggregation!r}) must be one of {AGGREGATIONS}")
        self.stop = tuple(self.stop)
        min_group = 2 if self.algorithm == "grpo" else 1
        checks = [
            ("group_size", self.group_size >= min_group, f">= {min_group} for {self.algorithm}"),
            ("prompts_per_step", self.prompts_per_step >= 1, ">= 1"),
            ("temperature", self.temperature > 0 and math.isfinite(self.temperature), "a finite number > 0"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("max_tool_calls", self.max_tool_calls >= 0, ">= 0"),
            ("tool_timeout", self.tool_timeout > 0, "> 0"),
            ("forward_batch_size", self.forward_batch_size >= 1, ">= 1"),
            ("logprob_tolerance", self.logprob_tolerance > 0, "> 0"),
            ("format_penalty", self.format_penalty >= 0, ">= 0"),
            ("grader_weight", self.grader_weight >= 0, ">= 0"),
            ("reward_model_weight", self.reward_model_weight >= 0, ">= 0"),
            ("kl_coef", self.kl_coef >= 0, ">= 0"),
            ("ppo_epochs", self.ppo_epochs >= 1, ">= 1"),
            ("minibatch_size", self.minibatch_size >= 1, ">= 1"),
            ("micro_batch_size", self.micro_batch_size is None or 1 <= self.micro_batch_size <= self.minibatch_size,
             f"None or in [1, minibatch_size={self.minibatch_size}]"),
            ("clip_eps", 0 < self.clip_eps < 1, "in (0, 1)"),
            ("clip_eps_high", self.clip_eps_high is None or self.clip_eps_high > 0, "None or > 0"),
            ("dual_clip", self.dual_clip is None or self.dual_clip > 1, "None or > 1"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"), ("lam", 0 <= self.lam <= 1, "in [0, 1]"),
            ("value_clip", self.value_clip is None or self.value_clip > 0, "None or > 0"),
            ("value_coef", self.value_coef > 0, "> 0"),
            ("value_lr", self.value_lr is None or self.value_lr > 0, "None or > 0"),
            ("log_every", self.log_every >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be {expected}")

    @property
    def rollout_size(self) -> int:
        """Sequences per RL step."""
        return self.prompts_per_step * self.group_size

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates per RL step: epochs x minibatches."""
        return self.ppo_epochs * math.ceil(self.rollout_size / self.minibatch_size)

    def optimizer_steps(self, rl_steps: int) -> int:
        """`TrainConfig.max_steps` of a run of `rl_steps` RL steps: the policy's optimizer updates."""
        return rl_steps * self.updates_per_step


# ---------------------------------------------------------------------------------------------
# Rewards

_ANSWER_IS = re.compile(r"\banswer\s+is\b", re.IGNORECASE)

Verifier = Callable[[dict, str], bool]
RewardModelFn = Callable[[list[str], list[str]], Sequence[float]]


def has_final_answer(text: str) -> bool:
    """Whether the response states a final answer: a `\\boxed{...}` or "the answer is" (what
    `extract_answer` looks for first; its last-number fallback does not count as stating one)."""
    return bool(boxed_spans(text or "")) or bool(_ANSWER_IS.search(text or ""))


def grade_response(problem: dict, text: str) -> bool:
    """The grader: `math_equal(extract_answer(text), problem["answer"])`."""
    return math_equal(extract_answer(text), problem["answer"])


def reward_model_fn(reward_model: Any) -> RewardModelFn:
    """A (questions, responses) -> scores callable from a module with `score(pairs)` (mathlm.reward's
    RewardModel scores (question, response) pairs; run under no_grad) or from such a callable itself."""
    if isinstance(reward_model, nn.Module) and hasattr(reward_model, "score"):
        reward_model.eval()

        def score(questions: list[str], responses: list[str]) -> Sequence[float]:
            with torch.no_grad():
                return reward_model.score(list(zip(questions, responses)))
        return score
    if not callable(reward_model):
        raise ValueError(f"reward_model must be a callable (questions, responses) -> scores or a model with "
                         f"score(pairs), got {type(reward_model).__name__}")
    return reward_model


def compute_rewards(problems: Sequence[dict], texts: Sequence[str], config: RLConfig,
                    verify: Verifier = grade_response,
                    reward_model: RewardModelFn | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample scores (N,) float32, one per (problem, response) pair:

        score = grader_weight * (correct_reward if verify(problem, text) else wrong_reward)
                - format_penalty * [no final answer stated]
                + reward_model_weight * reward_model(questions, texts)

    Returns (scores, {"correct": (N,) bool, "format_ok": (N,) bool, "rm_score": (N,) when a reward
    model is given}). The reward model is any callable (questions, responses) -> floats, e.g. a
    reward model's `score`.
    """
    if len(problems) != len(texts):
        raise ValueError(f"{len(problems)} problems but {len(texts)} responses")
    if (reward_model is not None) != (config.reward_model_weight > 0):
        raise ValueError(f"a reward model and reward_model_weight > 0 go together (got reward_model_weight="
                         f"{config.reward_model_weight}, reward model {'given' if reward_model else 'missing'})")
    correct = torch.tensor([bool(verify(p, t)) for p, t in zip(problems, texts)], dtype=torch.bool)
    format_ok = torch.tensor([has_final_answer(t) for t in texts], dtype=torch.bool)
    graded = torch.where(correct, config.correct_reward, config.wrong_reward).float()
    scores = config.grader_weight * graded - config.format_penalty * (~format_ok).float()
    extras = {"correct": correct, "format_ok": format_ok}
    if reward_model is not None:
        rm = torch.tensor([float(s) for s in reward_model([p["question"] for p in problems], list(texts))],
                          dtype=torch.float32)
        if rm.shape != (len(texts),):
            raise ValueError(f"the reward model returned {rm.numel()} scores for {len(texts)} responses")
        if not bool(torch.isfinite(rm).all()):
            raise ValueError(f"the reward model returned non-finite scores: {rm.tolist()}")
        scores = scores + config.reward_model_weight * rm
        extras["rm_score"] = rm
    return scores, extras


# ---------------------------------------------------------------------------------------------
# Advantages, with the KL placement switch


@dataclass
class Advantages:
    advantages: torch.Tensor          # (N, L), zero outside the response mask
    token_rewards: torch.Tensor       # (N, L): the score at the last response token, - beta * kl per token ("reward")
    sequence_rewards: torch.Tensor    # (N,): sum of the token rewards (what GRPO normalises)
    returns: torch.Tensor | None = None   # (N, L), PPO
    kl: torch.Tensor | None = None        # (N, L) the estimator's per-token KL folded into the rewards, or None


def compute_advantages(config: RLConfig, scores: torch.Tensor, response_mask: torch.Tensor,
                       old_logps: torch.Tensor | None = None, ref_logps: torch.Tensor | None = None,
                       values: torch.Tensor | None = None) -> Advantages:
    """Advantages of one rollout batch (all (N, L) token-aligned, see mathlm.rollout).

    Token rewards: each row's score at its last response token; with kl_placement "reward" minus
    kl_coef * kl_t at every response token, kl_t = kl_penalty(old_logps, ref_logps, kl_estimator)
    (``token_level_rewards``). Other placements leave the rewards free of KL.
    - PPO: GAE over the token rewards with `values`, then whitened over the batch's response
      tokens (``whiten_advantages``).
    - GRPO: the sequence reward (sum of token rewards: the score, minus kl_coef * sum_t kl_t with
      the KL in the reward) normalised within each group of ``group_size`` consecutive rows,
      broadcast to the row's response tokens.
    """
    mask = response_mask.bool()
    kl = None
    if config.kl_placement == "reward" and config.kl_coef > 0:
        if old_logps is None or ref_logps is None:
            raise ValueError('kl_placement "reward" needs old_logps and ref_logps')
        kl = kl_penalty(old_logps, ref_logps, config.kl_estimator, mask)
    token_rewards = token_level_rewards(scores.to(mask.device), mask, kl=kl,
                                        kl_coef=config.kl_coef if kl is not None else 0.0)
    sequence_rewards = masked_sum(token_rewards, mask, dim=1)  # (N,)
    if config.algorithm == "grpo":
        per_row = grpo_advantages(sequence_rewards, config.group_size, config.normalize_group_std)
        advantages = torch.where(mask, per_row[:, None], 0.0)
        return Advantages(advantages, token_rewards, sequence_rewards, kl=kl)
    if values is None:
        raise ValueError("PPO needs the value model's values for GAE")
    advantages, returns = gae(token_rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages and int(mask.sum()) >= 2:
        advantages = masked_whiten(advantages, mask)
    return Advantages(advantages, token_rewards, sequence_rewards, returns=returns, kl=kl)


# ---------------------------------------------------------------------------------------------
# Minibatch losses (Trainer loss_fns; every tensor of the batch is token-aligned, read at [:, 1:])


@normalized_by("tokens")
def rl_policy_loss(model: nn.Module, batch: dict, num_target_tokens: torch.Tensor | float | None = None, *,
                   config: RLConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy loss of one micro-batch, plus kl_coef * KL(policy || reference) when
    kl_placement is "loss" (aggregated like the policy loss). `num_target_tokens` is the Trainer's
    normaliser over the whole minibatch (response tokens, or rows for sequence aggregations)."""
    tokens = batch["tokens"]  # (b, T)
    mask = batch["loss_mask"][:, 1:]  # (b, T - 1): targets
    logits = model(tokens)[:, :-1]  # (b, T - 1, V)
    logps = token_logprobs(logits, tokens[:, 1:].masked_fill(~mask, -100), temperature=config.temperature)
    agg = dict(aggregation=config.aggregation, norm_length=config.max_new_tokens, normalizer=num_target_tokens)
    loss, diag = ppo_policy_loss(logps, batch["old_logps"][:, 1:], batch["advantages"][:, 1:], mask,
                                 clip_eps=config.clip_eps, clip_eps_high=config.clip_eps_high,
                                 dual_clip=config.dual_clip, **agg)
    metrics = {k: diag[k] for k in ("clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl", "ratio_max")}
    if config.kl_placement == "loss" and config.kl_coef > 0:
        kl = kl_penalty(logps, batch["ref_logps"][:, 1:], config.kl_estimator, mask)
        loss = loss + config.kl_coef * aggregate_token_losses(kl, mask, agg["aggregation"], agg["norm_length"],
                                                              agg["normalizer"])
        metrics["kl_loss_term"] = masked_mean(kl.detach(), mask)
    return loss, metrics


@normalized_by("tokens")
def rl_value_loss(model: nn.Module, batch: dict, num_target_tokens: torch.Tensor | float | None = None, *,
                  config: RLConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (token mean) of one micro-batch, times value_coef."""
    mask = batch["loss_mask"][:, 1:]
    values = model(batch["tokens"])[:, :-1]  # (b, T - 1): V of the state choosing token t + 1
    loss, diag = ppo_value_loss(values, batch["values"][:, 1:], batch["returns"][:, 1:], mask,
                                clip=config.value_clip, normalizer=num_target_tokens)
    return config.value_coef * loss, {"value_clip_frac": diag["value_clip_frac"]}


def _count_rows(batch: dict) -> torch.Tensor:
    return batch["loss_mask"].any(dim=1).sum()


def _count_tokens(batch: dict) -> torch.Tensor:
    return batch["loss_mask"].sum()


# ---------------------------------------------------------------------------------------------
# The loop


def _frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def _masked_stat(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float(masked_mean(x, mask))


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the response tokens (1 perfect, <= 0 useless)."""
    if int(mask.sum()) < 2:
        return float("nan")
    var_r = float(masked_var(returns, mask))
    return 1.0 - float(masked_var(returns - values, mask)) / var_r if var_r > 0 else float("nan")


class RLTrainer:
    """PPO or GRPO on `problems` (dicts with "question", and "answer" for the default grader).

    policy: the Transformer to train (its initial weights become the frozen reference).
    tokenizer: `encode_prompt(question)`, `decode(ids)`, `eos_id`, `pad_id` (a mathlm Tokenizer).
    train_config: the policy's optimizer settings; `max_steps` counts optimizer updates
        (`config.optimizer_steps(rl_steps)`). The value model (PPO) trains with a copy whose lr is
        `config.value_lr` (when set) and whose out_dir is `<out_dir>/value`.
    reward_model: callable (questions, responses) -> floats, or a mathlm.reward.RewardModel (scored
        on (question, response) pairs), weighted by `reward_model_weight`.
    tools: a sandbox session factory used when `config.tools` is on (default `Session(timeout=...)`).
    verify: (problem, response text) -> bool, the correctness check (default `grade_response`).
    value_model: PPO's value model (default: a ScalarHeadModel on a copy of the policy).
    ref_model: the frozen reference (default: a copy of the policy as given; none when
        kl_placement is "none"). Build the RLTrainer from the INITIAL policy before `resume`.
    """

    def __init__(self, policy: nn.Module, tokenizer: Any, problems: Sequence[dict], config: RLConfig,
                 train_config: TrainConfig, *, reward_model: RewardModelFn | nn.Module | None = None,
                 tools: Callable[[], Any] | None = None, verify: Verifier = grade_response,
                 value_model: nn.Module | None = None, ref_model: nn.Module | None = None):
        self.config = config
        self.tokenizer, self.verify = tokenizer, verify
        self.reward_model = None if reward_model is None else reward_model_fn(reward_model)
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("problems is empty: RL needs at least one problem")
        for i, p in enumerate(self.problems):
            if not isinstance(p, dict) or not isinstance(p.get("question"), str):
                raise ValueError(f"problem {i} must be a dict with a 'question' string, got {p!r:.100}")
            if verify is grade_response and "answer" not in p:
                raise ValueError(f"problem {i} has no 'answer' for the grader: {p!r:.100}")
        if (reward_model is not None) != (config.reward_model_weight > 0):
            raise ValueError(f"reward_model= and reward_model_weight > 0 go together (reward_model_weight="
                             f"{config.reward_model_weight}, reward model {'given' if reward_model else 'missing'})")
        if tools is not None and not config.tools:
            raise ValueError("tools= was given but config.tools is False: turn tools on or drop the factory")
        if config.tools and tools is None:
            from .sandbox import Session
            tools = partial(Session, timeout=config.tool_timeout)
        self.tools = tools if config.tools else None

        self.ref_model = None
        if config.kl_placement != "none":
            self.ref_model = _frozen_copy(policy) if ref_model is None else ref_model.eval().requires_grad_(False)
        elif ref_model is not None:
            self.ref_model = ref_model.eval().requires_grad_(False)  # measured only, never in the objective

        if config.algorithm == "ppo" and value_model is None:
            # The policy's weights and a zero head: V = 0 at first, so early advantages are the
            # returns themselves rather than noise from a random head. (Copied, like the reference,
            # before a Trainer may wrap or shard the policy.)
            value_model = ScalarHeadModel(copy.deepcopy(policy))
            nn.init.zeros_(value_model.head.weight)
        elif config.algorithm == "grpo" and value_model is not None:
            raise ValueError("value_model= is for PPO; GRPO has no value model")

        count = _count_tokens if config.aggregation == "token_mean" else _count_rows
        save_tokenizer = tokenizer if hasattr(tokenizer, "save") else None
        self.rl_step = 0
        self.history: list[dict[str, float]] = []
        self.policy_trainer = Trainer(policy, train_config, partial(rl_policy_loss, config=config),
                                      count_targets=count, stateful={"rl": self}, tokenizer=save_tokenizer)
        self.value_trainer = None
        if value_model is not None:
            # a copy, not dataclasses.replace: a recipe's config derives init=False fields (out_dir, max_steps)
            # that replace() would reset to their defaults
            value_config = copy.copy(train_config)
            value_config.lr = config.value_lr or train_config.lr
            value_config.out_dir = str(Path(train_config.out_dir) / "value")
            self.value_trainer = Trainer(value_model, value_config, partial(rl_value_loss, config=config),
                                         count_targets=_count_tokens, tokenizer=save_tokenizer)
        self._prompt_cache: dict[int, list[int]] = {}
        self._warned_gap = False
        self._started, self._plan = time.perf_counter(), (0, 0)  # (first, end) RL step of train()

    # ---- accessors

    @property
    def policy(self) -> nn.Module:
        return self.policy_trainer.model

    @property
    def value_model(self) -> nn.Module | None:
        return None if self.value_trainer is None else self.value_trainer.model

    # ---- state for checkpoints (the Trainer saves it as a stateful extra)

    def state_dict(self) -> dict:
        return {"rl_step": self.rl_step}

    def load_state_dict(self, state: dict) -> None:
        self.rl_step = int(state["rl_step"])

    def save(self) -> None:
        self.policy_trainer.save()
        if self.value_trainer is not None:
            self.value_trainer.save()

    def resume(self, path: str = "latest", missing_ok: bool = False) -> bool:
        """Resume the policy (and value model) from their latest (or given) checkpoints."""
        if not self.policy_trainer.resume(path, missing_ok=missing_ok):
            return False
        if self.value_trainer is not None:
            self.value_trainer.resume("latest")
        return True

    # ---- one RL step

    def problems_for_step(self, rl_step: int) -> list[int]:
        """Indices of the problems of RL step `rl_step`: consecutive slices of seeded permutations,
        one permutation per pass over the problems (a pure function of the step: resume is exact)."""
        n, k = len(self.problems), self.config.prompts_per_step
        out = []
        for position in range(rl_step * k, (rl_step + 1) * k):
            epoch, offset = divmod(position, n)
            if epoch not in self._prompt_cache:
                g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
                self._prompt_cache = {epoch: torch.randperm(n, generator=g).tolist()}
            out.append(self._prompt_cache[epoch][offset])
        return out

    def collect(self, problem_ids: Sequence[int], seed: int) -> tuple[Rollout, Advantages, dict]:
        """Rollout, rewards and advantages for the given problems (no update)."""
        cfg = self.config
        problems = [self.problems[i] for i in problem_ids]
        prompts = [self.tokenizer.encode_prompt(p["question"]) for p in problems]
        rollout = sample_rollout(self.policy, prompts, n=cfg.group_size, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_new_tokens, seed=seed, tokenizer=self.tokenizer,
                                 pad_id=self.tokenizer.pad_id, stop=cfg.stop, tools=self.tools,
                                 max_tool_calls=cfg.max_tool_calls, ref_model=self.ref_model,
                                 value_model=self.value_model, batch_size=cfg.forward_batch_size,
                                 # the loss forward's autocast (bf16 on GPU): old log-probs at its precision
                                 score_context=self.policy_trainer._autocast)
        if rollout.logprob_gap > cfg.logprob_tolerance and not self._warned_gap:
            self._warned_gap = True  # once: on GPUs under bf16 the gap is systematic, not news every step
            warnings.warn(f"generate's log-probs differ from the recomputed ones by up to {rollout.logprob_gap:.3g} "
                          f"(logprob_tolerance {cfg.logprob_tolerance}); training uses the recomputed ones "
                          f"(statistic logprob_gap)", stacklevel=2)
        row_problems = [problems[p] for p in rollout.problem_index]
        texts = [c.text if c.text is not None else self.tokenizer.decode(c.tokens) for c in rollout.completions]
        scores, reward_extras = compute_rewards(row_problems, texts, cfg, self.verify, self.reward_model)
        adv = compute_advantages(cfg, scores, rollout.response_mask, rollout.old_logps, rollout.ref_logps,
                                 rollout.values)
        return rollout, adv, {"scores": scores, **reward_extras}

    def _minibatches(self, rollout: Rollout, adv: Advantages, epoch: int) -> list[list[dict]]:
        """Shuffled minibatches (lists of micro-batch dicts, each trimmed to its longest row)."""
        cfg = self.config
        g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.rl_step) * 1_009 + epoch)
        order = torch.randperm(rollout.num_rows, generator=g)
        micro = cfg.micro_batch_size or cfg.minibatch_size
        tensors = {"tokens": rollout.tokens, "loss_mask": rollout.response_mask, "old_logps": rollout.old_logps,
                   "advantages": adv.advantages}
        if rollout.ref_logps is not None:
            tensors["ref_logps"] = rollout.ref_logps
        if adv.returns is not None:
            tensors.update(values=rollout.values, returns=adv.returns)
        lengths = rollout.attention_mask.sum(1)
        out = []
        for s in range(0, len(order), cfg.minibatch_size):
            rows = order[s:s + cfg.minibatch_size]
            batches = []
            for m in range(0, len(rows), micro):
                idx = rows[m:m + micro].to(rollout.tokens.device)
                length = int(lengths[idx].max())
                batches.append({k: v[idx, :length] for k, v in tensors.items()})
            out.append(batches)
        return out

    def step(self) -> dict[str, float]:
        """One RL step: rollout, rewards, advantages, `ppo_epochs` passes of minibatch updates.
        Returns (and logs) the step's statistics."""
        cfg = self.config
        t0 = time.perf_counter()
        problem_ids = self.problems_for_step(self.rl_step)
        seed = (cfg.seed * 1_000_003 + self.rl_step) % 2**62
        rollout, adv, rewards = self.collect(problem_ids, seed)
        t1 = time.perf_counter()

        records: list[dict] = []
        value_records: list[dict] = []
        for epoch in range(cfg.ppo_epochs):
            for micro_batches in self._minibatches(rollout, adv, epoch):
                records.append(self.policy_trainer.step(micro_batches))
                if self.value_trainer is not None:
                    value_records.append(self.value_trainer.step(micro_batches))
        t2 = time.perf_counter()

        stats = self._statistics(rollout, adv, rewards, records, value_records)
        stats.update(time_rollout=t1 - t0, time_update=t2 - t1)
        self.rl_step += 1
        stats = {"rl_step": self.rl_step, "step": self.policy_trainer.global_step, **stats}
        self.history.append(stats)
        self._log(stats)
        return stats

    def train(self, steps: int) -> list[dict[str, float]]:
        """Run `steps` RL steps; returns their statistics (also appended to `self.history`)."""
        if steps < 1:
            raise ValueError(f"steps ({steps}) must be >= 1")
        updates = self.config.optimizer_steps(steps)
        if self.policy_trainer.global_step + updates > self.policy_trainer.config.max_steps:
            raise ValueError(f"{steps} RL steps need {updates} optimizer updates "
                             f"({self.config.updates_per_step} per step) after the {self.policy_trainer.global_step} "
                             f"done, but train_config.max_steps is {self.policy_trainer.config.max_steps}: set "
                             f"max_steps = RLConfig.optimizer_steps(rl_steps)")
        self._started, self._plan = time.perf_counter(), (self.rl_step, self.rl_step + steps)
        return [self.step() for _ in range(steps)]

    def summary(self) -> dict[str, float]:
        """`rl_steps` run so far and the mean reward of the first and the last of them."""
        if not self.history:
            raise ValueError("summary() needs at least one RL step: call train() first")
        return {"rl_steps": len(self.history), "reward_first": self.history[0]["reward_mean"],
                "reward_last": self.history[-1]["reward_mean"]}

    # ---- statistics and logging

    def _statistics(self, rollout: Rollout, adv: Advantages, rewards: dict, records: list[dict],
                    value_records: list[dict]) -> dict[str, float]:
        mask = rollout.response_mask
        scores = rewards["scores"]
        lengths = torch.tensor([len(c.tokens) for c in rollout.completions], dtype=torch.float32)
        stats = {
            "reward_mean": float(scores.mean()),
            "reward_std": float(scores.std()) if scores.numel() > 1 else 0.0,
            "accuracy": float(rewards["correct"].float().mean()),
            "format_ok": float(rewards["format_ok"].float().mean()),
            "sequence_reward_mean": float(adv.sequence_rewards.mean()),
            "entropy": _masked_stat(rollout.entropy, mask),
            "response_length": float(lengths.mean()),
            "sampled_tokens": float(mask.sum(1).float().mean()),
            "truncated": sum(c.finish_reason == "length" for c in rollout.completions) / rollout.num_rows,
            "tool_calls": sum(c.tool_calls for c in rollout.completions) / rollout.num_rows,
            "logprob_gap": rollout.logprob_gap,
        }
        if "rm_score" in rewards:
            stats["rm_score_mean"] = float(rewards["rm_score"].mean())
        if rollout.ref_logps is not None:
            stats["kl"] = _masked_stat(kl_penalty(rollout.old_logps, rollout.ref_logps, "k3", mask), mask)
        if self.config.algorithm == "grpo":
            groups = adv.sequence_rewards.view(-1, self.config.group_size)
            stats["groups_without_signal"] = float((groups.amax(1) == groups.amin(1)).float().mean())
        else:
            stats["value_mean"] = _masked_stat(rollout.values, mask)
            stats["explained_variance"] = _explained_variance(rollout.values, adv.returns, mask)
            stats["value_loss"] = sum(r["loss"] for r in value_records) / len(value_records) / self.config.value_coef
        for name in ("loss", "grad_norm", "clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl", "ratio_max",
                     "kl_loss_term"):
            values = [r[name] for r in records if name in r]
            if values:
                stats[name] = max(values) if name == "ratio_max" else sum(values) / len(values)
        stats["lr"] = records[-1]["lr"]
        stats["skipped_updates"] = sum(bool(r["skipped"]) for r in records)
        return stats

    def _log(self, stats: dict[str, float]) -> None:
        trainer = self.policy_trainer
        if trainer.rank != 0:
            return
        trainer.out_dir.mkdir(parents=True, exist_ok=True)
        with open(trainer.metrics_file, "a") as f:
            f.write(json.dumps({"kind": "rl", **stats}) + "\n")
        if stats["rl_step"] % self.config.log_every:
            return
        first, end = self._plan
        line = (f"rl step {stats['rl_step']}{f'/{end}' if end else ''} | "
                f"reward {stats['reward_mean']:.3f} +- {stats['reward_std']:.3f} | acc {stats['accuracy']:.3f} | "
                f"kl {stats.get('kl', float('nan')):.4f} | clip {stats.get('clip_frac', 0.0):.3f} | "
                f"entropy {stats['entropy']:.3f} | len {stats['response_length']:.1f}")
        if "value_loss" in stats:
            line += f" | vloss {stats['value_loss']:.4f} | ev {stats['explained_variance']:.3f}"
        line += f" | rollout {stats['time_rollout']:.1f}s update {stats['time_update']:.1f}s"
        if first < stats["rl_step"] <= end:  # inside train(): rate and ETA
            per_step = (time.perf_counter() - self._started) / (stats["rl_step"] - first)
            line += f" | {per_step:.2f}s/step | eta {per_step * (end - stats['rl_step']):.0f}s"
        print(line, file=sys.stdout, flush=True)
