"""Triton kernels for mathlm, installed as `mathlm.kernels`; each has a pure-PyTorch reference path.

- flash_attention / flash_attention_varlen: FlashAttention-2 forward and backward with flash-attn's
  semantics (causal bottom-right, sliding windows, GQA/MQA, packed variable-length batches).
- block_sparse_attention: the same tiles over the kept blocks of a layout only; layouts from
  sparse_layouts (local band, Sparse Transformer strided/fixed, global, BigBird, random).

Which path runs: Triton for CUDA tensors or under TRITON_INTERPRET=1, the reference path for CPU
tensors otherwise; force one with `backend=` on a call, `set_kernel_backend(...)`,
`with kernel_backend("reference"): ...` or MATHLM_KERNEL_BACKEND=reference. docs/kernels.md has
the details and figures.
"""
from .flash_attention import flash_attention, flash_attention_varlen
from .sparse_attention import block_sparse_attention
from .sparse_layouts import (bigbird_layout, dense_layout, fixed_layout, global_layout, layout_density,
                             layout_for_pattern, layout_to_token_mask, local_layout, num_blocks_for, random_layout,
                             strided_layout)
from .backend import get_kernel_backend, kernel_backend, kernel_backend_info, set_kernel_backend

__all__ = [
    "flash_attention", "flash_attention_varlen", "block_sparse_attention",
    "dense_layout", "local_layout", "strided_layout", "fixed_layout", "global_layout", "random_layout",
    "bigbird_layout", "layout_density", "layout_to_token_mask", "layout_for_pattern", "num_blocks_for",
    "kernel_backend", "set_kernel_backend", "get_kernel_backend", "kernel_backend_info",
]
