"""Block layouts for block-sparse attention: which (query block, key block) pairs are computed.

A layout is a bool tensor of shape (heads, num_blocks, num_blocks), heads = 1 (shared by all
heads) or the number of query heads; entry [h, m, n] keeps query block m against key block n.
Layouts combine with the tensor operators: `local | global_` (union), `a & b` (intersection),
broadcasting a shared layout against a per-head one. `layout_density` says what fraction is kept.

Patterns (credits):
- local band: each query block sees itself and the window - 1 blocks before it (and, without
  causal, after it); GPT-3 alternates dense layers with such "locally banded" sparse layers.
- strided and fixed: the two factorised patterns of the Sparse Transformer (Child, Gray, Radford,
  Sutskever, "Generating Long Sequences with Sparse Transformers", 2019; OpenAI's blocksparse).
- global blocks: Longformer's global attention (Beltagy, Peters, Cohan, 2020): a few blocks see
  everything and are seen by everything.
- BigBird (Zaheer et al., 2020): global + sliding window + random blocks, seeded.

With causal=True every builder keeps only blocks on or below the diagonal (key block <= query
block); the kernel then masks tokens inside the diagonal blocks.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

Device = torch.device | str | None


def num_blocks_for(seqlen: int, block_size: int) -> int:
    """How many blocks of block_size cover seqlen tokens (the last one may be partial)."""
    return -(-seqlen // block_size)


def _grid(num_blocks: int, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
    if num_blocks < 1:
        raise ValueError(f"num_blocks ({num_blocks}) must be >= 1")
    idx = torch.arange(num_blocks, device=device)
    return idx[:, None], idx[None, :]  # query block m (nb, 1), key block n (1, nb)


def _finish(keep: torch.Tensor, causal: bool) -> torch.Tensor:
    """(nb, nb) or (H, nb, nb) -> (H, nb, nb) bool, cut to the lower triangle when causal."""
    keep = keep if keep.dim() == 3 else keep[None]
    return keep.tril() if causal else keep.clone()


def dense_layout(num_blocks: int, causal: bool = False, device: Device = None) -> torch.Tensor:
    """Every block (causal: every block on or below the diagonal)."""
    m, n = _grid(num_blocks, device)
    return _finish((m >= 0) & (n >= 0), causal)


def local_layout(num_blocks: int, window_blocks: int, causal: bool = True, device: Device = None) -> torch.Tensor:
    """Band: query block m sees key blocks n with |m - n| < window_blocks (causal: 0 <= m - n < window_blocks)."""
    if window_blocks < 1:
        raise ValueError(f"window_blocks ({window_blocks}) must be >= 1")
    m, n = _grid(num_blocks, device)
    return _finish((m - n).abs() < window_blocks, causal)


def strided_layout(num_blocks: int, stride: int, causal: bool = True, device: Device = None) -> torch.Tensor:
    """Sparse Transformer "strided": the previous `stride` blocks (local) and every stride-th block
    before them, (m - n) % stride == 0 (without causal, the same on both sides)."""
    if stride < 1:
        raise ValueError(f"stride ({stride}) must be >= 1")
    m, n = _grid(num_blocks, device)
    return _finish(((m - n).abs() < stride) | ((m - n) % stride == 0), causal)


def fixed_layout(num_blocks: int, stride: int, summary_blocks: int = 1, causal: bool = True,
                 device: Device = None) -> torch.Tensor:
    """Sparse Transformer "fixed": blocks of the query's own chunk of `stride` blocks, and the last
    `summary_blocks` blocks of every chunk (n % stride >= stride - summary_blocks)."""
    if stride < 1 or not 1 <= summary_blocks <= stride:
        raise ValueError(f"need stride >= 1 and 1 <= summary_blocks <= stride, got stride ({stride}) and "
                         f"summary_blocks ({summary_blocks})")
    m, n = _grid(num_blocks, device)
    return _finish((m // stride == n // stride) | (n % stride >= stride - summary_blocks), causal)


def global_layout(num_blocks: int, global_blocks: int | Sequence[int], causal: bool = False,
                  device: Device = None) -> torch.Tensor:
    """Longformer global attention: the given blocks (an int k = the first k) see every block and
    are seen by every block."""
    m, n = _grid(num_blocks, device)
    ids = list(range(global_blocks)) if isinstance(global_blocks, int) else list(global_blocks)
    bad = [i for i in ids if not 0 <= i < num_blocks]
    if bad or (isinstance(global_blocks, int) and global_blocks < 0):
        raise ValueError(f"global blocks {bad or global_blocks} out of range for num_blocks ({num_blocks})")
    is_global = torch.zeros(num_blocks, dtype=torch.bool, device=m.device)
    is_global[ids] = True
    return _finish(is_global[:, None] | is_global[None, :], causal)


def random_layout(num_blocks: int, density: float, seed: int = 0, num_heads: int = 1, causal: bool = False,
                  device: Device = None) -> torch.Tensor:
    """Each block kept independently with probability `density` (rows may end up empty);
    different per head when num_heads > 1. For tests and benchmarks."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density ({density}) must be in [0, 1]")
    _grid(num_blocks, device)
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(num_heads, num_blocks, num_blocks, generator=g) < density
    return _finish(keep.to(device), causal)


