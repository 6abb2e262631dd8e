"""Shared by the attention kernel tests: a textbook float64 attention and flash-attn's tolerance rule.

The reference is written independently of mathlm.kernels: K/V heads are repeated for GQA, the mask
is built by explicit loops from the definition, torch.softmax does the normalisation.
"""
from __future__ import annotations

import torch


def flash_mask(seqlen_q: int, seqlen_k: int, causal: bool, window: tuple[int, int]) -> torch.Tensor:
    """(Tq, Tk) bool, from flash-attn's docstring: query i attends key j iff
    i + Tk - Tq - left <= j <= i + Tk - Tq + right, with right = 0 when causal and -1 = unbounded."""
    left, right = window
    if causal:
        right = 0
    allowed = torch.zeros(seqlen_q, seqlen_k, dtype=torch.bool)
    for i in range(seqlen_q):
        for j in range(seqlen_k):
            centre = i + seqlen_k - seqlen_q
            allowed[i, j] = (left < 0 or j >= centre - left) and (right < 0 or j <= centre + right)
    return allowed


def reference_attention(q, k, v, allowed: torch.Tensor | None, scale: float, dtype=torch.float64):
    """Softmax attention in `dtype`; allowed: None, (Tq, Tk) or (Hq or 1, Tq, Tk) bool. Rows that
    may attend no key give 0 (flash-attn's convention). q (B, Tq, Hq, D), k, v (B, Tk, Hkv, D)."""
    group = q.shape[2] // k.shape[2]
    q, k, v = (x.to(dtype) for x in (q, k, v))
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(q.device), float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhqk,bkhd->bqhd", probs, v)


def error_budget(dtype: torch.dtype) -> float:
    """The small atol added to 2x PyTorch's own error: about one unit of rounding at the dtype.
    float32 gets 2e-6: at T = 1 PyTorch's dq is exactly 0 while the kernel's dp - delta cancels two
    sums of size |dO||v| ~ sqrt(head_dim) rounded in different orders (~1e-6 at head_dim 128)."""
    return {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]


def assert_within_rule(name: str, got: torch.Tensor, ref64: torch.Tensor, torch_lowp: torch.Tensor) -> None:
    """flash-attn's rule: |kernel - float64| <= 2 |PyTorch at the input dtype - float64| + atol."""
    err = (got.double() - ref64).abs().max().item()
    base = (torch_lowp.double() - ref64).abs().max().item()
    atol = error_budget(got.dtype)
    assert err <= 2 * base + atol, (
        f"{name}: kernel error {err:.3e} > 2 x PyTorch {got.dtype} error {base:.3e} + atol {atol:.1e}")


def check_attention(fn, q, k, v, reference, seed: int = 0) -> None:
    """fn(q, k, v) -> out; reference(q, k, v, dtype) -> the same attention computed in `dtype`.
    Compares the output and dq, dk, dv of fn against float64, with PyTorch at q's dtype as the
    yardstick. q, k, v are leaf tensors of any dtype and layout."""
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    results = {}
    for dtype in (torch.float64, q.dtype):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        ref = reference(*leaves, dtype)
        results[dtype] = (ref, *torch.autograd.grad(ref, leaves, grad_out.to(dtype)))
    for i, (name, got) in enumerate(zip(("out", "dq", "dk", "dv"), (out, *grads))):
        assert got.shape == results[torch.float64][i].shape, f"{name} shape {tuple(got.shape)}"
        assert torch.isfinite(got).all(), f"{name} has non-finite values"
        assert_within_rule(name, got, results[torch.float64][i], results[q.dtype][i])
