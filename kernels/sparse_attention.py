"""Block-sparse attention in Triton: forward and backward over the kept blocks of a layout.

Credits: block-sparse attention as in OpenAI's blocksparse kernels and the Sparse Transformer
(Child et al., 2019), the layouts of GPT-3 (dense and locally banded layers), Longformer and
BigBird (kernels/sparse_layouts.py); the tiles are the FlashAttention-2 ones (Tri Dao, 2023) shared
with kernels/flash_attention.py through kernels/attention_tiles.py, after the Triton fused-attention
tutorial.

Semantics: q (B, T, Hq, D), k and v (B, T, Hkv, D) (GQA/MQA: Hq a multiple of Hkv); `layout` a bool
tensor (Hq or 1, nb, nb), nb = ceil(T / block_size), keeps query block m against key block n
where layout[h, m, n]. Inside the kept blocks every token pair is computed, except with
causal=True, where a query only sees keys at or before its own position (a causal layout must keep
no block above the diagonal). A query row whose kept blocks hold no visible key returns 0.
This equals dense attention under the token mask `layout_to_token_mask(layout, block_size, T, causal)`.

Cost proportional to the kept blocks: the layout is turned once into a CSR-like index (per
query-block row: the kept key blocks; transposed, per key-block column: the kept query blocks),
cached on the layout tensor itself (rebuilt if it is modified in place). The forward and dQ kernels
walk a query tile's row of the index, the dK/dV kernel walks a key tile's column, so no program
ever loads a dropped block. GQA reads the shared K/V head directly; the dK/dV program loops over
the query heads of its group (each with its own layout row when the layout is per head), summing
their gradients without atomics. Tiles are at most the layout block (both powers of two, so they
divide it).

On CPU tensors without Triton's interpreter (or with backend="reference") the reference path runs:
dense attention under the token mask (kernels/attention_reference.py).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .attention_inputs import cached_on_tensor, check_kernel_inputs, check_qkv, contiguous_last, softmax_scale_for
from .attention_reference import masked_attention
from .attention_tiles import (bwd_kv_span, bwd_q_load, bwd_q_span, compute_delta, dot_modes, fwd_span, fwd_store,
                              head_ptr, load_rows, program_sequences, store_rows, token_strides,
                              visible_span)
from .autotuning import TunedKernel, config, length_bucket, prune_configs
from .backend import tl, triton, use_triton
from .sparse_layouts import layout_to_token_mask

# ------------------------------------------------------------------------------------ configs
# (BLOCK_M, BLOCK_N, num_warps, num_stages); tiles larger than the layout block are pruned, so
# every family also holds 16- and 32-wide tiles for small layout blocks.
FWD_CONFIGS = {
    "hopper": [config(128, 128, 8, 3), config(128, 64, 8, 3), config(64, 64, 4, 3), config(64, 32, 4, 3),
               config(32, 32, 4, 3), config(16, 16, 4, 3)],
    "ampere": [config(128, 64, 4, 3), config(64, 64, 4, 3), config(64, 32, 4, 2), config(32, 32, 4, 2),
               config(16, 16, 4, 2)],
}
BWD_KV_CONFIGS = {  # BLOCK_N key rows per program, BLOCK_M query rows streamed
    "hopper": [config(32, 128, 4, 3), config(64, 128, 8, 3), config(64, 64, 4, 3), config(32, 64, 4, 3),
               config(32, 32, 4, 3), config(16, 16, 4, 3)],
    "ampere": [config(32, 128, 4, 2), config(32, 64, 4, 3), config(64, 64, 4, 2), config(32, 32, 4, 2),
               config(16, 16, 4, 2)],
}
BWD_Q_CONFIGS = {
    "hopper": [config(128, 32, 4, 3), config(128, 64, 8, 3), config(64, 64, 4, 3), config(64, 32, 4, 3),
               config(32, 32, 4, 3), config(16, 16, 4, 3)],
    "ampere": [config(128, 32, 4, 2), config(64, 32, 4, 3), config(64, 64, 4, 2), config(32, 32, 4, 2),
               config(16, 16, 4, 2)],
}
TUNING_KEY = ["T_BUCKET", "HEAD_DIM", "LAYOUT_BLOCK", "CAUSAL"]


def _interpreter_tiles(rows: int, stream: int, rows_name: str):
    """Fixed interpreter tiles, shrunk to the layout block."""
    other = "BLOCK_N" if rows_name == "BLOCK_M" else "BLOCK_M"
    return lambda args: {rows_name: min(rows, args["LAYOUT_BLOCK"]), other: min(stream, args["LAYOUT_BLOCK"])}


# ------------------------------------------------------------------------------------ kernels


@triton.jit
def _sparse_fwd_kernel(Q, K, V, O, LSE, ROW_PTR, COL_IDX,
                       stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                       stride_vb, stride_vt, stride_vh, stride_ob, stride_ot, stride_oh, stride_lb, stride_lh,
                       seqlen, n_heads, gqa_group, layout_head_stride, qk_scale, T_BUCKET,
                       HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, LAYOUT_BLOCK: tl.constexpr,
                       CAUSAL: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h, _, _, _, _ = program_sequences(None, None, seqlen, seqlen, n_heads, False)
    m0 = tl.program_id(0) * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    Q = head_ptr(Q, b, 0, h, stride_qb, stride_qt, stride_qh)
    K = head_ptr(K, b, 0, h // gqa_group, stride_kb, stride_kt, stride_kh)
    V = head_ptr(V, b, 0, h // gqa_group, stride_vb, stride_vt, stride_vh)
    q = load_rows(Q, stride_qt, offs_m, seqlen, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    # Causal masking within kept blocks is flash attention's with diag = 0 and no window.
    last = tl.minimum(m0 + BLOCK_M, seqlen) - 1
    lo, full_lo, full_hi, hi = visible_span(m0, last, seqlen, 0, 0, 0, BLOCK_N, False, CAUSAL)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    row = h * layout_head_stride + m0 // LAYOUT_BLOCK
    for i in range(tl.load(ROW_PTR + row), tl.load(ROW_PTR + row + 1)):  # the kept key blocks of this row
        span_lo = tl.load(COL_IDX + i) * LAYOUT_BLOCK
        acc, l_i, m_i = fwd_span(acc, l_i, m_i, q, K, V, stride_kt, stride_vt, span_lo, span_lo + LAYOUT_BLOCK,
                                 lo, full_lo, full_hi, hi, offs_m, offs_d, seqlen, seqlen, qk_scale, 0, 0, 0,
                                 BLOCK_N, HEAD_DIM, BLOCK_D, False, CAUSAL, PRECISION, DOT)
    fwd_store(head_ptr(O, b, 0, h, stride_ob, stride_ot, stride_oh), head_ptr(LSE, b, 0, h, stride_lb, 1, stride_lh),
              acc, l_i, m_i, offs_m, offs_d, seqlen, stride_ot, HEAD_DIM, BLOCK_D, DOT)


@triton.jit
def _sparse_bwd_kv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, COL_PTR, ROW_IDX,
                          stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                          stride_vb, stride_vt, stride_vh, stride_dob, stride_dot, stride_doh,
                          stride_dkb, stride_dkt, stride_dkh, stride_dvb, stride_dvt, stride_dvh, stride_lb, stride_lh,
                          seqlen, n_kv_heads, gqa_group, layout_head_stride, qk_scale, sm_scale, T_BUCKET,
                          HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, LAYOUT_BLOCK: tl.constexpr,
                          CAUSAL: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h_kv, _, _, _, _ = program_sequences(None, None, seqlen, seqlen, n_kv_heads, False)
    n0 = tl.program_id(0) * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    K = head_ptr(K, b, 0, h_kv, stride_kb, stride_kt, stride_kh)
    V = head_ptr(V, b, 0, h_kv, stride_vb, stride_vt, stride_vh)
    k = load_rows(K, stride_kt, offs_n, seqlen, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    v = load_rows(V, stride_vt, offs_n, seqlen, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    last = tl.minimum(n0 + BLOCK_N, seqlen) - 1
    lo, full_lo, full_hi, hi = visible_span(n0, last, seqlen, 0, 0, 0, BLOCK_M, CAUSAL, False)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for g in range(gqa_group):
        h = h_kv * gqa_group + g
        col = h * layout_head_stride + n0 // LAYOUT_BLOCK
        Qh = head_ptr(Q, b, 0, h, stride_qb, stride_qt, stride_qh)
        DOh = head_ptr(DO, b, 0, h, stride_dob, stride_dot, stride_doh)
        LSEh = head_ptr(LSE, b, 0, h, stride_lb, 1, stride_lh)
        DELTAh = head_ptr(DELTA, b, 0, h, stride_lb, 1, stride_lh)
        for i in range(tl.load(COL_PTR + col), tl.load(COL_PTR + col + 1)):  # the query blocks keeping this column
            span_lo = tl.load(ROW_IDX + i) * LAYOUT_BLOCK
            dk, dv = bwd_kv_span(dk, dv, k, v, Qh, DOh, LSEh, DELTAh, stride_qt, stride_dot, span_lo,
                                 span_lo + LAYOUT_BLOCK, lo, full_lo, full_hi, hi, offs_n, offs_d, seqlen, seqlen,
                                 qk_scale, 0, 0, 0, BLOCK_M, HEAD_DIM, BLOCK_D, False, CAUSAL, PRECISION, DOT)
    DK = head_ptr(DK, b, 0, h_kv, stride_dkb, stride_dkt, stride_dkh)
    DV = head_ptr(DV, b, 0, h_kv, stride_dvb, stride_dvt, stride_dvh)
    store_rows(DK, stride_dkt, dk * sm_scale, offs_n, seqlen, offs_d, HEAD_DIM, BLOCK_D, DOT)
    store_rows(DV, stride_dvt, dv, offs_n, seqlen, offs_d, HEAD_DIM, BLOCK_D, DOT)


@triton.jit
def _sparse_bwd_q_kernel(Q, K, V, DO, DQ, LSE, DELTA, ROW_PTR, COL_IDX,
                         stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
                         stride_vb, stride_vt, stride_vh, stride_dob, stride_dot, stride_doh,
                         stride_dqb, stride_dqt, stride_dqh, stride_lb, stride_lh,
                         seqlen, n_heads, gqa_group, layout_head_stride, qk_scale, sm_scale, T_BUCKET,
                         HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, LAYOUT_BLOCK: tl.constexpr,
                         CAUSAL: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    b, h, _, _, _, _ = program_sequences(None, None, seqlen, seqlen, n_heads, False)
    m0 = tl.program_id(0) * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    K = head_ptr(K, b, 0, h // gqa_group, stride_kb, stride_kt, stride_kh)
    V = head_ptr(V, b, 0, h // gqa_group, stride_vb, stride_vt, stride_vh)
    q, do, lse2, delta = bwd_q_load(head_ptr(Q, b, 0, h, stride_qb, stride_qt, stride_qh),
                                    head_ptr(DO, b, 0, h, stride_dob, stride_dot, stride_doh),
                                    head_ptr(LSE, b, 0, h, stride_lb, 1, stride_lh),
                                    head_ptr(DELTA, b, 0, h, stride_lb, 1, stride_lh),
                                    stride_qt, stride_dot, offs_m, offs_d, seqlen, HEAD_DIM, BLOCK_D, DOT)
    last = tl.minimum(m0 + BLOCK_M, seqlen) - 1
    lo, full_lo, full_hi, hi = visible_span(m0, last, seqlen, 0, 0, 0, BLOCK_N, False, CAUSAL)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    row = h * layout_head_stride + m0 // LAYOUT_BLOCK
    for i in range(tl.load(ROW_PTR + row), tl.load(ROW_PTR + row + 1)):
        span_lo = tl.load(COL_IDX + i) * LAYOUT_BLOCK
        dq = bwd_q_span(dq, q, do, lse2, delta, K, V, stride_kt, stride_vt, span_lo, span_lo + LAYOUT_BLOCK,
                        lo, full_lo, full_hi, hi, offs_m, offs_d, seqlen, seqlen, qk_scale, 0, 0, 0,
                        BLOCK_N, HEAD_DIM, BLOCK_D, False, CAUSAL, PRECISION, DOT)
    DQ = head_ptr(DQ, b, 0, h, stride_dqb, stride_dqt, stride_dqh)
    store_rows(DQ, stride_dqt, dq * sm_scale, offs_m, seqlen, offs_d, HEAD_DIM, BLOCK_D, DOT)


def _prune(families, rows_block, stream_block):
    return lambda configs, args: prune_configs(families, args, tensor="Q", rows_key="T_BUCKET", rows_block=rows_block,
                                               stream_block=stream_block, block_limit="LAYOUT_BLOCK")


_fwd = TunedKernel(_sparse_fwd_kernel, FWD_CONFIGS, TUNING_KEY, _prune(FWD_CONFIGS, "BLOCK_M", "BLOCK_N"),
                   _interpreter_tiles(64, 32, "BLOCK_M"))
_bwd_kv = TunedKernel(_sparse_bwd_kv_kernel, BWD_KV_CONFIGS, TUNING_KEY, _prune(BWD_KV_CONFIGS, "BLOCK_N", "BLOCK_M"),
                      _interpreter_tiles(64, 32, "BLOCK_N"))
_bwd_q = TunedKernel(_sparse_bwd_q_kernel, BWD_Q_CONFIGS, TUNING_KEY, _prune(BWD_Q_CONFIGS, "BLOCK_M", "BLOCK_N"),
                     _interpreter_tiles(64, 32, "BLOCK_M"))


# ------------------------------------------------------------------------------------ block index


class BlockIndex(NamedTuple):
    """A layout as CSR rows (for the forward and dQ) and CSC columns (for dK/dV), int32.
    Row/column r of head h is entry h * num_blocks + r of row_ptr/col_ptr (one head if shared)."""
    row_ptr: torch.Tensor  # (H * nb + 1,) offsets into col_idx
    col_idx: torch.Tensor  # (kept,) key block of each kept block, row by row
    col_ptr: torch.Tensor  # (H * nb + 1,) offsets into row_idx
    row_idx: torch.Tensor  # (kept,) query block of each kept block, column by column
    above_diagonal: list  # up to 5 kept (head, query block, key block) with key block > query block


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    return torch.cat([counts.new_zeros(1), counts.flatten().cumsum(0)]).to(torch.int32)


def build_block_index(layout: torch.Tensor) -> BlockIndex:
    """The kernels' index of a (H, nb, nb) bool layout (torch.nonzero lists entries row-major)."""
    rows = layout.nonzero()  # (kept, 3): head, query block, key block
    cols = layout.transpose(1, 2).nonzero()  # head, key block, query block
    above = layout.triu(1).nonzero()[:5].tolist()
    return BlockIndex(_offsets(layout.sum(2)), rows[:, 2].to(torch.int32).contiguous(),
                      _offsets(layout.sum(1)), cols[:, 2].to(torch.int32).contiguous(), [tuple(a) for a in above])


