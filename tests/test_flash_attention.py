"""mathlm.kernels.flash_attention against a float64 PyTorch reference (Triton interpreter on CPU).

Every case checks the output and dq, dk, dv with flash-attn's rule: the kernel's max error against
float64 is at most 2x the error of the same attention computed by PyTorch at the input dtype, plus
about one unit of rounding (tests/attention_checks.py). The sweep is a covering subset of seqlens
(1, 17, 64, 113, 129, Tq != Tk), head_dim (16, 32, 40, 64, 128, 256), MHA/GQA/MQA, causal or not,
windows, dtypes; the full product is marked slow.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

import mathlm.kernels as K
from mathlm.kernels import flash_attention, flash_attention_varlen
from attention_checks import assert_within_rule, check_attention, flash_mask, reference_attention

flash_mod = sys.modules["mathlm.kernels.flash_attention"]
needs_kernel = pytest.mark.skipif(not K.kernel_backend_info()["triton_runnable"],
                                  reason="needs triton (GPU or TRITON_INTERPRET=1)")

F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32


def make_qkv(B, Tq, Tk, Hq, Hkv, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, Hq, D, generator=g).to(dtype)
    k = torch.randn(B, Tk, Hkv, D, generator=g).to(dtype)
    v = torch.randn(B, Tk, Hkv, D, generator=g).to(dtype)
    return q, k, v


def check_flash(B, Tq, Tk, Hq, Hkv, D, causal, window, dtype, scale=None, backend="triton"):
    q, k, v = make_qkv(B, Tq, Tk, Hq, Hkv, D, dtype)
    allowed = flash_mask(Tq, Tk, causal, window)
    ref_scale = D ** -0.5 if scale is None else scale
    check_attention(
        lambda q, k, v: flash_attention(q, k, v, causal=causal, softmax_scale=scale, window_size=window,
                                        backend=backend),
        q, k, v, lambda q, k, v, dt: reference_attention(q, k, v, allowed, ref_scale, dt))


# (B, Tq, Tk, Hq, Hkv, D, causal, window, dtype): every seqlen, head_dim, head ratio, mask kind
# and dtype appears at least once.
CASES = [
    (1, 1, 1, 2, 2, 32, True, (-1, -1), F32),        # length 1
    (2, 17, 17, 4, 2, 32, True, (-1, -1), F32),      # GQA, tail-only tiles
    (1, 64, 64, 4, 1, 64, False, (-1, -1), F16),     # MQA, exact tiles
    (1, 113, 113, 2, 2, 128, True, (-1, -1), BF16),  # MHA, head_dim 128
    (2, 129, 129, 4, 2, 64, False, (-1, -1), F32),   # one row past a tile boundary
    (1, 17, 129, 4, 2, 64, True, (-1, -1), F16),     # Tq < Tk: causal aligned bottom-right
    (1, 113, 64, 3, 1, 32, True, (-1, -1), F32),     # Tq > Tk: the first 49 rows see no key
    (2, 1, 113, 8, 2, 128, True, (-1, -1), BF16),    # decode: one query over a cache
    (1, 129, 129, 2, 1, 64, True, (15, 0), F32),     # sliding window (Mistral: window 16)
    (1, 113, 113, 2, 2, 32, False, (8, 8), F16),     # bidirectional local window
    (1, 64, 100, 2, 2, 32, False, (32, -1), F32),    # left bound only
    (1, 100, 64, 2, 1, 32, False, (-1, 4), F32),     # right bound only, Tq > Tk
    (1, 113, 17, 2, 2, 32, True, (5, 0), F32),       # window and Tq > Tk: most rows empty
    (2, 64, 64, 2, 2, 16, True, (-1, -1), F16),      # head_dim 16
    (1, 33, 47, 2, 1, 40, False, (-1, -1), F32),     # head_dim 40: padded to a 64-wide tile
    (1, 64, 64, 1, 1, 256, True, (-1, -1), F16),     # head_dim 256
]


@needs_kernel
@pytest.mark.parametrize("B,Tq,Tk,Hq,Hkv,D,causal,window,dtype", CASES,
                         ids=[f"T{c[1]}x{c[2]}-H{c[3]}:{c[4]}-D{c[5]}-{'causal' if c[6] else 'full'}-w{c[7][0]},{c[7][1]}"
                              f"-{str(c[8])[6:]}" for c in CASES])
def test_matches_float64_reference(B, Tq, Tk, Hq, Hkv, D, causal, window, dtype):
    check_flash(B, Tq, Tk, Hq, Hkv, D, causal, window, dtype)


@needs_kernel
def test_custom_softmax_scale():
    check_flash(1, 40, 40, 2, 1, 32, True, (-1, -1), F32, scale=0.3)


@needs_kernel
@pytest.mark.parametrize("tiles", [(16, 16, 16, 16), (16, 64, 64, 16), (128, 16, 16, 128)],
                         ids=["16x16", "16x64", "128x16"])
def test_other_tile_shapes(monkeypatch, tiles):
    """The span logic (masked edges, unmasked interior) must hold for any BLOCK_M/BLOCK_N, not just
    the interpreter's default tiles; windows and Tq != Tk make the edges uneven."""
    bm, bn, kv_bm, kv_bn = tiles
    monkeypatch.setattr(flash_mod._fwd, "interpreter_config", {"BLOCK_M": bm, "BLOCK_N": bn})
    monkeypatch.setattr(flash_mod._bwd_q, "interpreter_config", {"BLOCK_M": bm, "BLOCK_N": bn})
    monkeypatch.setattr(flash_mod._bwd_kv, "interpreter_config", {"BLOCK_M": kv_bm, "BLOCK_N": kv_bn})
    check_flash(1, 50, 70, 2, 1, 32, True, (20, 0), F32)
    check_flash(1, 70, 50, 2, 2, 32, False, (9, 3), F32)


