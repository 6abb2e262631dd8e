"""Losses for every training stage: SFT, the DPO family, PPO, GRPO, reward and critique models.

Pure tensor functions. Each loss takes tensors and returns ``(loss, diagnostics)``: a scalar loss
that carries gradients and a dict of detached scalar tensors for logging (call ``.item()`` when you
log). No module state, no optimizer, no distributed calls: the training loop owns those.
Checks that must read values (label ranges, rows without tokens, masked_var's count) cost one
device sync per call; everything else stays on the device.

Conventions (the same in every function; docs/losses.md explains them with examples)

- ``logits`` (B, T, V) predict ``labels`` (B, T) at the SAME position. The caller shifts:
  ``logits=model(ids)[:, :-1]`` with ``labels=ids[:, 1:]`` and ``mask=loss_mask[:, 1:]``.
- Masks (B, T) are bool or 0/1 numbers; True/1 marks a token that counts (a response token).
  Values at masked-out positions never change a result, not even NaN or inf there.
- RL tensors are right-padded per-token (B, T) tensors: log-probs, values, rewards, advantages.
  Masks may also be ragged inside a row (prompt in front, tool output in the middle): GAE skips
  masked positions, it does not discount through them.
- Sequence-level inputs (DPO log-probs, reward and critique scores) are (B,).
- Arithmetic runs in float32 (float64 inputs stay float64): bf16/fp16 inputs are upcast, so a
  bf16 model's logits give the same loss as their float32 copy.

The vocabulary-sized functions (``token_logprobs``, ``sft_loss``, ``sequence_logprobs``) work
chunk by chunk with a hand-written backward, so a (B, T, 128k) float32 log-softmax is never held
for the whole batch at once, in the forward or the backward.

Where the KL to the reference goes (RL) is the caller's explicit choice, never both silently:
``kl_penalty`` gives per-token estimates; either fold ``k1`` into the rewards with
``token_level_rewards(..., kl=..., kl_coef=...)`` ("kl in reward", InstructGPT / PPO-RLHF) or add
``kl_coef * aggregate_token_losses(kl_penalty(..., kind="k3"), mask)`` to the policy loss
("kl in loss", GRPO).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "token_logprobs",
    "sft_loss",
    "sequence_logprobs",
    "hard_sample_weights",
    "RunningLoss",
    "dpo_loss",
    "masked_sum",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "aggregate_token_losses",
    "gae",
    "ppo_policy_loss",
    "ppo_value_loss",
    "kl_penalty",
    "token_level_rewards",
    "grpo_advantages",
    "reward_loss",
    "critique_loss",
    "DPO_LOSS_TYPES",
    "AGGREGATIONS",
    "KL_KINDS",
]

DPO_LOSS_TYPES = ("sigmoid", "robust", "ipo", "hinge")
AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm")
KL_KINDS = ("k1", "k2", "k3")

# Elements of one float32 chunk of log-probs: 2**26 * 4 B = 256 MiB, i.e. ~520 tokens at V=128k.
_CHUNK_ELEMENTS = 2**26


# ---------------------------------------------------------------------------------------------
# Validation and dtype helpers


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _upcast(x: Tensor) -> Tensor:
    return x.to(_compute_dtype(x.dtype))


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _require_shape(name: str, x: Tensor, shape: Sequence[int]) -> None:
    if _shape(x) != tuple(shape):
        raise ValueError(f"{name} has shape {_shape(x)}, expected {tuple(shape)}")


def _require_dim(name: str, x: Tensor, dim: int, layout: str) -> None:
    if x.dim() != dim:
        raise ValueError(f"{name} must be {layout}, got shape {_shape(x)}")


def _bool_mask(name: str, mask: Tensor, shape: Sequence[int]) -> Tensor:
    _require_shape(name, mask, shape)
    return mask if mask.dtype == torch.bool else mask != 0


def _zero_outside(x: Tensor, valid: Tensor) -> Tensor:
    """``x`` with masked-out entries replaced by 0 (not multiplied: NaN * 0 is NaN, and the
    backward of ``where`` sends exactly zero gradient to the replaced entries)."""
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _detached(diagnostics: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.detach() for name, value in diagnostics.items()}


def _positive_normalizer(name: str, value: float | Tensor) -> float | Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {_shape(value)}")
        return value.to(torch.float32).reshape(())
    if not value > 0:
        raise ValueError(f"{name} ({value}) must be > 0")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Token log-probabilities, chunked over the vocabulary-sized dimension


def _chunks(B: int, T: int, V: int, chunk_size: int | None) -> Iterator[tuple[slice, slice]]:
    """(row slice, time slice) blocks of at most ``chunk_size`` token positions each. Blocks are
    views of (B, T, V) tensors, so a shifted, non-contiguous ``logits[:, :-1]`` is never copied."""
    n = chunk_size if chunk_size is not None else max(1, _CHUNK_ELEMENTS // V)
    if n >= T:
        rows = max(1, n // max(T, 1))
        for b in range(0, B, rows):
            yield slice(b, b + rows), slice(None)
    else:
        for b in range(B):
            for t in range(0, T, n):
                yield slice(b, b + 1), slice(t, t + n)


class _TokenLogprobs(torch.autograd.Function):
    """log softmax(logits / temperature)[label] per position, one chunk at a time.

    Forward keeps only the (B, T) log-sum-exp; backward recomputes softmax per chunk:
    d log p(y) / d z_j = (1[j = y] - p_j) / temperature. Labels < 0 are ignored (log-prob 0,
    gradient exactly 0, even when those logits are NaN)."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, chunk_size: int | None, temperature: float) -> Tensor:
        B, T, V = logits.shape
        cdt = _compute_dtype(logits.dtype)
        valid = labels >= 0  # (B, T)
        safe = labels.clamp_min(0)  # (B, T)
        out = torch.empty((B, T), dtype=cdt, device=logits.device)
        lse = torch.empty((B, T), dtype=cdt, device=logits.device)
        for bs, ts in _chunks(B, T, V, chunk_size):
            x = logits[bs, ts].to(cdt)  # (b, t, V), a copy only when upcasting
            if temperature != 1.0:
                x = x / temperature
            chunk_lse = torch.logsumexp(x, dim=-1)  # (b, t)
            out[bs, ts] = x.gather(-1, safe[bs, ts].unsqueeze(-1)).squeeze(-1) - chunk_lse
            lse[bs, ts] = chunk_lse
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return _zero_outside(out, valid)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        logits, safe, valid, lse = ctx.saved_tensors
        B, T, V = logits.shape
        g = _zero_outside(grad_out.to(lse.dtype), valid)  # (B, T)
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        for bs, ts in _chunks(B, T, V, ctx.chunk_size):
            # One float32 chunk buffer, updated in place (copy=True: never alias saved logits).
            d = logits[bs, ts].to(lse.dtype, copy=True)  # (b, t, V)
            if ctx.temperature != 1.0:
                d.div_(ctx.temperature)
            d.sub_(lse[bs, ts].unsqueeze(-1)).exp_()  # softmax
            gb = g[bs, ts].unsqueeze(-1)  # (b, t, 1)
            d.mul_(-gb).scatter_add_(-1, safe[bs, ts].unsqueeze(-1), gb)
            if ctx.temperature != 1.0:
                d.div_(ctx.temperature)
            d.masked_fill_(~valid[bs, ts].unsqueeze(-1), 0.0)  # NaN logits at ignored positions
            grad[bs, ts] = d.to(logits.dtype)
        return grad, None, None, None


