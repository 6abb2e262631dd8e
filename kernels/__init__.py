"""Triton kernels for mathlm, installed as `mathlm.kernels`; each has a pure-PyTorch reference path.

- flash_attention / flash_attention_varlen: FlashAttention-2 forward and backward with flash-attn's
  semantics (causal bottom-right, sliding windows, GQA/MQA, packed variable-length batches).

Which path runs: Triton for CUDA tensors or under TRITON_INTERPRET=1, the reference path for CPU
tensors otherwise; force one with `backend=` on a call, `set_kernel_backend(...)`,
`with kernel_backend("reference"): ...` or MATHLM_KERNEL_BACKEND=reference. docs/kernels.md has
the details and figures.
"""
from .flash_attention import flash_attention, flash_attention_varlen
from .backend import get_kernel_backend, kernel_backend, kernel_backend_info, set_kernel_backend

__all__ = [
    "flash_attention", "flash_attention_varlen",
    "kernel_backend", "set_kernel_backend", "get_kernel_backend", "kernel_backend_info",
]