# ------------------------------------------------------------------------------ varlen


def check_varlen(lens_q, lens_k, Hq, Hkv, D, causal, window, dtype):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(sum(lens_q), Hq, D, generator=g).to(dtype)
    k = torch.randn(sum(lens_k), Hkv, D, generator=g).to(dtype)
    v = torch.randn(sum(lens_k), Hkv, D, generator=g).to(dtype)
    cu_q = torch.tensor([0, *itertools.accumulate(lens_q)], dtype=torch.int32)
    cu_k = torch.tensor([0, *itertools.accumulate(lens_k)], dtype=torch.int32)

    def reference(q, k, v, dtype):  # each sequence on its own, concatenated
        outs = []
        for b in range(len(lens_q)):
            qs, ks, vs = q[cu_q[b]:cu_q[b + 1]], k[cu_k[b]:cu_k[b + 1]], v[cu_k[b]:cu_k[b + 1]]
            allowed = flash_mask(len(qs), len(ks), causal, window)
            outs.append(reference_attention(qs[None], ks[None], vs[None], allowed, D ** -0.5, dtype)[0])
        return torch.cat(outs)

    check_attention(lambda q, k, v: flash_attention_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k),
                                                           causal=causal, window_size=window),
                    q, k, v, reference)


VARLEN_CASES = [
    ([17, 1, 64, 113], [17, 1, 64, 113], 4, 2, 32, True, (-1, -1), F32),
    ([5, 40, 29], [33, 40, 7], 2, 1, 64, True, (-1, -1), F16),      # Tq != Tk per sequence, empty rows
    ([30, 1, 70], [30, 45, 70], 2, 2, 32, False, (-1, -1), BF16),
    ([64, 13, 50], [64, 13, 0], 3, 1, 32, False, (6, 6), F32),     # windows; an empty key sequence
]


@needs_kernel
@pytest.mark.parametrize("lens_q,lens_k,Hq,Hkv,D,causal,window,dtype", VARLEN_CASES,
                         ids=["causal-same", "causal-uneven-fp16", "full-bf16", "window-emptyk"])