def block_index(layout: torch.Tensor) -> BlockIndex:
    """`build_block_index`, cached on the layout tensor (rebuilt after an in-place change)."""
    return cached_on_tensor(layout, "_mathlm_block_index", lambda: build_block_index(layout))


# ------------------------------------------------------------------------------------ launches


def _meta(q, k, layout, block_size, causal, scale):
    nb = layout.shape[1]
    return dict(seqlen=q.shape[1], gqa_group=q.shape[2] // k.shape[2],
                layout_head_stride=nb if layout.shape[0] > 1 else 0, qk_scale=scale * 1.4426950408889634,
                T_BUCKET=length_bucket(q.shape[1]), HEAD_DIM=q.shape[-1],
                BLOCK_D=max(16, triton.next_power_of_2(q.shape[-1])), LAYOUT_BLOCK=block_size, CAUSAL=causal,
                **dot_modes(q.dtype))


def _forward(q, k, v, index: BlockIndex, meta: dict):
    B, T, hq, _ = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, hq, T), dtype=torch.float32, device=q.device)
    _fwd[lambda m: (triton.cdiv(T, m["BLOCK_M"]), B * hq)](
        q, k, v, out, lse, index.row_ptr, index.col_idx, *token_strides(q, False), *token_strides(k, False),
        *token_strides(v, False), *token_strides(out, False), lse.stride(0), lse.stride(1), n_heads=hq, **meta)
    return out, lse


