"""Triton building blocks shared by the flash and block-sparse attention kernels.

Both kernels give each program one tile of query rows (forward, dQ) or of key columns (dK/dV)
and walk tiles of the other axis; they differ only in *which* tiles they walk: flash attention a
contiguous range cut by causality, the window and the sequence ends; block-sparse attention the
kept blocks of a layout. The walk over one span of tiles, the online softmax step, the backward
recomputation, the masks and the delta preprocess live here, once.

Conventions (positions counted from the start of each sequence):

    query i sees key j  iff  j < seqlen_k  and  i + diag - left <= j <= i + diag + right

with diag = seqlen_k - seqlen_q (causal aligned bottom-right when the lengths differ, as in
flash-attn), right = 0 for causal attention, and a bound switched off by HAS_LEFT / HAS_RIGHT
(window side -1). A span is split into masked tiles at its edges and unmasked tiles in the middle
(`visible_span`), so the common interior tile pays for no mask at all.

Scores are kept in base 2, qk_scale = softmax_scale * log2(e), so exp2 replaces exp (as in the
Triton tutorial); the logsumexp stored for the backward is in natural log, as flash-attn returns it.
A row that sees no key gets output 0 and logsumexp +inf (flash-attn does the same), so in the
backward its probabilities exp(s - lse) are exactly 0.

Matrix products: fp16/bf16 tiles feed tl.dot with fp32 accumulation, and probabilities and
gradients are rounded to the input dtype before their product, as in flash-attn (`round_to`); fp32 tiles use
IEEE fp32 (TF32 when torch allows it for CUDA matmuls), matching PyTorch at that dtype. Tiles are
loaded in dtype DOT, which is the input dtype except under the interpreter with bf16 inputs:
Triton 3.9's interpreter multiplies bf16 tiles as raw integers, so there they are widened to fp32,
which is exact (a bf16 x bf16 product fits in fp32's significand) and keeps fp32 accumulation.
"""
from __future__ import annotations

import torch

from .backend import INTERPRET, tl, triton

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def sequence_bounds(CU_SEQLENS, b, seqlen, IS_VARLEN: tl.constexpr):
    """(first row of sequence b in the tensor, its length): packed varlen or padded batch."""
    if IS_VARLEN:
        first = tl.load(CU_SEQLENS + b)
        seqlen = tl.load(CU_SEQLENS + b + 1) - first
        start = first.to(tl.int64)
    else:
        start = 0
    return start, seqlen


@triton.jit
def program_sequences(CU_Q, CU_K, seqlen_q, seqlen_k, n_heads, IS_VARLEN: tl.constexpr):
    """(batch, head, q_start, seqlen_q, k_start, seqlen_k) of this program; grid axis 1 runs over
    batch * n_heads, axis 0 over tiles of one sequence."""
    b = tl.program_id(1) // n_heads
    h = tl.program_id(1) % n_heads
    q_start, seqlen_q = sequence_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, seqlen_k = sequence_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    return b, h, q_start, seqlen_q, k_start, seqlen_k


@triton.jit
def head_ptr(X, b, seq_start, h, stride_b, stride_t, stride_h):
    """Pointer to row 0 of sequence b, head h (int64 offsets: packed batches can be large)."""
    return X + b.to(tl.int64) * stride_b + seq_start * stride_t + h.to(tl.int64) * stride_h


@triton.jit
def load_rows(X, stride_t, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
              CHECK_ROWS: tl.constexpr, DOT: tl.constexpr):
    """Load rows `rows` of X (row stride stride_t) as a (rows, BLOCK_D) tile in dtype DOT; rows
    >= n_rows (only when CHECK_ROWS) and columns >= HEAD_DIM read as 0."""
    ptrs = X + rows[:, None] * stride_t + offs_d[None, :]
    if CHECK_ROWS:
        if HEAD_DIM == BLOCK_D:
            x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
        else:
            x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if HEAD_DIM == BLOCK_D:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return x.to(DOT)


@triton.jit
def round_to(x, DTYPE: tl.constexpr, DOT: tl.constexpr):
    """fp32 x rounded to nearest-even in DTYPE (the input dtype), returned in DOT (the tile dtype).
    On GPUs that is x.to(DTYPE). Under the interpreter with bf16 inputs (DOT = fp32) the rounding is
    done on the bits: Triton 3.9's interpreter truncates fp32 -> bf16 casts, and the bias of a
    truncated P or dS adds up over every term of dV, dK and dQ."""
    if DTYPE == tl.bfloat16 and DOT == tl.float32:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
        y = bits.to(tl.float32, bitcast=True)
    else:
        y = x.to(DTYPE).to(DOT)
    return y


