"""Autotuning for the attention kernels: config families for Ampere and Hopper, one prune function,
and a fixed small config under the Triton interpreter.

A kernel is wrapped once, at import, in a `TunedKernel`:

    _fwd = TunedKernel(_fwd_kernel, FWD_CONFIGS, TUNING_KEY, prune, {"BLOCK_M": 64, "BLOCK_N": 32})
    _fwd[lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), B * H)](q, k, ...)   # as with triton.autotune

On a GPU the configs of the device's family (Hopper: sm90+, Ampere: sm80-sm89) are pruned by the
shapes the call brings (head_dim, how many rows the tiled axis has, the layout block size for the
block-sparse kernels) and by an estimate of their shared memory, then benchmarked once per key.
The keys are bucketed lengths (next power of two), so decoding with a growing cache tunes once per
doubling, not once per step. Under the interpreter (TRITON_INTERPRET=1) no benchmarking happens:
every launch uses the small fixed config, which keeps CPU tests fast.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .backend import INTERPRET, triton


def config(block_m: int, block_n: int, num_warps: int, num_stages: int) -> "triton.Config":
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=num_warps, num_stages=num_stages)


def length_bucket(n: int) -> int:
    """The autotuning key for a sequence length: the next power of two, at least 16."""
    return max(16, triton.next_power_of_2(int(n)))


def _device_family(device: torch.device) -> tuple[str, int]:
    """("hopper" | "ampere", shared memory per block in bytes) of a CUDA device."""
    major, _ = torch.cuda.get_device_capability(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = triton.runtime.driver.active.utils.get_device_properties(index)
    return ("hopper" if major >= 9 else "ampere"), props["max_shared_mem"]


def prune_configs(families: dict[str, list], named_args: dict[str, Any], *, tensor: str,
                  rows_key: str, rows_block: str, stream_block: str,
                  block_limit: str | None = None) -> list:
    """Keep the configs of the device's family that fit the call.

    rows_block: the config's tile on the axis a program owns (e.g. BLOCK_M in the forward); tiles
    much taller than the longest sequence (`rows_key`, a bucketed length) are dropped, and the short
    family joins for short sequences (decoding: one query row). stream_block: the tile streamed
    through the loop, whose K/V-sized buffers are multiplied by num_stages in shared memory.
    block_limit: an argument the tiles must not exceed (the layout block of block-sparse kernels).
    """
    family, smem = _device_family(named_args[tensor].device)
    head_dim = triton.next_power_of_2(named_args["HEAD_DIM"])
    elem = named_args[tensor].element_size()
    rows = named_args[rows_key]
    candidates = families[family] + (families.get("short", []) if rows <= 64 else [])
    limit = named_args[block_limit] if block_limit else 1 << 30

    def fits(c) -> bool:
        r, s = c.kwargs[rows_block], c.kwargs[stream_block]
        shared = elem * head_dim * (r + 2 * s * max(c.num_stages, 1))
        return r <= max(16, rows) and r <= limit and s <= limit and shared <= smem

    kept = [c for c in candidates if fits(c)]
    if kept:
        return kept
    # Nothing fits the estimate (head_dim 256 on small GPUs): the smallest tiles, one stage.
    smallest = min(candidates, key=lambda c: (c.kwargs[rows_block] * c.kwargs[stream_block], c.num_stages))
    tiles = {name: min(size, limit) for name, size in smallest.kwargs.items()}
    return [triton.Config(tiles, num_warps=4, num_stages=1)]


class TunedKernel:
    """A @triton.jit kernel launched through triton.autotune on GPUs, with a fixed config under
    the interpreter. `interpreter_config` is a dict of meta-parameters or a function of the
    launch's keyword arguments returning one (block-sparse tiles depend on the layout block)."""

    def __init__(self, kernel, families: dict[str, list], key: list[str],
                 prune: Callable[[list, dict], list],
                 interpreter_config: dict | Callable[[dict], dict]):
        self.kernel = kernel
        self.interpreter_config = interpreter_config
        configs = [c for family in families.values() for c in family]
        self.tuned = triton.autotune(
            configs=configs, key=key,
            prune_configs_by={"early_config_prune": lambda cs, nargs, **kw: prune(cs, {**nargs, **kw})})(kernel)

    def __getitem__(self, grid: Callable[[dict], tuple]):
        def launch(*args, **kwargs):
            if INTERPRET:
                meta = self.interpreter_config
                meta = meta(kwargs) if callable(meta) else meta
                return self.kernel[grid(meta)](*args, **kwargs, **meta)
            return self.tuned[grid](*args, **kwargs)

        return launch
