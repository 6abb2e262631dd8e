"""Which implementation the attention kernels run: Triton or the pure-PyTorch reference path.

Three settings, for every public kernel function (its `backend=` argument) or globally:

- ``"auto"`` (default): Triton for CUDA tensors, and for CPU tensors when ``TRITON_INTERPRET=1``
  is set (the interpreter, as the tests use it); the reference path for CPU tensors otherwise,
  so the model runs everywhere with the same code.
- ``"triton"``: always the kernel; a CPU tensor without the interpreter is an error.
- ``"reference"``: always the plain PyTorch path (float32 math, autograd backward).

The global default comes from the environment variable ``MATHLM_KERNEL_BACKEND`` and can be
changed with ``set_kernel_backend`` or, for a block of code, ``with kernel_backend("reference"):``.

Triton itself is optional: without it the modules still import (with a stand-in for the few
names used at import time) and everything runs on the reference path.
"""
from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Iterator

import torch

BACKENDS = ("auto", "triton", "reference")


def _triton_stand_in():
    """Just enough of `triton` / `triton.language` for the kernel modules to import."""

    class Config:
        def __init__(self, kwargs, num_warps=4, num_stages=2, **_):
            self.kwargs, self.num_warps, self.num_stages = kwargs, num_warps, num_stages

    def jit(fn=None, **_):
        return fn if fn is not None else (lambda f: f)

    def autotune(*_, **__):
        return lambda fn: fn

    def next_power_of_2(n: int) -> int:
        return 1 << max(0, int(n) - 1).bit_length()

    stand_in = types.SimpleNamespace(
        Config=Config, jit=jit, autotune=autotune, next_power_of_2=next_power_of_2,
        cdiv=lambda a, b: -(-a // b))
    language = types.SimpleNamespace(constexpr=lambda value=None: value)
    return stand_in, language


try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # CPU-only installs: the reference path still works
    triton, tl = _triton_stand_in()
    HAS_TRITON = False

# Triton decides at decoration time whether @triton.jit gives an interpreted function; the
# variable must be set before triton is imported (tests/conftest.py does it).
INTERPRET = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _checked(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend ({backend!r}) must be one of {BACKENDS}")
    return backend


_default_backend = _checked(os.environ.get("MATHLM_KERNEL_BACKEND", "auto"))


def get_kernel_backend() -> str:
    """The global default backend ("auto", "triton" or "reference")."""
    return _default_backend


def set_kernel_backend(backend: str) -> None:
    """Set the global default backend used when a kernel call passes `backend=None`."""
    global _default_backend
    _default_backend = _checked(backend)


@contextmanager
def kernel_backend(backend: str) -> Iterator[None]:
    """`with kernel_backend("reference"): ...` runs the block on the given backend."""
    previous = get_kernel_backend()
    set_kernel_backend(backend)
    try:
        yield
    finally:
        set_kernel_backend(previous)


def use_triton(backend: str | None, x: torch.Tensor) -> bool:
    """Resolve `backend` (None = the global default) for inputs living where `x` lives."""
    backend = _checked(get_kernel_backend() if backend is None else backend)
    if backend == "reference":
        return False
    runnable = HAS_TRITON and (x.is_cuda or INTERPRET)
    if backend == "triton" and not runnable:
        why = "triton is not installed" if not HAS_TRITON else f"tensors are on {x.device} and TRITON_INTERPRET is not 1"
        raise ValueError(f"backend='triton' cannot run here: {why}; use backend='reference' or 'auto'")
    return runnable


def kernel_backend_info() -> dict:
    """What is available here: triton installed, interpreter on, a CUDA GPU, the default backend."""
    cuda = torch.cuda.is_available()
    return {"triton_installed": HAS_TRITON, "interpreter": INTERPRET, "cuda": cuda,
            "triton_runnable": HAS_TRITON and (cuda or INTERPRET), "default_backend": get_kernel_backend()}
