"""The pure-PyTorch reference path of the attention kernels.

One function, `masked_attention`, computes softmax attention under a boolean mask of visible
(query, key) pairs, with the kernels' conventions: (B, T, H, D) layout, GQA/MQA by grouping query
heads (K/V are never repeated in memory), float32 math for float16/bfloat16/float32 inputs
(float64 stays float64), a row with no visible key giving output 0 and logsumexp +inf. Its
backward is autograd's. The flash and block-sparse reference paths only build the mask.
"""
from __future__ import annotations

import torch


def window_mask(seqlen_q: int, seqlen_k: int, causal: bool, window_size: tuple[int, int],
                device: torch.device | str | None = None) -> torch.Tensor:
    """(Tq, Tk) bool: query i sees key j iff i + d - left <= j <= i + d + right, d = Tk - Tq
    (flash-attn's bottom-right alignment); causal sets right = 0; -1 leaves a side unbounded."""
    left, right = window_size
    if causal:
        right = 0
    i = torch.arange(seqlen_q, device=device)[:, None]
    j = torch.arange(seqlen_k, device=device)[None, :]
    diag = seqlen_k - seqlen_q
    visible = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if right >= 0:
        visible &= j <= i + diag + right
    if left >= 0:
        visible &= j >= i + diag - left
    return visible


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                     softmax_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (B, Tq, Hq, D) over k, v (B, Tk, Hkv, D) where `mask` allows it.

    mask: bool, (Tq, Tk) or (Hq or 1, Tq, Tk) or (B, Hq or 1, Tq, Tk); None = all visible.
    Returns out (B, Tq, Hq, D) in q's dtype and logsumexp (B, Hq, Tq) in float32 (+inf for rows
    that see no key, whose output is 0).
    """
    B, Tq, Hq, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qg = q.to(compute).view(B, Tq, Hkv, group, D)
    scores = torch.einsum("bqhgd,bkhd->bhgqk", qg, k.to(compute)) * softmax_scale  # (B, Hkv, G, Tq, Tk)
    if mask is not None:
        mask = mask.view((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B or 1, Hq or 1, Tq, Tk)
        if mask.shape[1] != 1:
            mask = mask.view(mask.shape[0], Hkv, group, Tq, Tk)
        else:
            mask = mask[:, :, None]
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hkv, G, Tq); -inf where a row sees nothing
    empty = torch.isneginf(lse)
    probs = torch.exp(scores - lse.masked_fill(empty, 0.0)[..., None])  # empty rows: exp(-inf) = 0
    out = torch.einsum("bhgqk,bkhd->bqhgd", probs, v.to(compute)).reshape(B, Tq, Hq, D)
    lse = lse.detach().masked_fill(empty, float("inf")).reshape(B, Hq, Tq)
    return out.to(q.dtype), lse.float()