def test_varlen_matches_reference(lens_q, lens_k, Hq, Hkv, D, causal, window, dtype):
    check_varlen(lens_q, lens_k, Hq, Hkv, D, causal, window, dtype)


@needs_kernel
def test_varlen_lse_layout_and_values():
    lens = [3, 20, 9]
    q = torch.randn(sum(lens), 2, 32)
    cu = torch.tensor([0, 3, 23, 32], dtype=torch.int32)
    out, lse = flash_attention_varlen(q, q[:, :1], q[:, :1], cu, cu, 20, 20, causal=True, return_lse=True)
    assert lse.shape == (2, 32) and lse.dtype == torch.float32
    for b in range(3):
        s = slice(cu[b], cu[b + 1])
        scores = torch.einsum("qhd,kd->hqk", q[s].double(), q[s, 0].double()) * 32 ** -0.5
        scores = scores.masked_fill(~flash_mask(lens[b], lens[b], True, (-1, -1)), float("-inf"))
        torch.testing.assert_close(lse[:, s].double(), torch.logsumexp(scores, -1), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ semantics details


@needs_kernel
def test_lse_and_empty_rows():
    """Rows with no visible key: output exactly 0, logsumexp +inf, zero dq (as flash-attn)."""
    q, k, v = make_qkv(1, 40, 10, 2, 1, 32, F32)
    q.requires_grad_()
    out, lse = flash_attention(q, k, v, causal=True, return_lse=True)
    empty = slice(0, 30)  # query i sees keys j <= i - 30
    assert (out[:, empty] == 0).all() and torch.isinf(lse[:, :, empty]).all() and (lse[:, :, empty] > 0).all()
    (dq,) = torch.autograd.grad(out.sum(), q)
    assert (dq[:, empty] == 0).all()
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double().repeat_interleave(2, 2)) * 32 ** -0.5
    scores = scores.masked_fill(~flash_mask(40, 10, True, (-1, -1)), float("-inf"))
    ref = torch.logsumexp(scores, -1)
    torch.testing.assert_close(lse[:, :, 30:].double(), ref[:, :, 30:], atol=1e-5, rtol=1e-5)


@needs_kernel
def test_noncontiguous_inputs():
    """q, k, v as views of a fused qkv projection, a (B, H, T, D) tensor seen as (B, T, H, D), and a
    tensor whose head_dim stride is not 1 (copied by the wrapper)."""
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 50, 3, 4, 32, generator=g)
    q, k, v = qkv.unbind(2)  # strides (600*... , 3*4*32, 32, 1): interleaved
    check_attention(lambda q, k, v: flash_attention(q, k, v, causal=True), q, k, v,
                    lambda q, k, v, dt: reference_attention(q, k, v, flash_mask(50, 50, True, (-1, -1)), 32 ** -0.5, dt))
    bhtd = torch.randn(2, 2, 50, 32, generator=g).transpose(1, 2)  # (B, T, H, D) view of (B, H, T, D)
    strided_d = torch.randn(2, 50, 2, 64, generator=g)[..., ::2]  # head_dim stride 2
    assert not bhtd.is_contiguous() and strided_d.stride(-1) == 2
    check_attention(lambda q, k, v: flash_attention(q, k, v), q[:, :, :2], bhtd, strided_d,
                    lambda q, k, v, dt: reference_attention(q, k, v, None, 32 ** -0.5, dt))


@needs_kernel
def test_backward_is_deterministic():
    q, k, v = (x.requires_grad_() for x in make_qkv(1, 70, 70, 4, 1, 32, F32))
    grads = []
    for _ in range(2):
        out = flash_attention(q, k, v, causal=True)
        grads.append(torch.autograd.grad(out, (q, k, v), torch.ones_like(out)))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_reference_backend_matches_float64():
    """backend="reference" (what CPU users get without the interpreter) under the same rule."""
    check_flash(2, 40, 57, 4, 2, 32, True, (10, 0), F32, backend="reference")
    check_flash(1, 30, 30, 2, 1, 16, False, (-1, -1), BF16, backend="reference")