@triton.jit
def store_rows(X, stride_t, x, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               DOT: tl.constexpr):
    """Store the fp32 tile x, rounded to X's dtype, in rows `rows` < n_rows of X."""
    ptrs = X + rows[:, None] * stride_t + offs_d[None, :]
    x = round_to(x, X.dtype.element_ty, DOT).to(X.dtype.element_ty)
    if HEAD_DIM == BLOCK_D:
        tl.store(ptrs, x, mask=rows[:, None] < n_rows)
    else:
        tl.store(ptrs, x, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM))


@triton.jit
def is_visible(q_pos, k_pos, seqlen_q, seqlen_k, diag, left, right,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Elementwise: may query q_pos see key k_pos? (broadcast q_pos and k_pos as wanted)."""
    visible = (q_pos < seqlen_q) & (k_pos < seqlen_k)
    if HAS_RIGHT:
        visible = visible & (k_pos <= q_pos + diag + right)
    if HAS_LEFT:
        visible = visible & (k_pos >= q_pos + diag - left)
    return visible


@triton.jit
def visible_span(first, last, other_len, offset, before, after, BLOCK: tl.constexpr,
                 HAS_BEFORE: tl.constexpr, HAS_AFTER: tl.constexpr):
    """Which tiles of the other axis positions first..last of this axis see.

    Position x sees [x + offset - before, x + offset + after] on the other axis (length other_len).
    Returns (lo, full_lo, full_hi, hi): every visible position lies in [lo, hi); the tiles in
    [full_lo, full_hi) are visible to all of first..last and need no mask. lo, full_lo and full_hi
    are multiples of BLOCK (full_hi - full_lo too), so tiles stepping from them never overlap.
    Forward and dQ: this axis = queries, offset = diag, before/after = left/right. dK/dV: this
    axis = keys, offset = -diag, before/after = right/left.
    """
    lo = 0
    full_lo = 0
    hi = other_len
    full_hi = other_len
    if HAS_BEFORE:
        # (clamped before dividing: // of a negative int rounds differently on GPU and interpreter)
        lo = tl.maximum(first + offset - before, 0) // BLOCK * BLOCK
        full_lo = (tl.maximum(last + offset - before, 0) + BLOCK - 1) // BLOCK * BLOCK
    if HAS_AFTER:
        hi = tl.minimum(hi, last + offset + after + 1)
        full_hi = tl.minimum(full_hi, first + offset + after + 1)
    full_hi = full_lo + tl.maximum(full_hi - full_lo, 0) // BLOCK * BLOCK
    return lo, full_lo, full_hi, hi


# ---------------------------------------------------------------------------------- forward


@triton.jit
def fwd_tile(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d,
             seqlen_q, seqlen_k, qk_scale, diag, left, right,
             BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK: tl.constexpr,
             HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """One FlashAttention-2 online-softmax step over the key tile starting at start_n."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k = load_rows(K, stride_kn, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)  # (BLOCK_N, BLOCK_D)
    qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), base 2
    if MASK:
        visible = is_visible(offs_m[:, None], offs_n[None, :], seqlen_q, seqlen_k, diag, left, right,
                             HAS_LEFT, HAS_RIGHT)
        qk = tl.where(visible, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    if MASK:
        # A row that has seen no visible key yet keeps m = -inf: shift it by 0 so exp2 gives 0, not NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_shift = m_new
    p = tl.math.exp2(qk - m_shift[:, None])
    alpha = tl.math.exp2(m_i - m_shift)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = load_rows(V, stride_vn, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)
    acc = tl.dot(round_to(p, V.dtype.element_ty, DOT), v, acc * alpha[:, None], input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def fwd_span(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, span_lo, span_hi, lo, full_lo, full_hi, hi,
             offs_m, offs_d, seqlen_q, seqlen_k, qk_scale, diag, left, right,
             BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
             HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """Forward over the key tiles of [span_lo, span_hi) that the query tile sees (span_lo a
    multiple of BLOCK_N): masked edge tiles, unmasked interior tiles, masked edge tiles."""
    for start_n in range(tl.maximum(span_lo, lo), tl.minimum(span_hi, tl.minimum(full_lo, hi)), BLOCK_N):
        acc, l_i, m_i = fwd_tile(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d,
                                 seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D,
                                 True, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    for start_n in range(tl.maximum(span_lo, full_lo), tl.minimum(span_hi, full_hi), BLOCK_N):
        acc, l_i, m_i = fwd_tile(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d,
                                 seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D,
                                 False, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    for start_n in range(tl.maximum(span_lo, full_hi), tl.minimum(span_hi, hi), BLOCK_N):
        acc, l_i, m_i = fwd_tile(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d,
                                 seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D,
                                 True, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    return acc, l_i, m_i


@triton.jit
def fwd_store(O, LSE, acc, l_i, m_i, offs_m, offs_d, seqlen_q, stride_om,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """Normalise and store one query tile's output and natural-log logsumexp; rows that saw no
    key store 0 and +inf."""
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    store_rows(O, stride_om, out, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, DOT)
    tl.store(LSE + offs_m, lse, mask=offs_m < seqlen_q)


# ---------------------------------------------------------------------------------- backward


@triton.jit
def bwd_delta_kernel(O, DO, DELTA, CU_Q, stride_ob, stride_om, stride_oh, stride_dob, stride_dom, stride_doh,
                     stride_lb, stride_lh, seqlen_q, n_heads,
                     HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_VARLEN: tl.constexpr,
                     BLOCK_M: tl.constexpr):
    """Backward preprocess: delta_i = sum_d O[i, d] * dO[i, d] (fp32), laid out like the logsumexp."""
    b = tl.program_id(1) // n_heads
    h = tl.program_id(1) % n_heads
    q_start, seqlen_q = sequence_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    O = head_ptr(O, b, q_start, h, stride_ob, stride_om, stride_oh)
    DO = head_ptr(DO, b, q_start, h, stride_dob, stride_dom, stride_doh)
    o = load_rows(O, stride_om, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, True, tl.float32)
    do = load_rows(DO, stride_dom, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, True, tl.float32)
    delta = tl.sum(o * do, 1)
    DELTA = head_ptr(DELTA, b, q_start, h, stride_lb, 1, stride_lh)
    tl.store(DELTA + offs_m, delta, mask=offs_m < seqlen_q)


@triton.jit
def bwd_kv_tile(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qm, stride_dom, start_m, offs_n, offs_d,
                seqlen_q, seqlen_k, qk_scale, diag, left, right,
                BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK: tl.constexpr,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """Add one query tile's contribution to dK and dV of the key tile (k, v), in transposed form."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q = load_rows(Q, stride_qm, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)
    do = load_rows(DO, stride_dom, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)
    if MASK:
        lse = tl.load(LSE + offs_m, mask=offs_m < seqlen_q, other=float("inf"))
        delta = tl.load(DELTA + offs_m, mask=offs_m < seqlen_q, other=0.0)
    else:
        lse = tl.load(LSE + offs_m)
        delta = tl.load(DELTA + offs_m)
    qk_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
    p_t = tl.math.exp2(qk_t - lse[None, :] * LOG2E)
    if MASK:
        visible = is_visible(offs_m[None, :], offs_n[:, None], seqlen_q, seqlen_k, diag, left, right,
                             HAS_LEFT, HAS_RIGHT)
        p_t = tl.where(visible, p_t, 0.0)
    dv = tl.dot(round_to(p_t, DO.dtype.element_ty, DOT), do, dv, input_precision=PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk = tl.dot(round_to(ds_t, Q.dtype.element_ty, DOT), q, dk, input_precision=PRECISION)
    return dk, dv


@triton.jit
def bwd_kv_span(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qm, stride_dom, span_lo, span_hi, lo, full_lo, full_hi, hi,
                offs_n, offs_d, seqlen_q, seqlen_k, qk_scale, diag, left, right,
                BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """dK/dV over the query tiles of [span_lo, span_hi) that see the key tile."""
    for start_m in range(tl.maximum(span_lo, lo), tl.minimum(span_hi, tl.minimum(full_lo, hi)), BLOCK_M):
        dk, dv = bwd_kv_tile(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qm, stride_dom, start_m, offs_n, offs_d,
                             seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_M, HEAD_DIM, BLOCK_D,
                             True, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    for start_m in range(tl.maximum(span_lo, full_lo), tl.minimum(span_hi, full_hi), BLOCK_M):
        dk, dv = bwd_kv_tile(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qm, stride_dom, start_m, offs_n, offs_d,
                             seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_M, HEAD_DIM, BLOCK_D,
                             False, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    for start_m in range(tl.maximum(span_lo, full_hi), tl.minimum(span_hi, hi), BLOCK_M):
        dk, dv = bwd_kv_tile(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qm, stride_dom, start_m, offs_n, offs_d,
                             seqlen_q, seqlen_k, qk_scale, diag, left, right, BLOCK_M, HEAD_DIM, BLOCK_D,
                             True, HAS_LEFT, HAS_RIGHT, PRECISION, DOT)
    return dk, dv


@triton.jit
def bwd_q_tile(dq, q, do, lse2, delta, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d,
               seqlen_q, seqlen_k, qk_scale, diag, left, right,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK: tl.constexpr,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """Add one key tile's contribution to dQ of the query tile (lse2: logsumexp in base 2)."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k = load_rows(K, stride_kn, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)
    v = load_rows(V, stride_vn, offs_n, seqlen_k, offs_d, HEAD_DIM, BLOCK_D, MASK, DOT)
    qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
    p = tl.math.exp2(qk - lse2[:, None])
    if MASK:
        visible = is_visible(offs_m[:, None], offs_n[None, :], seqlen_q, seqlen_k, diag, left, right,
                             HAS_LEFT, HAS_RIGHT)
        p = tl.where(visible, p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = p * (dp - delta[:, None])
    return tl.dot(round_to(ds, K.dtype.element_ty, DOT), k, dq, input_precision=PRECISION)


@triton.jit
def bwd_q_span(dq, q, do, lse2, delta, K, V, stride_kn, stride_vn, span_lo, span_hi, lo, full_lo, full_hi, hi,
               offs_m, offs_d, seqlen_q, seqlen_k, qk_scale, diag, left, right,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """dQ over the key tiles of [span_lo, span_hi) that the query tile sees."""
    for start_n in range(tl.maximum(span_lo, lo), tl.minimum(span_hi, tl.minimum(full_lo, hi)), BLOCK_N):
        dq = bwd_q_tile(dq, q, do, lse2, delta, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d, seqlen_q,
                        seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D, True, HAS_LEFT,
                        HAS_RIGHT, PRECISION, DOT)
    for start_n in range(tl.maximum(span_lo, full_lo), tl.minimum(span_hi, full_hi), BLOCK_N):
        dq = bwd_q_tile(dq, q, do, lse2, delta, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d, seqlen_q,
                        seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D, False, HAS_LEFT,
                        HAS_RIGHT, PRECISION, DOT)
    for start_n in range(tl.maximum(span_lo, full_hi), tl.minimum(span_hi, hi), BLOCK_N):
        dq = bwd_q_tile(dq, q, do, lse2, delta, K, V, stride_kn, stride_vn, start_n, offs_m, offs_d, seqlen_q,
                        seqlen_k, qk_scale, diag, left, right, BLOCK_N, HEAD_DIM, BLOCK_D, True, HAS_LEFT,
                        HAS_RIGHT, PRECISION, DOT)
    return dq


@triton.jit
def bwd_q_load(Q, DO, LSE, DELTA, stride_qm, stride_dom, offs_m, offs_d, seqlen_q,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """The query-side operands of dQ: q, dO, logsumexp in base 2, delta."""
    q = load_rows(Q, stride_qm, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    do = load_rows(DO, stride_dom, offs_m, seqlen_q, offs_d, HEAD_DIM, BLOCK_D, True, DOT)
    lse2 = tl.load(LSE + offs_m, mask=offs_m < seqlen_q, other=float("inf")) * LOG2E
    delta = tl.load(DELTA + offs_m, mask=offs_m < seqlen_q, other=0.0)
    return q, do, lse2, delta


# ---------------------------------------------------------------------------------- launch helpers


def token_strides(x: torch.Tensor, varlen: bool) -> tuple[int, int, int]:
    """(batch, token, head) strides of a (B, T, H, D) tensor, or of a packed (total, H, D) one
    (batch stride 0: the kernels find each sequence through cu_seqlens)."""
    return (0, x.stride(0), x.stride(1)) if varlen else (x.stride(0), x.stride(1), x.stride(2))


def dot_modes(dtype: torch.dtype) -> dict:
    """The kernels' PRECISION (tl.dot input_precision) and DOT (tile dtype) for inputs of `dtype`."""
    if INTERPRET and dtype == torch.bfloat16:
        return dict(PRECISION="ieee", DOT=tl.float32)
    fp32_precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    precision = fp32_precision if dtype == torch.float32 else "tf32"  # ignored for fp16/bf16 tiles
    tile_dtype = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}.get(dtype, tl.float32)
    return dict(PRECISION=precision, DOT=tile_dtype)


def compute_delta(out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor, cu_q: torch.Tensor | None,
                  max_q: int, batch: int, varlen: bool, lse_strides: tuple[int, int]) -> torch.Tensor:
    """Launch the delta preprocess; delta has the logsumexp's shape and strides."""
    delta = torch.empty_like(lse)
    heads = out.shape[-2]
    block_m = 32 if INTERPRET else 64
    bwd_delta_kernel[(triton.cdiv(max_q, block_m), batch * heads)](
        out, dout, delta, cu_q, *token_strides(out, varlen), *token_strides(dout, varlen), *lse_strides,
        max_q, heads, HEAD_DIM=out.shape[-1], BLOCK_D=max(16, triton.next_power_of_2(out.shape[-1])),
        IS_VARLEN=varlen, BLOCK_M=block_m)
    return delta