def _check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    _require_dim("logits", logits, 3, "(B, T, V)")
    _require_shape("labels", labels, logits.shape[:2])
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")


def _check_chunking(chunk_size: int | None, temperature: float) -> None:
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size ({chunk_size}) must be >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature ({temperature}) must be > 0")


def token_logprobs(logits: Tensor, labels: Tensor, chunk_size: int | None = None,
                   temperature: float = 1.0) -> Tensor:
    """Per-token log p(label) under ``softmax(logits / temperature)``, (B, T), float32 (float64
    for float64 logits).

    ``logits`` (B, T, V) predict ``labels`` (B, T) at the same position (shift before calling).
    Labels < 0 (e.g. -100) are ignored: log-prob 0 and zero gradient. Computed in chunks of at
    most ``chunk_size`` token positions (default: ~2**26 / V), forward and backward, so the
    full-vocabulary float32 log-softmax never exists for the whole batch; the gradient equals the
    unchunked one (tests compare with float64 ``F.cross_entropy``). ``temperature`` must match the
    sampling temperature when these are the RL policy's log-probs.
    Validation syncs once: a label >= V raises ``ValueError``.
    """
    _check_logits_labels(logits, labels)
    _check_chunking(chunk_size, temperature)
    V = logits.shape[-1]
    if labels.numel() and int(labels.max()) >= V:
        raise ValueError(f"labels must be < vocabulary size V ({V}), got max label {int(labels.max())}")
    return _TokenLogprobs.apply(logits, labels, chunk_size, float(temperature))


def _masked_token_logprobs(logits: Tensor, labels: Tensor, mask: Tensor, mask_name: str,
                           chunk_size: int | None, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """(log-probs zero outside the mask (B, T), bool mask (B, T)); labels outside the mask may be
    anything (-100, padding), labels inside must lie in [0, V)."""
    _check_logits_labels(logits, labels)
    _check_chunking(chunk_size, temperature)
    valid = _bool_mask(mask_name, mask, labels.shape)
    V = logits.shape[-1]
    bad = valid & ((labels < 0) | (labels >= V))
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"labels[{b}, {t}] = {int(labels[b, t])} lies inside {mask_name} but outside "
                         f"the vocabulary [0, {V})")
    safe = labels.masked_fill(~valid, -100)
    return _TokenLogprobs.apply(logits, safe, chunk_size, float(temperature)), valid


# ---------------------------------------------------------------------------------------------
# Supervised fine-tuning