def test_cpu_without_interpreter_uses_reference(monkeypatch):
    monkeypatch.setattr("mathlm.kernels.backend.INTERPRET", False)

    def kernel_must_not_run(*args):
        raise AssertionError("the Triton path ran on CPU without the interpreter")

    monkeypatch.setattr(flash_mod._FlashAttention, "apply", kernel_must_not_run)
    q, k, v = make_qkv(1, 9, 9, 2, 2, 16, F32)
    out = flash_attention(q, k, v, causal=True)
    ref = reference_attention(q, k, v, flash_mask(9, 9, True, (-1, -1)), 0.25)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="backend='triton' cannot run here"):
        flash_attention(q, k, v, backend="triton")


def test_backend_switch():
    q, k, v = make_qkv(1, 5, 5, 1, 1, 16, F32)
    with K.kernel_backend("reference"):
        assert K.get_kernel_backend() == "reference"
        out = flash_attention(q.double(), k.double(), v.double())  # float64 only runs on the reference path
    assert K.get_kernel_backend() == "auto" and out.dtype == torch.float64
    with pytest.raises(ValueError, match=r"kernel backend \('cuda'\) must be one of"):
        K.set_kernel_backend("cuda")


def test_imports_and_runs_without_triton():
    """CPU-only installs have no triton: the package imports and runs the reference path."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, mathlm.kernels as K\n"
            "q = torch.randn(1, 6, 2, 16)\n"
            "out = K.flash_attention(q, q, q, causal=True)\n"
            "lay = K.local_layout(1, 1)\n"
            "out2 = K.block_sparse_attention(q, q, q, lay, 16, causal=True)\n"
            "assert torch.allclose(out, out2, atol=1e-6) and not K.kernel_backend_info()['triton_installed']\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ------------------------------------------------------------------------------ bad input


def _bad(**overrides):
    args = dict(q=torch.randn(2, 8, 4, 32), k=torch.randn(2, 8, 2, 32), v=torch.randn(2, 8, 2, 32))
    args.update(overrides)
    return args


@pytest.mark.parametrize("args,message", [
    (_bad(q=torch.randn(8, 4, 32)), r"q must be \(batch, seqlen, heads, head_dim\), got shape \(8, 4, 32\)"),
    (_bad(k=torch.randn(2, 8, 3, 32), v=torch.randn(2, 8, 3, 32)),
     r"query heads \(4\) must be a multiple of key/value heads \(3\)"),
    (_bad(v=torch.randn(2, 9, 2, 32)), r"k \(2, 8, 2, 32\) and v \(2, 9, 2, 32\) must have the same shape"),
    (_bad(k=torch.randn(2, 8, 2, 16), v=torch.randn(2, 8, 2, 16)), r"same head_dim, got 32 and 16"),
    (_bad(k=torch.randn(3, 8, 2, 32), v=torch.randn(3, 8, 2, 32)), r"same batch size, got 2 and 3"),
    (_bad(v=torch.randn(2, 8, 2, 32, dtype=torch.float16)), r"share a dtype, got torch.float32, torch.float32, torch.float16"),
    (_bad(q=torch.randn(2, 0, 4, 32)), r"sequence lengths must be >= 1, got q 0 and k 8"),
])
def test_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        flash_attention(**args)


def test_bad_window_and_scale():
    with pytest.raises(ValueError, match=r"window_size \(\(-2, 0\)\) entries must be >= 0, or -1"):
        flash_attention(**_bad(), window_size=(-2, 0))
    with pytest.raises(ValueError, match=r"window_size \(4\) must be a pair"):
        flash_attention(**_bad(), window_size=4)
    with pytest.raises(ValueError, match=r"softmax_scale \(nan\) must be finite"):
        flash_attention(**_bad(), softmax_scale=float("nan"))


@needs_kernel
def test_bad_inputs_for_the_kernel():
    with pytest.raises(ValueError, match=r"head_dim \(12\) must be a multiple of 8 between 8 and 256"):
        flash_attention(torch.randn(1, 4, 1, 12), torch.randn(1, 4, 1, 12), torch.randn(1, 4, 1, 12), backend="triton")
    with pytest.raises(ValueError, match=r"head_dim \(512\)"):
        flash_attention(*(torch.randn(1, 4, 1, 512),) * 3, backend="triton")
    with pytest.raises(ValueError, match=r"float16, bfloat16 or float32, got torch.float64"):
        flash_attention(*(torch.randn(1, 4, 1, 16, dtype=torch.float64),) * 3, backend="triton")


@pytest.mark.parametrize("cu_q,cu_k,max_q,message", [
    (torch.tensor([0, 4, 10]), torch.tensor([0, 4, 10], dtype=torch.int32), 6, None),  # int64 accepted
    (torch.tensor([0.0, 4.0, 10.0]), None, 6, r"cu_seqlens_q must be a 1-D int32 tensor"),
    (torch.tensor([1, 4, 10], dtype=torch.int32), None, 6, r"must start at 0 and never decrease, got \[1, 4, 10\]"),
    (torch.tensor([0, 7, 4, 10], dtype=torch.int32), None, 6, r"never decrease, got \[0, 7, 4, 10\]"),
    (torch.tensor([0, 4, 9], dtype=torch.int32), None, 6, r"cu_seqlens_q\[-1\] \(9\) must equal the number of packed tokens \(10\)"),
    (None, None, 5, r"max_seqlen \(5\) is below the longest sequence in cu_seqlens_q \(6\)"),
    (None, torch.tensor([0, 10], dtype=torch.int32), 6, r"cu_seqlens_k must hold batch \+ 1 offsets: 3 \(as cu_seqlens_q\), got 2"),
])
def test_bad_cu_seqlens(cu_q, cu_k, max_q, message):
    default = torch.tensor([0, 4, 10], dtype=torch.int32)
    q = torch.randn(10, 2, 16)
    call = lambda: flash_attention_varlen(q, q, q, default if cu_q is None else cu_q,
                                          default if cu_k is None else cu_k, max_q, 6, backend="reference")
    if message is None:
        assert call().shape == (10, 2, 16)
    else:
        with pytest.raises(ValueError, match=message):
            call()


# ------------------------------------------------------------------------------ exhaustive sweep


@pytest.mark.slow
@needs_kernel
@pytest.mark.parametrize("Tq,Tk", [(1, 1), (17, 17), (64, 64), (113, 113), (129, 129), (17, 129), (129, 17), (1, 129)])
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("Hq,Hkv", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("causal,window", [(False, (-1, -1)), (True, (-1, -1)), (True, (31, 0)), (False, (16, 16))])
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
def test_exhaustive_product(Tq, Tk, D, Hq, Hkv, causal, window, dtype):
    check_flash(1, Tq, Tk, Hq, Hkv, D, causal, window, dtype)


# ------------------------------------------------------------------------------ GPU (compiled kernels)


@pytest.mark.gpu
@pytest.mark.parametrize("Tq,Tk,Hq,Hkv,D,causal,window,dtype", [
    (1024, 1024, 8, 2, 128, True, (-1, -1), BF16), (777, 1500, 4, 4, 64, False, (-1, -1), F16),
    (1, 2048, 8, 1, 128, True, (-1, -1), BF16), (1024, 1024, 4, 2, 64, True, (255, 0), BF16),
    (300, 300, 2, 2, 256, True, (-1, -1), F16), (200, 200, 2, 1, 32, True, (-1, -1), F32),
])
def test_compiled_kernels_on_gpu(Tq, Tk, Hq, Hkv, D, causal, window, dtype):
    """Real compilation and autotuning at realistic sizes (the interpreter checks only semantics)."""
    q, k, v = (x.cuda() for x in make_qkv(2, Tq, Tk, Hq, Hkv, D, dtype))
    allowed = flash_mask(Tq, Tk, causal, window).cuda()
    check_attention(lambda q, k, v: flash_attention(q, k, v, causal=causal, window_size=window), q, k, v,
                    lambda q, k, v, dt: reference_attention(q, k, v, allowed, D ** -0.5, dt))
