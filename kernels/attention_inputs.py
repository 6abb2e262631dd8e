"""Checks on attention inputs shared by the flash and block-sparse kernels (ValueErrors that name
the offending values), and a per-tensor cache for facts that cost a device sync to establish."""
from __future__ import annotations

import math
from typing import Callable, TypeVar

import torch

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
T = TypeVar("T")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, packed: bool) -> None:
    """q (B, Tq, Hq, D), k and v (B, Tk, Hkv, D); packed (varlen): (total, H, D) without B."""
    layout = "(total_tokens, heads, head_dim)" if packed else "(batch, seqlen, heads, head_dim)"
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != (3 if packed else 4):
            raise ValueError(f"{name} must be {layout}, got shape {tuple(x.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must be floating point, got {q.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if not packed and q.shape[0] != k.shape[0]:
        raise ValueError(f"q and k must have the same batch size, got {q.shape[0]} and {k.shape[0]}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head_dim, got {q.shape[-1]} and {k.shape[-1]}")
    hq, hkv = q.shape[-2], k.shape[-2]
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    if not packed and (q.shape[1] == 0 or k.shape[1] == 0):
        raise ValueError(f"sequence lengths must be >= 1, got q {q.shape[1]} and k {k.shape[1]}")


def check_kernel_inputs(q: torch.Tensor) -> None:
    """What the Triton kernels support beyond `check_qkv` (the reference path takes any float)."""
    if q.dtype not in KERNEL_DTYPES:
        raise ValueError(f"the Triton kernels take float16, bfloat16 or float32, got {q.dtype} "
                         f"(use backend='reference' for other dtypes)")
    d = q.shape[-1]
    if not (8 <= d <= MAX_HEAD_DIM and d % 8 == 0):
        raise ValueError(f"head_dim ({d}) must be a multiple of 8 between 8 and {MAX_HEAD_DIM} for the Triton kernels")


def check_window(window_size) -> tuple[int, int]:
    """flash-attn's (left, right) window: -1 means unbounded on that side."""
    try:
        left, right = (int(w) for w in window_size)
    except (TypeError, ValueError):
        raise ValueError(f"window_size ({window_size!r}) must be a pair (left, right) of ints") from None
    if left < -1 or right < -1:
        raise ValueError(f"window_size ({window_size!r}) entries must be >= 0, or -1 for unbounded")
    return left, right


def softmax_scale_for(q: torch.Tensor, softmax_scale: float | None) -> float:
    if softmax_scale is None:
        return 1.0 / math.sqrt(q.shape[-1])
    if not math.isfinite(softmax_scale):
        raise ValueError(f"softmax_scale ({softmax_scale}) must be finite")
    return float(softmax_scale)


def cached_on_tensor(x: torch.Tensor, name: str, build: Callable[[], T]) -> T:
    """`build()`, computed once per tensor object and content version.

    The result is stored on the tensor itself, so it lives and dies with it and an in-place
    change (which bumps `x._version`) rebuilds it; used for facts that need a device sync
    (validated cu_seqlens, the block-sparse index of a layout).
    """
    try:
        version = x._version
    except RuntimeError:  # inference-mode tensors have no version counter: no caching
        return build()
    cached = getattr(x, name, None)
    if cached is not None and cached[0] == version:
        return cached[1]
    value = build()
    setattr(x, name, (version, value))
    return value


def contiguous_last(x: torch.Tensor) -> torch.Tensor:
    """The kernels take any strides except along head_dim, which must be 1."""
    return x if x.stride(-1) == 1 else x.contiguous()