def sft_loss(logits: Tensor, labels: Tensor, loss_mask: Tensor, weights: Tensor | None = None,
             num_target_tokens: float | Tensor | None = None,
             chunk_size: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Token cross-entropy on the response, prompt masked, optional per-sample weights.

        loss = sum_b w_b sum_t m_bt * (-log p(labels_bt)) / N

    (maximum likelihood, Radford et al. 2018 eq. 1, restricted to target tokens). ``logits``
    (B, T, V) predict ``labels`` (B, T) at the same position (the caller shifts); ``loss_mask``
    (B, T) marks target tokens; ``weights`` (B,) e.g. from ``hard_sample_weights`` (w = 1 without).

    N = ``num_target_tokens``, default this batch's count sum(m). Under gradient accumulation
    pass the count of target tokens of the whole optimizer step (all micro-batches, all ranks):
    then the micro-batch losses sum to the full-batch token mean, whatever the split. DDP then
    averages gradients over ranks, so multiply the loss by the world size (or pass N / world size).

    Diagnostics: ``nll`` (unweighted token mean over this batch), ``num_target_tokens``,
    ``per_sample_nll`` (B,) (mean over each row's targets; feed it to ``RunningLoss``).
    """
    logp, valid = _masked_token_logprobs(logits, labels, loss_mask, "loss_mask", chunk_size)
    B = labels.shape[0]
    nll = -logp  # (B, T), zero outside the mask
    row_counts = valid.sum(dim=1).to(nll.dtype)  # (B,)
    count = row_counts.sum()
    row_nll = nll.sum(dim=1)  # (B,)
    if weights is not None:
        _require_shape("weights", weights, (B,))
        weighted = (row_nll * weights.to(nll.dtype)).sum()
    else:
        weighted = row_nll.sum()
    if num_target_tokens is None:
        denominator: float | Tensor = count.clamp_min(1.0)
    else:
        denominator = _positive_normalizer("num_target_tokens", num_target_tokens)
    loss = weighted / denominator
    with torch.no_grad():
        diagnostics = {
            "nll": row_nll.sum() / count.clamp_min(1.0),
            "num_target_tokens": count,
            "per_sample_nll": row_nll / row_counts.clamp_min(1.0),
        }
    return loss, _detached(diagnostics)


def sequence_logprobs(logits: Tensor, labels: Tensor, mask: Tensor, chunk_size: int | None = None,
                      temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per-sequence (sum, mean) of the log-probs of the masked (response) tokens, each (B,).

    Same conventions and chunking as ``sft_loss``. The sum is what DPO uses (log pi(y|x)); the
    mean (sum / number of response tokens, 0 for a row without any) is the length-normalised
    variant (IPO as implemented in TRL, the RPO NLL term).
    """
    logp, valid = _masked_token_logprobs(logits, labels, mask, "mask", chunk_size, temperature)
    total = logp.sum(dim=1)  # (B,)
    return total, total / valid.sum(dim=1).clamp_min(1).to(total.dtype)


# ---------------------------------------------------------------------------------------------
# Hard-sample weighting


def hard_sample_weights(scores: Tensor | Sequence[float] | None = None, losses: Tensor | Sequence[float] | None = None,
                        *, temperature: float = 1.0, min_weight: float = 0.0,
                        max_weight: float = math.inf) -> Tensor:
    """Dynamic per-sample loss weights: harder samples weigh more; the mean is 1.

    Hardness h_i = -scores_i (a low score is hard: a critique's P(correct), a problem's fraction of
    correct samples) or losses_i (a high, e.g. running, loss is hard); pass exactly one of the two,
    a (B,) tensor or a sequence of floats. Then

        w_i = clip(c * exp(h_i / temperature), min_weight, max_weight)

    with the one c > 0 that makes mean_i w_i = 1 (found by bisection on log c in float64, to
    float64 resolution). Without bounds this is w = B * softmax(h / temperature).
    Requires min_weight <= 1 <= max_weight (otherwise a mean of 1 is impossible). A larger
    temperature flattens the weights; equal hardness gives all ones. Deterministic, no gradient
    (the weights are constants for the loss they scale). Returns float32 on the input's device
    (CPU for a sequence); `.tolist()` gives the per-record `"weight"` that
    `mathlm.batching.encode_sft_records` and `mathlm.preference.encode_preference_pairs` read.
    Note the weights react to differences in h: losses that shrink during training give
    flatter weights at a fixed temperature.
    """
    if (scores is None) == (losses is None):
        raise ValueError("hard_sample_weights needs exactly one of scores= or losses=, got "
                         f"{'both' if scores is not None else 'neither'}")
    if not temperature > 0:
        raise ValueError(f"temperature ({temperature}) must be > 0")
    if not 0.0 <= min_weight <= 1.0 <= max_weight:
        raise ValueError(f"need 0 <= min_weight ({min_weight}) <= 1 <= max_weight ({max_weight}) "
                         "for weights with mean 1")
    source = scores if scores is not None else losses
    name = "scores" if scores is not None else "losses"
    if not isinstance(source, Tensor):
        source = torch.tensor([float(x) for x in source], dtype=torch.float64)
    _require_dim(name, source, 1, "(B,)")
    if source.numel() == 0:
        raise ValueError(f"{name} is empty")
    h = source.detach().to(device="cpu", dtype=torch.float64)
    if scores is not None:
        h = -h
    if not bool(torch.isfinite(h).all()):
        raise ValueError(f"{name} must be finite, got {source.tolist()}")
    z = (h - h.max()) / temperature  # <= 0, max 0
    n = z.numel()

    def weights_at(log_c: float) -> Tensor:
        return (z + log_c).exp().clamp(min_weight, max_weight)

    # mean(weights_at(log_c)) increases with log_c; at 0 every weight is <= 1, at -min(z) >= 1.
    # Bisection down to float64 resolution (at most ~1100 halvings; ~60 in practice).
    lo, hi = 0.0, float(-z.min())
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if float(weights_at(mid).sum()) < n:
            lo = mid
        else:
            hi = mid
    w = weights_at(hi)
    return w.to(device=source.device, dtype=torch.float32)


class RunningLoss:
    """Exponential moving average of each sample's loss, keyed by a sample id (an int).

        ema_i <- decay * ema_i + (1 - decay) * loss_i     (first sighting: ema_i = loss_i)

    Feed ``sft_loss(...)[1]["per_sample_nll"]`` with the batch's dataset indices; pass the
    returned EMAs to ``hard_sample_weights(losses=...)``. ``state_dict`` / ``load_state_dict``
    let the trainer checkpoint it.
    """

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay ({decay}) must be in [0, 1)")
        self.decay = decay
        self._ema: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._ema)

    def update(self, ids: Sequence[int] | Tensor, losses: Tensor) -> Tensor:
        """Update with one batch (ids in order; a repeated id is updated twice) and return the
        EMAs after the update, (B,) float32 on the device of ``losses``."""
        id_list = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
        _require_shape("losses", losses, (len(id_list),))
        values = losses.detach().to(device="cpu", dtype=torch.float64).tolist()
        out = []
        for i, value in zip(id_list, values):
            previous = self._ema.get(i)
            ema = value if previous is None else self.decay * previous + (1.0 - self.decay) * value
            self._ema[i] = ema
            out.append(ema)
        return torch.tensor(out, dtype=torch.float32, device=losses.device)

    def get(self, ids: Sequence[int] | Tensor, default: float) -> Tensor:
        """Current EMAs for ``ids`` (``default`` for ids never seen), (B,) float32 on CPU."""
        id_list = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
        return torch.tensor([self._ema.get(i, default) for i in id_list], dtype=torch.float32)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "ema": dict(self._ema)}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self._ema = {int(k): float(v) for k, v in state["ema"].items()}


