"""The one training loop: pretraining, SFT, reward and critique models, DPO, PPO/GRPO updates.

    cfg = parse_config(TrainConfig)                  # mathlm.cli: argparse from the dataclass
    batches = BatchIterator(examples, 16, partial(collate_padded, pad_id=tok.pad_id))
    trainer = Trainer(model, cfg, causal_lm_loss, batches, eval_fn=None)
    trainer.resume("latest", missing_ok=True)        # continue a killed run exactly
    trainer.train()

A loss is a `LossFn`: `loss_fn(model, batch, **kwargs) -> (loss, metrics)` that declares how the
Trainer normalises it, `loss_fn.normalization` ("tokens" or "micro_batches", set with the
`normalized_by` decorator or a class attribute; a `functools.partial` carries its function's).
SFT, DPO, reward, critique and RL minibatch losses all plug in. `Trainer.step(micro_batches)` is public: an RL loop builds its
minibatches itself and calls it; `Trainer.train()` pulls `grad_accum` micro-batches per step from
`train_batches` until `max_steps`.

One optimizer step (`Trainer.step`):
1. lr from the schedule: linear warmup from lr/warmup to lr over `warmup_steps`, then cosine or
   linear decay to `min_lr_ratio * lr` at `max_steps`, or constant (`lr_at`).
2. Normalisation. For a "tokens" loss the trainer counts the
   targets (`batch["loss_mask"]`) of ALL micro-batches on ALL ranks, N, and passes N / world_size
   as the keyword `num_target_tokens`:
   each micro-batch loss is then (its summed token losses) / N * world_size, the micro-batch
   losses are summed and the ranks' gradients averaged, which gives exactly the gradient of the
   token mean over the whole step, however the tokens are split. For a "micro_batches" loss
   (called without keywords) each micro-batch loss is divided by the number of micro-batches (a
   mean of micro-batch means: right for losses whose unit is the sequence or the pair, like DPO).
3. Forward/backward per micro-batch under bf16 autocast on GPU (FSDP2 casts through its mixed
   precision policy instead); gradient all-reduce only on the last micro-batch.
4. Clip the global gradient norm to `max_grad_norm`.
5. NaN guard: a non-finite loss or gradient norm skips the update (no optimizer step, moments
   untouched), counts it, and after `max_nan_steps` such steps in a row stops with an error.
6. AdamW update. Decay applies to matrices; norms, biases and embeddings (and a tied output
   head, which is the embedding) get none. Fused AdamW (one kernel per tensor) on CPU and GPU.
7. Rank 0 prints a progress line (step, loss, lr, grad norm, tokens/s, ETA) every `log_every`
   steps and appends the same record to `<out_dir>/metrics.jsonl`.

Checkpoints (mathlm/train_checkpoint.py) hold the model in Hugging Face layout plus optimizer,
step, data position and RNG states; `resume` reproduces the uninterrupted run's losses exactly.
Distributed runs (mathlm/distributed.py): the same script under torchrun, DDP or FSDP2.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import torch
import torch.nn as nn

from . import distributed as D
from .losses import sft_loss, token_logprobs
from .model import Block, Transformer
from .train_checkpoint import FORMATS, latest_checkpoint, load_checkpoint, save_checkpoint

SCHEDULES = ("cosine", "linear", "constant")
NORMALIZATIONS = ("tokens", "micro_batches")
Normalization = Literal["tokens", "micro_batches"]


class LossFn(Protocol):
    """What the Trainer calls once per micro-batch: `(loss, {name: scalar tensor})`.

    normalization "tokens": called as `loss_fn(model, batch, num_target_tokens=N)` and returns
        the micro-batch's summed token losses / N (N: the step's target count over all micro-batches
        and ranks, divided by the world size), so the step's gradient is the token mean's.
    normalization "micro_batches": called as `loss_fn(model, batch)` and returns a mean over the
        micro-batch's own units (sequences, pairs); the Trainer divides it by the micro-batch count.
    """

    normalization: Normalization

    def __call__(self, model: nn.Module, batch: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def normalized_by(normalization: Normalization) -> Callable[[Callable], Callable]:
    """Decorator declaring a loss function's `normalization` (see `LossFn`)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization ({normalization!r}) must be one of {NORMALIZATIONS}")

    def declare(fn: Callable) -> Callable:
        fn.normalization = normalization
        return fn

    return declare