def _backward(do, q, k, v, out, lse, index: BlockIndex, meta: dict, scale: float):
    B, T, hq, _ = q.shape
    hkv = k.shape[2]
    do = contiguous_last(do)
    delta = compute_delta(out, do, lse, None, T, B, False, (lse.stride(0), lse.stride(1)))
    dq, dk, dv = (torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in (q, k, v))
    common = (*token_strides(q, False), *token_strides(k, False), *token_strides(v, False), *token_strides(do, False))
    _bwd_kv[lambda m: (triton.cdiv(T, m["BLOCK_N"]), B * hkv)](
        q, k, v, do, dk, dv, lse, delta, index.col_ptr, index.row_idx, *common, *token_strides(dk, False),
        *token_strides(dv, False), lse.stride(0), lse.stride(1), n_kv_heads=hkv, sm_scale=scale, **meta)
    _bwd_q[lambda m: (triton.cdiv(T, m["BLOCK_M"]), B * hq)](
        q, k, v, do, dq, lse, delta, index.row_ptr, index.col_idx, *common, *token_strides(dq, False),
        lse.stride(0), lse.stride(1), n_heads=hq, sm_scale=scale, **meta)
    return dq, dk, dv


class _BlockSparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, index, meta, scale):
        q, k, v = (contiguous_last(x) for x in (q, k, v))
        out, lse = _forward(q, k, v, index, meta)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.index, ctx.meta, ctx.scale = index, meta, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(dout, q, k, v, out, lse, ctx.index, ctx.meta, ctx.scale)
        return dq, dk, dv, None, None, None


