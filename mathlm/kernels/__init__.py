"""Triton kernels for mathlm, installed as `mathlm.kernels`; each has a pure-PyTorch reference path.

- flash_attention / flash_attention_varlen: FlashAttention-2 forward and backward with flash-attn's
  semantics (causal bottom-right, sliding windows, GQA/MQA, packed variable-length batches).
- block_sparse_attention: the same tiles over the kept blocks of a layout only; layouts from
  sparse_layouts (local band, Sparse Transformer strided/fixed, global, BigBird, random).

Which path runs: Triton for CUDA tensors or under TRITON_INTERPRET=1, the reference path for CPU
tensors otherwise; force one with `backend=` on a call, `set_kernel_backend(...)`,
`with kernel_backend("reference"): ...` or MATHLM_KERNEL_BACKEND=reference. docs/kernels.md has
the details and figures.

Where the modules live: the kernel sources are the repository's top-level `kernels/` folder, which
has no `__init__.py` on purpose. Without one it is at most a namespace-package portion, and Python
prefers any installed regular package or module of the same name to a namespace portion wherever it
stands on sys.path, so running from the repository root never shadows Hugging Face's `kernels`
distribution. This file is the package's `__init__`: in a wheel the kernel modules are copied beside
it (setup.py); in a source checkout or editable install it adds the top-level folder to `__path__`.
"""
from pathlib import Path as _Path

_here = _Path(__file__).resolve().parent
if not (_here / "flash_attention.py").is_file():  # source checkout / editable install
    __path__.append(str(_here.parents[1] / "kernels"))
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