def _random_blocks(num_blocks: int, per_row: int, seed: int, num_heads: int, causal: bool,
                   exclude: torch.Tensor) -> torch.Tensor:
    """(H, nb, nb): per_row random blocks per query-block row, outside `exclude` (H or 1, nb, nb).
    Row m draws from its own generator, so with causal a longer layout extends a shorter one
    (the model's KV-cache decode sees the same random blocks as the prefill)."""
    keep = torch.zeros(num_heads, num_blocks, num_blocks, dtype=torch.bool)
    exclude = exclude.cpu().expand(num_heads, -1, -1)
    for m in range(num_blocks):
        width = m + 1 if causal else num_blocks
        scores = torch.rand(num_heads, width, generator=torch.Generator().manual_seed(seed * 1_000_003 + m))
        scores = scores.masked_fill(exclude[:, m, :width], -1.0)
        top = scores.topk(min(per_row, width), dim=-1)
        chosen = torch.zeros(num_heads, width, dtype=torch.bool).scatter_(1, top.indices, top.values >= 0)
        keep[:, m, :width] = chosen
    return keep


def bigbird_layout(num_blocks: int, window_blocks: int = 2, global_blocks: int = 2, random_blocks: int = 3,
                   seed: int = 0, num_heads: int = 1, causal: bool = False, device: Device = None) -> torch.Tensor:
    """BigBird: `global_blocks` leading global blocks, a local band (as `local_layout`: 2 gives the
    paper's 3-block sliding window) and `random_blocks` random key blocks per query-block row,
    drawn outside the band and the globals, seeded, different per head when num_heads > 1."""
    structured = local_layout(num_blocks, window_blocks, causal, "cpu")
    if global_blocks:
        structured = structured | global_layout(num_blocks, min(global_blocks, num_blocks), causal, "cpu")
    if random_blocks < 0:
        raise ValueError(f"random_blocks ({random_blocks}) must be >= 0")
    keep = structured | _random_blocks(num_blocks, random_blocks, seed, num_heads, causal, structured)
    return keep.to(device)


def layout_density(layout: torch.Tensor, causal: bool = False) -> float:
    """Fraction of blocks kept; with causal=True, of the blocks on or below the diagonal."""
    heads, nb, _ = layout.shape
    total = heads * (nb * (nb + 1) // 2 if causal else nb * nb)
    return layout.sum().item() / total


def layout_to_token_mask(layout: torch.Tensor, block_size: int, seqlen: int, causal: bool = False) -> torch.Tensor:
    """(H, seqlen, seqlen) bool token mask of a layout (with causal, ANDed with the token-level
    lower triangle): what block_sparse_attention computes, as a dense mask."""
    mask = layout.repeat_interleave(block_size, 1).repeat_interleave(block_size, 2)[:, :seqlen, :seqlen]
    if causal:
        mask = mask & torch.ones(seqlen, seqlen, dtype=torch.bool, device=layout.device).tril()
    return mask


# Defaults of the model's config fields that layout_for_pattern reads (mathlm.config.ModelConfig).
PATTERN_SETTINGS = {"sparse_local_blocks": 4, "sparse_stride": 4, "sparse_global_blocks": 1,
                    "sparse_random_blocks": 1}
PATTERNS = ("dense", "local", "strided", "fixed", "bigbird")


def layout_for_pattern(pattern: str, num_blocks: int, settings: Any = None, causal: bool = True,
                       device: Device = None) -> torch.Tensor:
    """The (1, nb, nb) causal layout of a named per-layer pattern, as a model config names it.

    settings: any object with the attributes of PATTERN_SETTINGS (e.g. mathlm's ModelConfig);
    missing ones take the defaults. BigBird's random blocks use seed 0, so every forward (and every
    decode step) of a layer sees the same layout.
    """
    s = {name: getattr(settings, name, default) for name, default in PATTERN_SETTINGS.items()}
    if pattern == "dense":
        return dense_layout(num_blocks, causal, device)
    if pattern == "local":
        return local_layout(num_blocks, s["sparse_local_blocks"], causal, device)
    if pattern == "strided":
        return strided_layout(num_blocks, s["sparse_stride"], causal, device)
    if pattern == "fixed":
        return fixed_layout(num_blocks, s["sparse_stride"], causal=causal, device=device)
    if pattern == "bigbird":
        return bigbird_layout(num_blocks, window_blocks=s["sparse_local_blocks"], global_blocks=s["sparse_global_blocks"],
                              random_blocks=s["sparse_random_blocks"], seed=0, causal=causal, device=device)
    raise ValueError(f"unknown attention pattern {pattern!r}; valid patterns: {', '.join(PATTERNS)}")