# ---------------------------------------------------------------------------------------------
# Preference optimisation: DPO and relatives


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor | None = None, ref_rejected_logps: Tensor | None = None,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0, *,
             reference_free: bool = False, chosen_nll: Tensor | None = None,
             rpo_alpha: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Direct preference losses on summed sequence log-probs, each (B,); the loss is the batch mean.

    With h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) and ls(z) = log sigmoid(z):

    - ``sigmoid``: -ls(beta h), DPO (Rafailov et al. 2023, eq. 7). With ``label_smoothing`` eps
      the conservative cDPO loss -(1 - eps) ls(beta h) - eps ls(-beta h) (Mitchell 2023, "A note
      on DPO with noisy preferences"): the preference label is flipped with probability eps.
    - ``robust``: rDPO, (-(1 - eps) ls(beta h) + eps ls(-beta h)) / (1 - 2 eps), an unbiased loss
      under label noise eps (Chowdhury et al. 2024, "Provably robust DPO").
    - ``ipo``: (h - 1 / (2 beta))^2 (Azar et al. 2023, eq. 17, beta in the role of tau). TRL
      feeds it length-normalised log-probs (``sequence_logprobs(...)[1]``); that is the caller's
      choice.
    - ``hinge``: relu(1 - beta h), the SLiC-HF calibration loss (Zhao et al. 2023) on the DPO
      margin, i.e. margin 1/beta.

    ``reference_free=True`` sets the reference log-probs to 0 (h = log pi(y_w) - log pi(y_l));
    the ref arguments must then be omitted. ``rpo_alpha`` > 0 adds rpo_alpha * mean(chosen_nll),
    the NLL term of Iterative RPO (Pang et al. 2024, who use length-normalised NLL and weight 1):
    pass ``chosen_nll`` (B,), e.g. ``-sequence_logprobs(chosen ...)[1]``.

    Diagnostics (batch means): implicit rewards beta * (log pi - log ref) of chosen and rejected,
    their margin, accuracy (chosen reward > rejected reward), the policy log-probs, the
    preference part of the loss ``loss_preference`` and ``nll`` when the RPO term is on.
    """
    _check_dpo_options(loss_type, beta, label_smoothing, rpo_alpha, chosen_nll)
    _require_dim("policy_chosen_logps", policy_chosen_logps, 1, "(B,)")
    shape = _shape(policy_chosen_logps)
    _require_shape("policy_rejected_logps", policy_rejected_logps, shape)
    ref_chosen, ref_rejected = _dpo_reference(ref_chosen_logps, ref_rejected_logps, reference_free, shape,
                                              policy_chosen_logps.device)
    chosen_logratio = _upcast(policy_chosen_logps) - ref_chosen  # (B,)
    rejected_logratio = _upcast(policy_rejected_logps) - ref_rejected  # (B,)
    losses = _dpo_pair_losses(chosen_logratio - rejected_logratio, beta, loss_type, label_smoothing)  # (B,)
    preference = losses.mean()
    loss = preference
    with torch.no_grad():
        chosen_reward, rejected_reward = beta * chosen_logratio, beta * rejected_logratio
        diagnostics = {
            "loss_preference": preference,
            "reward_chosen": chosen_reward.mean(),
            "reward_rejected": rejected_reward.mean(),
            "reward_margin": (chosen_reward - rejected_reward).mean(),
            "reward_accuracy": (chosen_reward > rejected_reward).float().mean(),
            "logps_chosen": _upcast(policy_chosen_logps).mean(),
            "logps_rejected": _upcast(policy_rejected_logps).mean(),
        }
    if chosen_nll is not None:
        _require_shape("chosen_nll", chosen_nll, shape)
        nll = _upcast(chosen_nll).mean()
        loss = loss + rpo_alpha * nll
        diagnostics["nll"] = nll
    return loss, _detached(diagnostics)


def _check_dpo_options(loss_type: str, beta: float, label_smoothing: float, rpo_alpha: float,
                       chosen_nll: Tensor | None) -> None:
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} is not one of {DPO_LOSS_TYPES}")
    if not beta > 0:
        raise ValueError(f"beta ({beta}) must be > 0")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing ({label_smoothing}) must be in [0, 0.5)")
    if label_smoothing > 0 and loss_type not in ("sigmoid", "robust"):
        raise ValueError(f"label_smoothing ({label_smoothing}) applies to loss_type 'sigmoid' or "
                         f"'robust', not {loss_type!r}")
    if rpo_alpha < 0:
        raise ValueError(f"rpo_alpha ({rpo_alpha}) must be >= 0")
    if (rpo_alpha > 0) != (chosen_nll is not None):
        raise ValueError(f"chosen_nll and rpo_alpha > 0 go together (got rpo_alpha={rpo_alpha}, "
                         f"chosen_nll {'given' if chosen_nll is not None else 'missing'})")


def _dpo_reference(ref_chosen_logps: Tensor | None, ref_rejected_logps: Tensor | None, reference_free: bool,
                   shape: tuple, device: torch.device) -> tuple[Tensor, Tensor]:
    """The reference log-probs, checked and detached in float32 (zeros when reference_free)."""
    if reference_free:
        if ref_chosen_logps is not None or ref_rejected_logps is not None:
            raise ValueError("reference_free=True ignores the reference: do not pass ref_*_logps")
        zero = torch.zeros((), dtype=torch.float32, device=device)
        return zero, zero
    if ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError("ref_chosen_logps and ref_rejected_logps are required unless reference_free=True")
    _require_shape("ref_chosen_logps", ref_chosen_logps, shape)
    _require_shape("ref_rejected_logps", ref_rejected_logps, shape)
    return _upcast(ref_chosen_logps).detach(), _upcast(ref_rejected_logps).detach()


def _dpo_pair_losses(h: Tensor, beta: float, loss_type: str, eps: float) -> Tensor:
    """Each pair's loss from its log-ratio margin h (see `dpo_loss`)."""
    if loss_type == "sigmoid":
        return -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    if loss_type == "robust":
        return (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    if loss_type == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    return torch.relu(1 - beta * h)  # hinge


# ---------------------------------------------------------------------------------------------
# Masked reductions


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` over the entries where ``mask`` is true (all dims, or ``dim``)."""
    valid = _bool_mask("mask", mask, x.shape)
    x = _zero_outside(_upcast(x), valid)
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the masked entries (all dims, or ``dim``); 0 where there are none."""
    valid = _bool_mask("mask", mask, x.shape)
    count = valid.sum() if dim is None else valid.sum(dim=dim)
    return masked_sum(x, valid, dim) / count.clamp_min(1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of the masked entries of ``x`` (all dims). Unbiased (n - 1) needs >= 2 entries."""
    valid = _bool_mask("mask", mask, x.shape)
    n = int(valid.sum())
    if n < (2 if unbiased else 1):
        raise ValueError(f"masked_var needs at least {2 if unbiased else 1} masked entries "
                         f"(unbiased={unbiased}), got {n}")
    centered = _zero_outside(_upcast(x) - masked_mean(x, valid), valid)
    return (centered**2).sum() / (n - 1 if unbiased else n)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  unbiased: bool = True) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries; with ``shift_mean=False`` the mean is
    added back (scale only, as TRL does for rewards). Masked-out entries come back as 0."""
    valid = _bool_mask("mask", mask, x.shape)
    mean, var = masked_mean(x, valid), masked_var(x, valid, unbiased)
    whitened = (_upcast(x) - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return _zero_outside(whitened, valid)


def aggregate_token_losses(token_losses: Tensor, mask: Tensor, mode: str = "token_mean",
                           norm_length: int | None = None,
                           normalizer: float | Tensor | None = None) -> Tensor:
    """Reduce per-token losses (B, T) to a scalar; the choice changes the per-token weight.

    - ``token_mean``: sum over masked tokens / number of masked tokens: every token weighs the
      same (DAPO's token-level loss, Yu et al. 2025, Sec. 3.3).
    - ``seq_mean_token_mean``: mean over rows of each row's token mean: a token weighs
      1/|o_i| (GRPO as written in Shao et al. 2024, eq. 3).
    - ``seq_mean_token_sum``: mean over rows of each row's token sum.
    - ``seq_mean_token_sum_norm``: sum of token sums / (rows * ``norm_length``), a constant
      (default T, e.g. the generation budget): Dr. GRPO (Liu et al. 2025), free of length bias.

    Rows count only when they hold at least one masked token. ``normalizer`` replaces the
    denominator (tokens for ``token_mean``, rows otherwise; ``norm_length`` still applies):
    pass the count over all micro-batches / ranks to keep gradient accumulation exact.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation {mode!r} is not one of {AGGREGATIONS}")
    _require_dim("token_losses", token_losses, 2, "(B, T)")
    valid = _bool_mask("mask", mask, token_losses.shape)
    x = _zero_outside(_upcast(token_losses), valid)
    row_counts = valid.sum(dim=1)  # (B,)
    if mode == "token_mean":
        denominator = row_counts.sum().clamp_min(1) if normalizer is None else None
        total = x.sum()
    else:
        rows = (row_counts > 0).sum().clamp_min(1)
        denominator = rows if normalizer is None else None
        row_totals = x.sum(dim=1)  # (B,)
        if mode == "seq_mean_token_mean":
            row_totals = row_totals / row_counts.clamp_min(1)
        total = row_totals.sum()
        if mode == "seq_mean_token_sum_norm":
            length = token_losses.shape[1] if norm_length is None else norm_length
            if not length > 0:
                raise ValueError(f"norm_length ({length}) must be > 0")
            total = total / length
    if normalizer is not None:
        return total / _positive_normalizer("normalizer", normalizer)
    return total / denominator


# ---------------------------------------------------------------------------------------------
# PPO


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16), returns (advantages,
    returns), each (B, T), detached, zero outside the mask.

        delta_t = r_t + gamma V_{t'} - V_t,   A_t = delta_t + gamma lam A_{t'},   R_t = A_t + V_t

    where t' is the next MASKED-IN position of the same row (masked positions are skipped, not
    discounted through: prompt tokens in front, tool output in the middle, padding at the end);
    after a row's last masked-in token the episode ends (V = 0, A = 0). ``values[t]`` is V of the
    state in which token t is chosen; ``rewards[t]`` the reward received for token t (e.g. the
    score at the last response token minus a per-token KL, see ``token_level_rewards``).
    Rewards and values outside the mask are ignored.
    """
    _require_dim("rewards", rewards, 2, "(B, T)")
    _require_shape("values", values, rewards.shape)
    valid = _bool_mask("mask", mask, rewards.shape)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma ({gamma}) and lam ({lam}) must lie in [0, 1]")
    with torch.no_grad():
        r = _zero_outside(_upcast(rewards), valid)
        v = _zero_outside(_upcast(values), valid).to(r.dtype)
        B, T = r.shape
        advantages = torch.zeros_like(r)
        next_value = torch.zeros(B, dtype=r.dtype, device=r.device)
        next_adv = torch.zeros_like(next_value)
        for t in range(T - 1, -1, -1):
            m = valid[:, t]
            adv_t = r[:, t] + gamma * next_value - v[:, t] + gamma * lam * next_adv
            advantages[:, t] = torch.where(m, adv_t, 0.0)
            next_value = torch.where(m, v[:, t], next_value)
            next_adv = torch.where(m, adv_t, next_adv)
        returns = _zero_outside(advantages + v, valid)
    return advantages, returns


def _rl_inputs(logps: Tensor, mask: Tensor, **others: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Validate (B, T) RL tensors; return the bool mask and the others upcast with masked-out
    entries zeroed (so NaN/inf there can reach neither the loss nor the gradient)."""
    _require_dim("logps", logps, 2, "(B, T)")
    valid = _bool_mask("mask", mask, logps.shape)
    out = [_zero_outside(_upcast(logps), valid)]
    for name, x in others.items():
        if name == "advantages" and x.dim() == 1:
            _require_shape(name, x, logps.shape[:1])
            x = x.unsqueeze(1).expand(logps.shape)
        _require_shape(name, x, logps.shape)
        out.append(_zero_outside(_upcast(x), valid))
    return valid, out


def ppo_policy_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor,
                    clip_eps: float = 0.2, clip_eps_high: float | None = None,
                    dual_clip: float | None = None, aggregation: str = "token_mean",
                    norm_length: int | None = None,
                    normalizer: float | Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate policy loss (PPO, Schulman et al. 2017, eq. 7), per token, aggregated.

    ratio = exp(logps - old_logps) per token; per-token loss

        l = max(-A ratio, -A clip(ratio, 1 - clip_eps, 1 + clip_eps_high))

    ``clip_eps_high`` (default = ``clip_eps``) decouples the upper bound: DAPO's clip-higher
    (Yu et al. 2025, Sec. 3.1), e.g. 0.2 / 0.28. ``dual_clip`` = c > 1 bounds the loss of tokens
    with A < 0 by -c A, so a huge ratio on a bad token cannot blow up the step (dual-clip PPO,
    Ye et al. 2020). ``advantages`` is (B, T), or (B,) for one advantage per sequence (GRPO).
    ``old_logps`` and ``advantages`` are treated as constants (detached). The (B, T) losses are
    reduced by ``aggregate_token_losses(mode=aggregation, ...)``, token mean by default.

    Diagnostics (token means over the mask): ``clip_frac`` (the clipped term was selected),
    ``clip_frac_low`` / ``clip_frac_high`` (at the lower / upper bound), ``dual_clip_frac``,
    ``approx_kl`` (k3 estimate of KL(old || new)), ``ratio_mean``, ``ratio_max``.
    """
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps ({clip_eps}) must be in (0, 1)")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if not eps_high > 0:
        raise ValueError(f"clip_eps_high ({clip_eps_high}) must be > 0")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"dual_clip ({dual_clip}) must be > 1")
    valid, (lp, old, adv) = _rl_inputs(logps, mask, old_logps=old_logps, advantages=advantages)
    old, adv = old.detach(), adv.detach()
    log_ratio = lp - old
    ratio = log_ratio.exp()  # (B, T)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + eps_high)
    token_loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        dual_active = (adv < 0) & (token_loss > -dual_clip * adv)
        token_loss = torch.where(dual_active, -dual_clip * adv, token_loss)
    loss = aggregate_token_losses(token_loss, valid, aggregation, norm_length, normalizer)
    with torch.no_grad():
        clip_active = clipped > unclipped
        diagnostics = {
            "clip_frac": masked_mean(clip_active.float(), valid),
            "clip_frac_low": masked_mean((clip_active & (adv < 0)).float(), valid),
            "clip_frac_high": masked_mean((clip_active & (adv > 0)).float(), valid),
            "dual_clip_frac": masked_mean(dual_active.float(), valid) if dual_clip is not None
            else torch.zeros((), device=lp.device),
            "approx_kl": masked_mean(ratio - 1 - log_ratio, valid),
            "ratio_mean": masked_mean(ratio, valid),
            "ratio_max": torch.where(valid, ratio, 0.0).max() if ratio.numel() else ratio.sum(),
        }
    return loss, _detached(diagnostics)


def ppo_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                   clip: float | None = 0.2, aggregation: str = "token_mean",
                   norm_length: int | None = None,
                   normalizer: float | Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss, per token 0.5 * max((V - R)^2, (V_clip - R)^2) with
    V_clip = V_old + clip(V - V_old, -clip, clip); ``clip=None`` gives 0.5 (V - R)^2 (the
    squared-error L^VF of Schulman et al. 2017, eq. 9; the clipping is that of OpenAI baselines'
    ppo2, studied in Engstrom et al. 2020). Note ``clip`` is in reward units, unlike the policy
    ratio's. ``old_values`` and ``returns`` are constants. Aggregated as ``ppo_policy_loss``.

    Diagnostics: ``value_clip_frac`` (the clipped error was selected), ``value_mean``,
    ``explained_variance`` 1 - Var(R - V) / Var(R) over the mask (1 is perfect, <= 0 useless).
    """
    if clip is not None and not clip > 0:
        raise ValueError(f"clip ({clip}) must be > 0 or None")
    valid, (v, old, ret) = _rl_inputs(values, mask, old_values=old_values, returns=returns)
    old, ret = old.detach(), ret.detach()
    error = (v - ret) ** 2
    if clip is None:
        token_loss = 0.5 * error
        clip_active = torch.zeros_like(valid)
    else:
        clipped_error = (old + (v - old).clamp(-clip, clip) - ret) ** 2
        token_loss = 0.5 * torch.maximum(error, clipped_error)
        clip_active = clipped_error > error
    loss = aggregate_token_losses(token_loss, valid, aggregation, norm_length, normalizer)
    with torch.no_grad():
        residual = _zero_outside(ret - v, valid)
        residual_var = masked_mean((residual - masked_mean(residual, valid)) ** 2, valid)
        return_var = masked_mean((ret - masked_mean(ret, valid)) ** 2, valid)
        diagnostics = {
            "value_clip_frac": masked_mean(clip_active.float(), valid),
            "value_mean": masked_mean(v, valid),
            "explained_variance": 1 - residual_var / return_var.clamp_min(1e-12),
        }
    return loss, _detached(diagnostics)


def kl_penalty(logps: Tensor, ref_logps: Tensor, kind: str = "k1", mask: Tensor | None = None) -> Tensor:
    """Per-token estimates of KL(pi || ref) from tokens sampled by pi, (B, T) (or any shape),
    following Schulman, "Approximating KL divergence" (2020). With log r = ref_logps - logps:

    - ``k1`` = -log r: unbiased, high variance, can be negative.
    - ``k2`` = (log r)^2 / 2: biased (low bias for close policies), always >= 0.
    - ``k3`` = (r - 1) - log r: unbiased and >= 0; DeepSeekMath's GRPO KL term.

    As a LOSS on on-policy samples the gradients differ from the values: grad of k2 gives the
    gradient of KL(pi || ref) in expectation, grad of k3 that of the forward KL(ref || pi), and
    grad of k1 is zero in expectation (only noise). So "kl in reward" uses k1 (detached, through
    ``token_level_rewards``) and "kl in loss" uses k2 or k3. Zero outside ``mask`` if given.
    Computed in float32 without clamping (k3 overflows only for log r > 88).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KL_KINDS}")
    _require_shape("ref_logps", ref_logps, logps.shape)
    lp, ref = _upcast(logps), _upcast(ref_logps).detach()
    if mask is not None:
        valid = _bool_mask("mask", mask, logps.shape)
        lp, ref = _zero_outside(lp, valid), _zero_outside(ref, valid)
    log_r = ref - lp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    return log_r.exp() - 1 - log_r


def token_level_rewards(scores: Tensor, mask: Tensor, kl: Tensor | None = None,
                        kl_coef: float = 0.0) -> Tensor:
    """Per-token rewards (B, T) for GAE: each row's score (B,) at its last masked-in token, minus
    ``kl_coef * kl`` at every masked-in token ("kl in reward", Ouyang et al. 2022, eq. 2;
    Ziegler et al. 2019). Detached. A row without any masked-in token is an error (its score
    would be dropped silently).
    """
    _require_dim("mask", mask, 2, "(B, T)")
    valid = _bool_mask("mask", mask, mask.shape)
    _require_shape("scores", scores, mask.shape[:1])
    if kl_coef < 0:
        raise ValueError(f"kl_coef ({kl_coef}) must be >= 0")
    if kl_coef > 0 and kl is None:
        raise ValueError(f"kl_coef ({kl_coef}) > 0 needs the per-token kl")
    empty = ~valid.any(dim=1)
    if bool(empty.any()):
        raise ValueError(f"rows {empty.nonzero().flatten().tolist()} have no masked-in token to "
                         "carry their score")
    with torch.no_grad():
        T = mask.shape[1]
        last = T - 1 - valid.flip(1).int().argmax(dim=1)  # (B,) index of the last True
        rewards = torch.zeros(valid.shape, dtype=_compute_dtype(scores.dtype), device=scores.device)
        rewards[torch.arange(len(last), device=last.device), last] = _upcast(scores)
        if kl is not None:
            _require_shape("kl", kl, mask.shape)
            rewards = rewards - kl_coef * _zero_outside(_upcast(kl).to(rewards.dtype), valid)
    return rewards


# ---------------------------------------------------------------------------------------------
# GRPO


def grpo_advantages(rewards: Tensor, group_size: int, normalize_std: bool = True,
                    eps: float = 1e-6) -> Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024, DeepSeekMath Sec. 4.1.2, used in eq. 3):
    A_i = (r_i - mean(group)) / (std(group) + eps), std unbiased (n - 1), as in TRL.

    ``rewards`` (B,) hold consecutive groups of ``group_size`` samples of the same prompt. A
    group whose rewards are all equal gets exactly zero advantage (no signal, no rounding noise).
    ``normalize_std=False`` keeps only the mean baseline (Dr. GRPO, Liu et al. 2025: the std
    division up-weights too-easy and too-hard prompts). Returns (B,), detached; broadcast it to
    tokens by passing it as ``advantages`` to ``ppo_policy_loss``.
    """
    _require_dim("rewards", rewards, 1, "(B,)")
    if group_size < 2:
        raise ValueError(f"group_size ({group_size}) must be >= 2: a group of one has no baseline")
    if rewards.numel() % group_size:
        raise ValueError(f"number of rewards ({rewards.numel()}) must be divisible by group_size ({group_size})")
    with torch.no_grad():
        r = _upcast(rewards).view(-1, group_size)  # (groups, G)
        centered = r - r.mean(dim=1, keepdim=True)
        if normalize_std:
            centered = centered / (r.std(dim=1, keepdim=True) + eps)
        constant = r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True)
        advantages = torch.where(constant, 0.0, centered)
    return advantages.reshape(-1)


# ---------------------------------------------------------------------------------------------
# Reward and critique models


def reward_loss(chosen_scores: Tensor, rejected_scores: Tensor,
                margin: float | Tensor = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Bradley-Terry pairwise loss, mean over pairs of -log sigmoid(r_chosen - r_rejected - margin)
    (Ouyang et al. 2022, eq. 1; the margin as in Llama 2, Touvron et al. 2023, eq. 2), scores (B,),
    margin a float or (B,).

    Diagnostics: ``accuracy`` (r_chosen > r_rejected), ``margin`` mean of r_chosen - r_rejected,
    ``chosen_mean``, ``rejected_mean``.
    """
    _require_dim("chosen_scores", chosen_scores, 1, "(B,)")
    _require_shape("rejected_scores", rejected_scores, chosen_scores.shape)
    if isinstance(margin, Tensor):
        _require_shape("margin", margin, chosen_scores.shape)
        margin = _upcast(margin).detach()
    chosen, rejected = _upcast(chosen_scores), _upcast(rejected_scores)
    difference = chosen - rejected
    loss = -F.logsigmoid(difference - margin).mean()
    with torch.no_grad():
        diagnostics = {
            "accuracy": (difference > 0).float().mean(),
            "margin": difference.mean(),
            "chosen_mean": chosen.mean(),
            "rejected_mean": rejected.mean(),
        }
    return loss, _detached(diagnostics)


def critique_loss(logits: Tensor, labels: Tensor,
                  class_weights: Sequence[float] | Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Classification loss of the critique model (a verifier of whole solutions, as the outcome
    reward models of Cobbe et al. 2021 and Uesato et al. 2022).

    - Binary: ``logits`` (B,) score logits, ``labels`` (B,) in [0, 1] (bool, 0/1, or soft
      targets); binary cross-entropy -y log sigmoid(x) - (1 - y) log sigmoid(-x).
    - Multi-class: ``logits`` (B, C), ``labels`` (B,) integers in [0, C); cross-entropy.

    ``class_weights`` (w_0, w_1) or (C,) re-weight the classes; the loss is the weighted mean
    sum_i w_i l_i / sum_i w_i (as ``F.cross_entropy(weight=...)``), w_i = w_0 (1 - y_i) + w_1 y_i
    for binary labels. Without weights: the plain mean.

    Diagnostics: ``accuracy`` (logit > 0 vs label > 0.5, or argmax), and for binary labels
    ``mean_prob`` (mean sigmoid) and ``positive_rate`` (mean label).
    """
    if logits.dim() not in (1, 2):
        raise ValueError(f"logits must be (B,) for a binary or (B, C) for a multi-class critique, "
                         f"got shape {_shape(logits)}")
    B = logits.shape[0]
    _require_shape("labels", labels, (B,))
    x = _upcast(logits)
    n_classes = 2 if logits.dim() == 1 else logits.shape[1]
    if class_weights is not None:
        cw = torch.as_tensor(class_weights, dtype=x.dtype, device=x.device)
        _require_shape("class_weights", cw, (n_classes,))
        if bool((cw < 0).any()) or not bool((cw > 0).any()):
            raise ValueError(f"class_weights must be >= 0 with at least one > 0, got {cw.tolist()}")
    if logits.dim() == 1:
        y = labels.to(x.dtype)
        if bool(((y < 0) | (y > 1)).any()):
            raise ValueError(f"binary labels must lie in [0, 1], got min {float(y.min())}, max {float(y.max())}")
        losses = -y * F.logsigmoid(x) - (1 - y) * F.logsigmoid(-x)  # (B,)
        sample_w = None if class_weights is None else cw[0] * (1 - y) + cw[1] * y
        correct = (x > 0) == (y > 0.5)
    else:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"multi-class labels must be integers, got dtype {labels.dtype}")
        if bool(((labels < 0) | (labels >= n_classes)).any()):
            raise ValueError(f"labels must lie in [0, {n_classes}), got {labels.tolist()}")
        losses = -x.log_softmax(dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
        sample_w = None if class_weights is None else cw[labels]
        correct = x.argmax(dim=-1) == labels
    if sample_w is None:
        loss = losses.mean()
    else:
        loss = (losses * sample_w).sum() / sample_w.sum().clamp_min(torch.finfo(x.dtype).tiny)
    with torch.no_grad():
        diagnostics = {"accuracy": correct.float().mean()}
        if logits.dim() == 1:
            diagnostics["mean_prob"] = torch.sigmoid(x).mean()
            diagnostics["positive_rate"] = y.mean()
    return loss, _detached(diagnostics)
