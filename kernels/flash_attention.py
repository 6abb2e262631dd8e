"""Flash attention in Triton: forward and backward, causal, GQA/MQA, sliding window, varlen.

Credits: the algorithm is FlashAttention-2 (Tri Dao, "FlashAttention-2: Faster Attention with
Better Parallelism and Work Partitioning", 2023; FlashAttention, Dao et al. 2022); the kernel
shape follows the Triton fused-attention tutorial (OpenAI/Triton authors: base-2 online softmax,
delta preprocess, separate dK/dV and dQ passes). The API and semantics are flash-attn's
`flash_attn_func` / `flash_attn_varlen_func`.

Semantics (as flash-attn):
- q (B, Tq, Hq, D), k and v (B, Tk, Hkv, D), Hq a multiple of Hkv (GQA; Hkv = 1 is MQA); the
  varlen entry point takes packed (total_tokens, H, D) tensors and int32 `cu_seqlens` offsets.
- softmax_scale defaults to 1/sqrt(D).
- causal is aligned bottom-right when Tq != Tk: query i sees key j iff j <= i + Tk - Tq.
- window_size = (left, right): query i sees keys [i + Tk - Tq - left, i + Tk - Tq + right];
  -1 leaves a side unbounded; causal sets right = 0.
- a query row that sees no key (Tq > Tk with causal, or a window that misses every key) gets
  output 0 and logsumexp +inf; its gradients are 0.
- return_lse=True also returns the logsumexp, float32, (B, Hq, Tq) (varlen: (Hq, total_q)).

Kernels: the forward keeps one query tile per program and walks only the key tiles it can see
(`visible_span`: tiles that are fully masked by causality, the window or the sequence ends are
never loaded, so causal costs about half of non-causal); masks are applied only on edge tiles.
The backward is deterministic (no atomics): a delta preprocess, a dK/dV kernel with one key tile
per program walking the query tiles that see it -- for GQA the program loops over the Hq/Hkv query
heads sharing its K/V head and sums their gradients in registers, so repeated K/V never exist --
and a dQ kernel with one query tile per program walking key tiles. Accumulation is fp32 for every
input dtype (fp16, bf16, fp32); head_dim any multiple of 8 up to 256; any strides except along
head_dim.

A pure-PyTorch reference path (kernels/attention_reference.py) runs instead on CPU tensors when
Triton's interpreter is off, or whenever `backend="reference"` (see kernels/kernel_backend.py).
"""
from __future__ import annotations

import torch

from .attention_inputs import (cached_on_tensor, check_kernel_inputs, check_qkv, check_window,
                               contiguous_last, softmax_scale_for)
from .attention_reference import masked_attention, window_mask
from .attention_tiles import (bwd_kv_span, bwd_q_load, bwd_q_span, compute_delta, dot_modes, fwd_span, fwd_store,
                              head_ptr, load_rows, program_sequences, store_rows, token_strides, visible_span)
from .autotuning import TunedKernel, config, length_bucket, prune_configs
from .backend import tl, triton, use_triton

# ------------------------------------------------------------------------------------ configs
# Each config: (BLOCK_M query rows, BLOCK_N key rows, num_warps, num_stages). Hopper has more
# shared memory (228 KB) and profits from deeper pipelines; Ampere (A100: 164 KB, consumer
# parts: ~100 KB) gets shallower ones; "short" serves decoding and short prompts.
FWD_CONFIGS = {
    "hopper": [config(128, 128, 8, 3), config(128, 64, 8, 3), config(128, 64, 4, 3), config(128, 128, 8, 2),
               config(64, 64, 4, 4)],
    "ampere": [config(128, 64, 4, 3), config(128, 32, 4, 3), config(64, 64, 4, 3), config(64, 32, 4, 2),
               config(128, 64, 8, 2)],
    "short": [config(16, 64, 4, 2), config(16, 128, 4, 3), config(32, 64, 4, 2), config(64, 64, 4, 2)],
}
# dK/dV: BLOCK_N key rows per program, BLOCK_M query rows streamed (the tutorial's 128 x 32).
BWD_KV_CONFIGS = {
    "hopper": [config(32, 128, 4, 3), config(64, 128, 8, 3), config(64, 64, 4, 3), config(32, 64, 4, 4)],
    "ampere": [config(32, 128, 4, 2), config(32, 64, 4, 3), config(64, 64, 4, 2), config(16, 64, 4, 2)],
    "short": [config(32, 16, 4, 2), config(64, 32, 4, 2)],
}
# dQ: BLOCK_M query rows per program, BLOCK_N key rows streamed.
BWD_Q_CONFIGS = {
    "hopper": [config(128, 32, 4, 3), config(128, 64, 8, 3), config(64, 64, 4, 3), config(64, 32, 4, 4)],
    "ampere": [config(128, 32, 4, 2), config(64, 32, 4, 3), config(64, 64, 4, 2), config(128, 64, 8, 2)],
    "short": [config(16, 64, 4, 2), config(32, 32, 4, 2)],
}
TUNING_KEY = ["Q_BUCKET", "K_BUCKET", "HEAD_DIM", "IS_VARLEN", "HAS_LEFT", "HAS_RIGHT"]
# Under TRITON_INTERPRET=1: unequal tiles, so tests cover BLOCK_M != BLOCK_N and several tiles per
# sequence at T ~ 100; the interpreter's cost grows with the number of tile steps, not their size.
INTERPRETER_CONFIGS = {"fwd": {"BLOCK_M": 64, "BLOCK_N": 32}, "bwd_kv": {"BLOCK_M": 32, "BLOCK_N": 64},
                       "bwd_q": {"BLOCK_M": 64, "BLOCK_N": 32}}