def loss_normalization(loss_fn: LossFn) -> Normalization:
    """The declared normalization of `loss_fn` (a `functools.partial` carries its function's)."""
    declared = getattr(loss_fn, "normalization", None)
    if declared is None and isinstance(loss_fn, functools.partial):
        declared = getattr(loss_fn.func, "normalization", None)
    if declared not in NORMALIZATIONS:
        raise ValueError(f"loss_fn {loss_fn!r} declares normalization {declared!r}; it must declare one of "
                         f"{NORMALIZATIONS} (decorate it with @normalized_by(...) or set the attribute)")
    return declared


@dataclass
class TrainConfig:
    """Optimizer, schedule, precision, logging and checkpoint settings of a training run."""

    lr: float = 3e-4                     # peak learning rate
    min_lr_ratio: float = 0.1            # the decay ends at min_lr_ratio * lr
    warmup_steps: int = 0                # linear warmup steps
    schedule: str = "cosine"             # decay after warmup: cosine, linear or constant
    max_steps: int = 1000                # optimizer steps of the whole run
    grad_accum: int = 1                  # micro-batches per optimizer step
    max_grad_norm: float = 1.0           # clip the global gradient norm (0: no clipping)
    weight_decay: float = 0.1            # AdamW decay of matrices (never norms, biases, embeddings)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    eps: float = 1e-8                    # AdamW epsilon
    bf16: bool = True                    # bf16 autocast (FSDP2: mixed precision policy) on GPU; CPU stays fp32
    compile: bool = False                # torch.compile each transformer block
    activation_checkpointing: bool = False  # recompute each block in the backward
    distributed: str = "ddp"             # under torchrun: ddp or fsdp (FSDP2, fully_shard per block)
    checkpoint_format: str = "full"      # full (HF folder, gathered on rank 0) or sharded (DCP)
    log_every: int = 10                  # progress line and metrics.jsonl record every N steps
    eval_every: int = 0                  # run eval_fn every N steps (0: only at the end)
    save_every: int = 0                  # checkpoint every N steps (0: only at the end)
    keep_last: int = 2                   # checkpoints kept (0: all)
    checksums: bool = True               # sha256 of every checkpoint file, verified on resume
    out_dir: str = "runs/train"          # metrics.jsonl and checkpoints/
    seed: int = 0                        # python/numpy/torch seed (+ rank)
    max_nan_steps: int = 5               # stop after this many non-finite steps in a row

    def __post_init__(self):
        checks = [
            ("lr", self.lr > 0, "> 0"), ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"), ("max_steps", self.max_steps >= 1, ">= 1"),
            ("grad_accum", self.grad_accum >= 1, ">= 1"), ("max_grad_norm", self.max_grad_norm >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"), ("eps", self.eps > 0, "> 0"),
            ("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two values in [0, 1)"),
            ("log_every", self.log_every >= 1, ">= 1"), ("eval_every", self.eval_every >= 0, ">= 0"),
            ("save_every", self.save_every >= 0, ">= 0"), ("keep_last", self.keep_last >= 0, ">= 0"),
            ("max_nan_steps", self.max_nan_steps >= 1, ">= 1"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
            ("distributed", self.distributed in D.STRATEGIES, f"one of {D.STRATEGIES}"),
            ("checkpoint_format", self.checkpoint_format in FORMATS, f"one of {FORMATS}"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be {expected}")
        self.betas = tuple(self.betas)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of the update number `step` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    min_lr = cfg.lr * cfg.min_lr_ratio
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.schedule == "cosine":
        return min_lr + (cfg.lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr - (cfg.lr - min_lr) * progress


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on matrices only: norms, biases and embeddings (a tied head too) get none."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or id(p) in embeddings else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (CPU and CUDA) is one pass over each tensor: 3-40x faster than the default
    # per-tensor loop on a 2-core CPU (benchmarks/train_step.py); other devices take the default.
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=fused or None)


@normalized_by("tokens")
def causal_lm_loss(model: nn.Module, batch: dict, num_target_tokens: torch.Tensor | float | None = None):
    """The loss_fn of pretraining and SFT on mathlm.batching batches: response-token cross-entropy,
    normalised by the step's target count the Trainer passes (see the module docstring)."""
    logits = model(batch["tokens"], document_ids=batch.get("document_ids"))  # (B, T, V)
    if "token_weights" not in batch:
        return sft_loss(logits, batch["labels"], batch["loss_mask"], batch.get("weights"),
                        num_target_tokens=num_target_tokens)
    # Packed rows of weighted examples: the weight varies along the row, so weigh each token.
    mask = batch["loss_mask"]
    logp = token_logprobs(logits, batch["labels"].masked_fill(~mask, -100))  # (B, T), 0 off the mask
    count = mask.sum().clamp_min(1) if num_target_tokens is None else num_target_tokens
    nll = -(logp * batch["token_weights"]).sum()
    return nll / count, {"nll": (-logp.sum() / mask.sum().clamp_min(1)).detach()}


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _count_loss_mask(batch: Any) -> torch.Tensor:
    if not isinstance(batch, dict) or "loss_mask" not in batch:
        raise ValueError("loss_fn is normalized by tokens, so the Trainer counts batch['loss_mask']; this "
                         "batch has none: pass Trainer(count_targets=...) to count its targets")
    return batch["loss_mask"].sum()


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class Trainer:
    """Train `model` with `loss_fn` on `train_batches`; see the module docstring for one step.

    model: a Transformer (or any module) on its device, built identically on every rank (or
        already sharded with mathlm.distributed.shard_model). Under torchrun the trainer wraps it
        in DDP or shards it with FSDP2 (`config.distributed`); `trainer.model` stays the unwrapped
        module (state dicts, eval) and `loss_fn` receives the module to call (the DDP wrapper).
    loss_fn: a `LossFn`, `(model, batch[, num_target_tokens=]) -> (scalar loss, {name: scalar tensor})`
        with its declared `normalization`.
    train_batches: an endless iterable of micro-batches for this rank; its `state_dict()` (as
        BatchIterator has) is the data position in checkpoints. A plain deterministic iterable
        works too: resume then skips the micro-batches already consumed.
    eval_fn(model) -> {name: number}: called under no_grad in eval mode on every rank.
    count_targets(batch) -> count: how to count targets for token normalisation (default
        batch["loss_mask"].sum()).
    stateful: extra objects with state_dict()/load_state_dict() saved in checkpoints (e.g. a
        RunningLoss, an RL loop's own counters).
    tokenizer: saved into every full checkpoint folder as tokenizer.model.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, loss_fn: LossFn, train_batches=None,
                 eval_fn: Callable | None = None, *, count_targets: Callable | None = None,
                 stateful: dict[str, Any] | None = None, tokenizer=None):
        self.config = cfg = config
        self.loss_fn, self.train_batches, self.eval_fn = loss_fn, train_batches, eval_fn
        self.count_targets = count_targets or _count_loss_mask
        self.token_normalized = loss_normalization(loss_fn) == "tokens"
        self.stateful, self.tokenizer = dict(stateful or {}), tokenizer
        self.rank, self.world_size = D.get_rank(), D.get_world_size()
        self.device = next(model.parameters()).device
        seed_everything(cfg.seed + self.rank)

        # The switches reach every mathlm Transformer inside `model` (a reward model wraps one).
        transformers = [m for m in model.modules() if isinstance(m, Transformer)]
        if cfg.activation_checkpointing:
            if not transformers:
                raise ValueError("activation_checkpointing needs a mathlm Transformer inside the model")
            for t in transformers:
                t.config.activation_checkpointing = True
        if cfg.compile:
            for block in [m for m in model.modules() if isinstance(m, Block)] or [model]:
                block.compile()  # in place: parameter names (and checkpoints) stay as they are
        on_gpu = self.device.type == "cuda"
        self.wrapped = D.wrap_model(model, cfg.distributed, mixed_precision=cfg.bf16 and on_gpu)
        self.model = model  # sharded in place under FSDP2; never the DDP wrapper
        self.optimizer = build_optimizer(model, cfg)  # after sharding: FSDP2 parameters are DTensors
        self._autocast_on = on_gpu and cfg.bf16 and not D.is_fsdp(model)

        self.out_dir = Path(cfg.out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.metrics_file = self.out_dir / "metrics.jsonl"
        self.global_step = 0           # optimizer steps done (skipped NaN steps included)
        self.nan_steps = 0             # non-finite steps in total
        self.consecutive_nan = 0       # ... and in a row, now
        self.tokens_seen = 0           # input tokens over all ranks
        self.micro_batches_consumed = 0
        self._batch_iter = None
        self._skip_micro_batches = 0
        self._session = (time.perf_counter(), 0)  # (start time, steps) of this process, for the ETA

    # ------------------------------------------------------------------ the step

    def autocast(self):
        """The precision context of the training forward (bf16 autocast on GPU, else nothing), for
        code that runs the model outside `step`, e.g. an RL loop scoring its rollouts."""
        if self._autocast_on:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    _autocast = autocast  # the earlier private name, still used by mathlm/rl.py

    def step(self, micro_batches: Sequence[Any]) -> dict[str, float]:
        """One optimizer step over `micro_batches` (this rank's); returns the logged record."""
        cfg = self.config
        if len(micro_batches) == 0:
            raise ValueError("Trainer.step needs at least one micro-batch")
        t0 = time.perf_counter()
        micro_batches = [_to_device(b, self.device) for b in micro_batches]
        lr = lr_at(self.global_step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        kwargs = {}
        if self.token_normalized:
            count = sum(torch.as_tensor(self.count_targets(b), device=self.device).float() for b in micro_batches)
            kwargs["num_target_tokens"] = D.all_reduce(count).clamp_min(1.0) / self.world_size

        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for i, batch in enumerate(micro_batches):
            with D.gradient_sync(self.wrapped, enabled=i == len(micro_batches) - 1), self.autocast():
                loss, metrics = self.loss_fn(self.wrapped, batch, **kwargs)
                if not self.token_normalized:
                    loss = loss / len(micro_batches)
            loss.backward()
            loss_sum += loss.detach().float()
            for name, value in metrics.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    metric_sums[name] = metric_sums.get(name, 0.0) + value.detach().float().reshape(())
            tokens += batch["tokens"].numel() if isinstance(batch, dict) and "tokens" in batch else 0
        grad_norm = D.clip_grad_norm(self.model.parameters(), cfg.max_grad_norm)

        # One all-reduce and one device sync per step: means over ranks (tokens * world -> a sum).
        names = sorted(metric_sums)
        stats = torch.stack([loss_sum, torch.tensor(float(tokens * self.world_size), device=self.device)]
                            + [metric_sums[n] / len(micro_batches) for n in names])
        loss_value, step_tokens, *metric_values = D.all_reduce(stats, "mean").tolist()
        norm_value = float(grad_norm)
        finite = math.isfinite(loss_value) and math.isfinite(norm_value)
        if finite:
            self.optimizer.step()
            self.consecutive_nan = 0
        else:
            self.nan_steps += 1
            self.consecutive_nan += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self.tokens_seen += int(step_tokens)
        self._session = (self._session[0], self._session[1] + 1)

        elapsed = time.perf_counter() - t0
        record = {"step": self.global_step, "loss": loss_value, "lr": lr, "grad_norm": norm_value,
                  "tokens": self.tokens_seen, "tokens_per_s": step_tokens / max(elapsed, 1e-9),
                  "skipped": not finite, "nan_steps": self.nan_steps, **dict(zip(names, metric_values))}
        if self.global_step % cfg.log_every == 0 or self.global_step in (1, cfg.max_steps) or not finite:
            self._log(record)
        if self.consecutive_nan >= cfg.max_nan_steps:
            first = self.global_step - self.consecutive_nan + 1
            raise FloatingPointError(
                f"loss or gradient norm was not finite for {self.consecutive_nan} steps in a row (steps "
                f"{first}-{self.global_step}; last loss {loss_value}, grad norm {norm_value}; max_nan_steps="
                f"{cfg.max_nan_steps}); these updates were skipped. Lower lr, raise warmup_steps, or look "
                f"for bad data in those batches")
        return record

    def _log(self, record: dict) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if "loss" not in record:  # an evaluation record
            print(f"eval step {record['step']}: " + ", ".join(f"{k[5:]} {v:.4g}" for k, v in record.items()
                                                              if k.startswith("eval/")), flush=True)
            return
        start, steps = self._session
        eta = (time.perf_counter() - start) / steps * (self.config.max_steps - self.global_step)
        skipped = f" | SKIPPED (non-finite, {self.consecutive_nan} in a row)" if record["skipped"] else ""
        width = len(str(self.config.max_steps))
        print(f"step {record['step']:{width}d}/{self.config.max_steps} | loss {record['loss']:.4f} | "
              f"lr {record['lr']:.2e} | gnorm {record['grad_norm']:.3f} | "
              f"{record['tokens_per_s']:,.0f} tok/s | eta {_format_duration(eta)}{skipped}", flush=True)

    # ------------------------------------------------------------------ the loop

    def _next_micro_batch(self) -> Any:
        if self._batch_iter is None:
            if self.train_batches is None:
                raise ValueError("Trainer.train needs train_batches (or call Trainer.step yourself)")
            self._batch_iter = iter(self.train_batches)
            for _ in range(self._skip_micro_batches):  # resume of an iterable without state_dict
                next(self._batch_iter)
        try:
            batch = next(self._batch_iter)
        except StopIteration:
            raise RuntimeError(f"train_batches ran out after {self.micro_batches_consumed} micro-batches, at "
                               f"step {self.global_step} of max_steps {self.config.max_steps}: pass an endless "
                               f"iterator (mathlm.batching.BatchIterator) or lower max_steps") from None
        self.micro_batches_consumed += 1
        return batch

    def train(self, num_steps: int | None = None) -> dict[str, float]:
        """Run to `max_steps` (or `num_steps` more steps); evaluate and save as configured, and at the
        end of the run. Returns the last step's record."""
        cfg = self.config
        stop = cfg.max_steps if num_steps is None else min(cfg.max_steps, self.global_step + num_steps)
        record: dict[str, float] = {}
        while self.global_step < stop:
            record = self.step([self._next_micro_batch() for _ in range(cfg.grad_accum)])
            step, done = self.global_step, self.global_step == cfg.max_steps
            if self.eval_fn is not None and (done or (cfg.eval_every and step % cfg.eval_every == 0)):
                self.evaluate()
            if done or (cfg.save_every and step % cfg.save_every == 0):
                self.save()
        return record

    def evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.autocast():
            results = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train(was_training)
        self._log({"step": self.global_step, **{f"eval/{k}": v for k, v in results.items()}})
        return results

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything but the weights, optimizer and RNG: what trainer_state.pt holds."""
        if hasattr(self.train_batches, "state_dict"):
            data = {"iterator": self.train_batches.state_dict()}
        else:
            data = {"micro_batches": self.micro_batches_consumed}
        return {"step": self.global_step, "nan_steps": self.nan_steps, "consecutive_nan": self.consecutive_nan,
                "tokens_seen": self.tokens_seen, "micro_batches_consumed": self.micro_batches_consumed,
                "data": data, "stateful": {k: v.state_dict() for k, v in self.stateful.items()},
                "config": dataclasses.asdict(self.config), "world_size": self.world_size}

    def save(self, fmt: str | None = None) -> Path:
        """Checkpoint now to <out_dir>/checkpoints/step_<global_step> (every rank must call it)."""
        path = save_checkpoint(self.checkpoint_dir, self.global_step, self.model, self.optimizer,
                               self.state_dict(), fmt=fmt or self.config.checkpoint_format,
                               keep_last=self.config.keep_last, checksums=self.config.checksums,
                               tokenizer=self.tokenizer)
        if self.rank == 0:
            print(f"saved {path}", flush=True)
        return path

    def resume(self, path: str | os.PathLike = "latest", missing_ok: bool = False) -> bool:
        """Load a checkpoint (a step_* folder, or "latest" in <out_dir>/checkpoints) and continue
        from it. Returns False when "latest" finds none and missing_ok is set."""
        if path == "latest":
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                if missing_ok:
                    return False
                raise FileNotFoundError(f"no checkpoint to resume in {self.checkpoint_dir}")
        state = load_checkpoint(path, self.model, self.optimizer, checksums=self.config.checksums)
        self.global_step, self.nan_steps = state["step"], state["nan_steps"]
        self.consecutive_nan, self.tokens_seen = state["consecutive_nan"], state["tokens_seen"]
        self.micro_batches_consumed = state["micro_batches_consumed"]
        if "iterator" in state["data"]:
            if not hasattr(self.train_batches, "load_state_dict"):
                raise ValueError(f"{path} saved a data iterator position, but train_batches "
                                 f"({type(self.train_batches).__name__}) has no load_state_dict")
            self.train_batches.load_state_dict(state["data"]["iterator"])
        else:
            self._skip_micro_batches = state["data"]["micro_batches"]
        self._batch_iter = None
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["stateful"][name])
        if self.rank == 0:
            self._truncate_metrics(self.global_step)
            print(f"resumed from {path} at step {self.global_step}", flush=True)
        self._session = (time.perf_counter(), 0)
        return True

    def _truncate_metrics(self, step: int) -> None:
        """Drop metrics.jsonl records a killed run wrote after `step`, so the file reads as one run."""
        if not self.metrics_file.is_file():
            return
        kept = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line cut short by the kill
        tmp = self.metrics_file.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.metrics_file)