# ------------------------------------------------------------------------------------ public API


def check_layout(layout: torch.Tensor, q: torch.Tensor, block_size: int) -> None:
    if not isinstance(block_size, int) or block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size ({block_size!r}) must be a power of two >= 16")
    if not isinstance(layout, torch.Tensor) or layout.dtype != torch.bool:
        raise ValueError(f"layout must be a bool tensor, got {getattr(layout, 'dtype', type(layout).__name__)}")
    T, hq = q.shape[1], q.shape[2]
    nb = -(-T // block_size)
    if layout.dim() != 3 or layout.shape[0] not in (1, hq) or tuple(layout.shape[1:]) != (nb, nb):
        raise ValueError(f"layout of shape {tuple(layout.shape)} must be (1 or {hq}, {nb}, {nb}) for seqlen {T}, "
                         f"{hq} query heads and block_size {block_size}")
    if layout.device != q.device:
        raise ValueError(f"layout is on {layout.device} but q is on {q.device}")


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor,
                           block_size: int, causal: bool = False, softmax_scale: float | None = None,
                           backend: str | None = None) -> torch.Tensor:
    """Attention of q (B, T, Hq, D) over k, v (B, T, Hkv, D) restricted to the kept blocks of
    `layout` (Hq or 1, nb, nb) -> (B, T, Hq, D); see the module docstring. Build layouts with
    mathlm.kernels.sparse_layouts; the block index is cached on the layout tensor, so build it once.
    """
    check_qkv(q, k, v, packed=False)
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"block-sparse attention needs queries and keys of one length, "
                         f"got {q.shape[1]} and {k.shape[1]}")
    check_layout(layout, q, block_size)
    index = block_index(layout)
    if causal and index.above_diagonal:
        raise ValueError(f"a causal layout must keep no block above the diagonal; kept (head, query block, "
                         f"key block): {index.above_diagonal}")
    scale = softmax_scale_for(q, softmax_scale)
    if use_triton(backend, q):
        check_kernel_inputs(q)
        return _BlockSparseAttention.apply(q, k, v, index, _meta(q, k, layout, block_size, causal, scale), scale)
    mask = layout_to_token_mask(layout, block_size, q.shape[1], causal)
    return masked_attention(q, k, v, mask, scale)[0]