# ------------------------------------------------------------------------------------ kernels


@triton.jit
def _flash_fwd_kernel(Q, K, V, O, LSE, CU_Q, CU_K,
                      stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                      stride_vb, stride_vt, stride_vh, stride_ob, stride_ot, stride_oh, stride_lb, stride_lh,
                      seqlen_q, seqlen_k, n_heads, gqa_group, qk_scale, left, right, Q_BUCKET, K_BUCKET,
                      HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_VARLEN: tl.constexpr,
                      HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr,
                      DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h, q_start, seqlen_q, k_start, seqlen_k = program_sequences(CU_Q, CU_K, seqlen_q, seqlen_k, n_heads, IS_VARLEN)
    m0 = tl.program_id(0) * BLOCK_M
    if m0 >= seqlen_q:  # varlen: this sequence is shorter than the longest one
        return
    diag = seqlen_k - seqlen_q
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    Q = head_ptr(Q, b, q_start, h, stride_qb, stride_qt, stride_qh)
    K = head_ptr(K, b, k_start, h // gqa_group, stride_kb, stride_kt, stride_kh)
    V = head_ptr(V, b, k_start, h // gqa_group, stride_vb, stride_vt, stride_vh)
    q = load_rows(Q, stride_qt, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, True, DOT)

    last = tl.minimum(m0 + BLOCK_M, seqlen_q) - 1
    lo, full_lo, full_hi, hi = visible_span(m0, last, seqlen_k, diag, left, right, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    acc, l_i, m_i = fwd_span(acc, l_i, m_i, q, K, V, stride_kt, stride_vt, 0, seqlen_k, lo, full_lo, full_hi, hi,
                             offs_m, offs_d, seqlen_q, seqlen_k, qk_scale, diag, left, right,
                             BLOCK_N, HEAD_DIM, BLOCK_D, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    fwd_store(head_ptr(O, b, q_start, h, stride_ob, stride_ot, stride_oh),
              head_ptr(LSE, b, q_start, h, stride_lb, 1, stride_lh),
              acc, l_i, m_i, offs_m, offs_d, seqlen_q, stride_ot, HEAD_DIM, BLOCK_D, DOT)


@triton.jit
def _flash_bwd_kv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, CU_Q, CU_K,
                         stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                         stride_vb, stride_vt, stride_vh, stride_dob, stride_dot, stride_doh,
                         stride_dkb, stride_dkt, stride_dkh, stride_dvb, stride_dvt, stride_dvh, stride_lb, stride_lh,
                         seqlen_q, seqlen_k, n_kv_heads, gqa_group, qk_scale, sm_scale, left, right,
                         Q_BUCKET, K_BUCKET,
                         HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_VARLEN: tl.constexpr,
                         HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr,
                         DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h_kv, q_start, seqlen_q, k_start, seqlen_k = program_sequences(CU_Q, CU_K, seqlen_q, seqlen_k, n_kv_heads,
                                                                      IS_VARLEN)
    n0 = tl.program_id(0) * BLOCK_N
    if n0 >= seqlen_k:
        return
    diag = seqlen_k - seqlen_q
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    K = head_ptr(K, b, k_start, h_kv, stride_kb, stride_kt, stride_kh)
    V = head_ptr(V, b, k_start, h_kv, stride_vb, stride_vt, stride_vh)
    k = load_rows(K, stride_kt, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    v = load_rows(V, stride_vt, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, True, DOT)

    # Query rows that see this key tile: the forward's span with the roles of the axes swapped.
    last = tl.minimum(n0 + BLOCK_N, seqlen_k) - 1
    lo, full_lo, full_hi, hi = visible_span(n0, last, seqlen_q, -diag, right, left, BLOCK_M, HAS_RIGHT, HAS_LEFT)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for g in range(gqa_group):  # the query heads sharing this K/V head: their gradients add up here
        h = h_kv * gqa_group + g
        dk, dv = bwd_kv_span(dk, dv, k, v, head_ptr(Q, b, q_start, h, stride_qb, stride_qt, stride_qh),
                             head_ptr(DO, b, q_start, h, stride_dob, stride_dot, stride_doh),
                             head_ptr(LSE, b, q_start, h, stride_lb, 1, stride_lh),
                             head_ptr(DELTA, b, q_start, h, stride_lb, 1, stride_lh),
                             stride_qt, stride_dot, 0, seqlen_q, lo, full_lo, full_hi, hi, offs_n, offs_d,
                             seqlen_q, seqlen_k, qk_scale, diag, left, right,
                             BLOCK_M, HEAD_DIM, BLOCK_D, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    DK = head_ptr(DK, b, k_start, h_kv, stride_dkb, stride_dkt, stride_dkh)
    DV = head_ptr(DV, b, k_start, h_kv, stride_dvb, stride_dvt, stride_dvh)
    store_rows(DK, stride_dkt, dk * sm_scale, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, DOT)
    store_rows(DV, stride_dvt, dv, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, DOT)


@triton.jit
def _flash_bwd_q_kernel(Q, K, V, DO, DQ, LSE, DELTA, CU_Q, CU_K,
                        stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                        stride_vb, stride_vt, stride_vh, stride_dob, stride_dot, stride_doh,
                        stride_dqb, stride_dqt, stride_dqh, stride_lb, stride_lh,
                        seqlen_q, seqlen_k, n_heads, gqa_group, qk_scale, sm_scale, left, right,
                        Q_BUCKET, K_BUCKET,
                        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_VARLEN: tl.constexpr,
                        HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr,
                        DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h, q_start, seqlen_q, k_start, seqlen_k = program_sequences(CU_Q, CU_K, seqlen_q, seqlen_k, n_heads, IS_VARLEN)
    m0 = tl.program_id(0) * BLOCK_M
    if m0 >= seqlen_q:
        return
    diag = seqlen_k - seqlen_q
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q, do, lse2, delta = bwd_q_load(head_ptr(Q, b, q_start, h, stride_qb, stride_qt, stride_qh),
                                    head_ptr(DO, b, q_start, h, stride_dob, stride_dot, stride_doh),
                                    head_ptr(LSE, b, q_start, h, stride_lb, 1, stride_lh),
                                    head_ptr(DELTA, b, q_start, h, stride_lb, 1, stride_lh),
                                    stride_qt, stride_dot, offs_m, offs_d, seqlen_q, HEAD_DIM, BLOCK_D, DOT)
    last = tl.minimum(m0 + BLOCK_M, seqlen_q) - 1
    lo, full_lo, full_hi, hi = visible_span(m0, last, seqlen_k, diag, left, right, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    dq = bwd_q_span(dq, q, do, lse2, delta, head_ptr(K, b, k_start, h // gqa_group, stride_kb, stride_kt, stride_kh),
                    head_ptr(V, b, k_start, h // gqa_group, stride_vb, stride_vt, stride_vh), stride_kt, stride_vt,
                    0, seqlen_k, lo, full_lo, full_hi, hi, offs_m, offs_d, seqlen_q, seqlen_k, qk_scale, diag,
                    left, right, BLOCK_N, HEAD_DIM, BLOCK_D, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    DQ = head_ptr(DQ, b, q_start, h, stride_dqb, stride_dqt, stride_dqh)
    store_rows(DQ, stride_dqt, dq * sm_scale, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, DOT)


def _prune(families, rows_key, rows_block, stream_block):
    return lambda configs, args: prune_configs(families, args, tensor="Q", rows_key=rows_key,
                                               rows_block=rows_block, stream_block=stream_block)


_fwd = TunedKernel(_flash_fwd_kernel, FWD_CONFIGS, TUNING_KEY, _prune(FWD_CONFIGS, "Q_BUCKET", "BLOCK_M", "BLOCK_N"),
                   INTERPRETER_CONFIGS["fwd"])
_bwd_kv = TunedKernel(_flash_bwd_kv_kernel, BWD_KV_CONFIGS, TUNING_KEY,
                      _prune(BWD_KV_CONFIGS, "K_BUCKET", "BLOCK_N", "BLOCK_M"), INTERPRETER_CONFIGS["bwd_kv"])
_bwd_q = TunedKernel(_flash_bwd_q_kernel, BWD_Q_CONFIGS, TUNING_KEY,
                     _prune(BWD_Q_CONFIGS, "Q_BUCKET", "BLOCK_M", "BLOCK_N"), INTERPRETER_CONFIGS["bwd_q"])


# ------------------------------------------------------------------------------------ launches


def _meta(q, k, cu_q, max_q, max_k, causal, window):
    """Keyword arguments every flash kernel takes, derived from the call."""
    left, right = window
    if causal:
        right = 0
    return dict(seqlen_q=max_q, seqlen_k=max_k, gqa_group=q.shape[-2] // k.shape[-2],
                left=max(left, 0), right=max(right, 0), Q_BUCKET=length_bucket(max_q), K_BUCKET=length_bucket(max_k),
                HEAD_DIM=q.shape[-1], BLOCK_D=max(16, triton.next_power_of_2(q.shape[-1])),
                IS_VARLEN=cu_q is not None, HAS_LEFT=left >= 0, HAS_RIGHT=right >= 0, **dot_modes(q.dtype))


def _lse_strides(lse: torch.Tensor, varlen: bool) -> tuple[int, int]:
    """(batch, head) strides of the logsumexp: (B, H, T), or (H, total) for packed batches."""
    return (0, lse.stride(0)) if varlen else (lse.stride(0), lse.stride(1))


def _forward(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, window):
    varlen = cu_q is not None
    batch = cu_q.numel() - 1 if varlen else q.shape[0]
    hq = q.shape[-2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse_shape = (hq, q.shape[0]) if varlen else (batch, hq, max_q)
    lse = torch.empty(lse_shape, dtype=torch.float32, device=q.device)
    _fwd[lambda meta: (triton.cdiv(max_q, meta["BLOCK_M"]), batch * hq)](
        q, k, v, out, lse, cu_q, cu_k, *token_strides(q, varlen), *token_strides(k, varlen),
        *token_strides(v, varlen), *token_strides(out, varlen), *_lse_strides(lse, varlen),
        n_heads=hq, qk_scale=scale * 1.4426950408889634, **_meta(q, k, cu_q, max_q, max_k, causal, window))
    return out, lse


def _backward(do, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, causal, scale, window):
    varlen = cu_q is not None
    batch = cu_q.numel() - 1 if varlen else q.shape[0]
    hq, hkv = q.shape[-2], k.shape[-2]
    do = contiguous_last(do)
    delta = compute_delta(out, do, lse, cu_q, max_q, batch, varlen, _lse_strides(lse, varlen))
    dq, dk, dv = (torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in (q, k, v))
    meta = _meta(q, k, cu_q, max_q, max_k, causal, window)
    common = (*token_strides(q, varlen), *token_strides(k, varlen), *token_strides(v, varlen),
              *token_strides(do, varlen))
    _bwd_kv[lambda m: (triton.cdiv(max_k, m["BLOCK_N"]), batch * hkv)](
        q, k, v, do, dk, dv, lse, delta, cu_q, cu_k, *common, *token_strides(dk, varlen),
        *token_strides(dv, varlen), *_lse_strides(lse, varlen),
        n_kv_heads=hkv, qk_scale=scale * 1.4426950408889634, sm_scale=scale, **meta)
    _bwd_q[lambda m: (triton.cdiv(max_q, m["BLOCK_M"]), batch * hq)](
        q, k, v, do, dq, lse, delta, cu_q, cu_k, *common, *token_strides(dq, varlen), *_lse_strides(lse, varlen),
        n_heads=hq, qk_scale=scale * 1.4426950408889634, sm_scale=scale, **meta)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, window):
        q, k, v = (contiguous_last(x) for x in (q, k, v))
        out, lse = _forward(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, window)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.args = (max_q, max_k, causal, scale, window)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        dq, dk, dv = _backward(dout, q, k, v, out, lse, cu_q, cu_k, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None, None


# ------------------------------------------------------------------------------------ public API


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    softmax_scale: float | None = None, window_size: tuple[int, int] = (-1, -1),
                    return_lse: bool = False, backend: str | None = None
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of q (B, Tq, Hq, D) over k, v (B, Tk, Hkv, D) -> (B, Tq, Hq, D).

    flash-attn's `flash_attn_func` semantics (see the module docstring); with return_lse, also the
    float32 logsumexp (B, Hq, Tq). backend: None (the global default), "auto", "triton" or
    "reference" (kernels/backend.py).
    """
    check_qkv(q, k, v, packed=False)
    window = check_window(window_size)
    scale = softmax_scale_for(q, softmax_scale)
    if use_triton(backend, q):
        check_kernel_inputs(q)
        out, lse = _FlashAttention.apply(q, k, v, None, None, q.shape[1], k.shape[1], causal, scale, window)
    else:
        unmasked = not causal and window == (-1, -1)
        mask = None if unmasked else window_mask(q.shape[1], k.shape[1], causal, window, q.device)
        out, lse = masked_attention(q, k, v, mask, scale)
    return (out, lse) if return_lse else out


def _checked_cu_seqlens(cu: torch.Tensor, name: str, total: int, max_seqlen: int, device: torch.device,
                        batch: int | None) -> torch.Tensor:
    if not isinstance(cu, torch.Tensor) or cu.dim() != 1 or cu.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be a 1-D int32 tensor of sequence offsets, got "
                         f"{getattr(cu, 'dtype', type(cu).__name__)} of shape {tuple(getattr(cu, 'shape', ()))}")
    if cu.device != device:
        raise ValueError(f"{name} is on {cu.device} but q is on {device}")
    if cu.numel() < 2 or (batch is not None and cu.numel() != batch + 1):
        expected = ">= 2" if batch is None else f"{batch + 1} (as cu_seqlens_q)"
        raise ValueError(f"{name} must hold batch + 1 offsets: {expected}, got {cu.numel()}")
    offsets = cached_on_tensor(cu, "_mathlm_offsets", cu.tolist)  # one device sync per tensor
    lengths = [b - a for a, b in zip(offsets, offsets[1:])]
    if offsets[0] != 0 or min(lengths) < 0:
        shown = f"{offsets[:8]}{'...' if len(offsets) > 8 else ''}"
        raise ValueError(f"{name} must start at 0 and never decrease, got {shown}")
    if offsets[-1] != total:
        raise ValueError(f"{name}[-1] ({offsets[-1]}) must equal the number of packed tokens ({total})")
    if max(lengths) > max_seqlen:
        raise ValueError(f"max_seqlen ({max_seqlen}) is below the longest sequence in {name} ({max(lengths)})")
    return cu.to(torch.int32)


def flash_attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                           cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int, causal: bool = False,
                           softmax_scale: float | None = None, window_size: tuple[int, int] = (-1, -1),
                           return_lse: bool = False, backend: str | None = None
                           ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention over packed sequences: q (total_q, Hq, D), k, v (total_k, Hkv, D); sequence b holds
    rows cu_seqlens_q[b]:cu_seqlens_q[b+1] of q and cu_seqlens_k[b]:cu_seqlens_k[b+1] of k and v.

    flash-attn's `flash_attn_varlen_func` semantics (causal aligned bottom-right per sequence);
    returns (total_q, Hq, D), and with return_lse also the logsumexp (Hq, total_q).
    """
    check_qkv(q, k, v, packed=True)
    cu_q = _checked_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", q.shape[0], int(max_seqlen_q), q.device, None)
    cu_k = _checked_cu_seqlens(cu_seqlens_k, "cu_seqlens_k", k.shape[0], int(max_seqlen_k), q.device,
                               cu_q.numel() - 1)
    window = check_window(window_size)
    scale = softmax_scale_for(q, softmax_scale)
    if use_triton(backend, q):
        check_kernel_inputs(q)
        out, lse = _FlashAttention.apply(q, k, v, cu_q, cu_k, max(1, int(max_seqlen_q)), max(1, int(max_seqlen_k)),
                                         causal, scale, window)
    else:
        outs, lses = [], []
        offsets_q, offsets_k = cu_q.tolist(), cu_k.tolist()
        for b in range(len(offsets_q) - 1):
            qs = q[offsets_q[b]:offsets_q[b + 1]][None]
            ks, vs = k[offsets_k[b]:offsets_k[b + 1]][None], v[offsets_k[b]:offsets_k[b + 1]][None]
            mask = window_mask(qs.shape[1], ks.shape[1], causal, window, q.device)
            out_b, lse_b = masked_attention(qs, ks, vs, mask, scale)
            outs.append(out_b[0])
            lses.append(lse_b[0])
        out, lse = torch.cat(outs, 0), torch.cat(lses, 1)
    return (out, lse) if return_lse else out
