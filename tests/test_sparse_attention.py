"""mathlm.kernels.block_sparse_attention against dense float64 attention under the layout's token
mask (Triton interpreter on CPU), with flash-attn's tolerance rule for the output and every
gradient; plus the block index, the guarantee that dropped blocks are never read, and bad input."""
from __future__ import annotations

import sys

import pytest
import torch

import mathlm.kernels as K
from mathlm.kernels import block_sparse_attention, sparse_layouts as L
from attention_checks import check_attention, flash_mask, reference_attention

sparse_mod = sys.modules["mathlm.kernels.sparse_attention"]
needs_kernel = pytest.mark.skipif(not K.kernel_backend_info()["triton_runnable"],
                                  reason="needs triton (GPU or TRITON_INTERPRET=1)")
F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32


def token_mask(layout, block_size, T, causal):
    """Independent of the library: expand each kept block by loops, cut at T, AND the causal triangle."""
    heads, nb, _ = layout.shape
    mask = torch.zeros(heads, T, T, dtype=torch.bool)
    for h in range(heads):
        for m in range(nb):
            for n in range(nb):
                if layout[h, m, n]:
                    mask[h, m * block_size:(m + 1) * block_size, n * block_size:(n + 1) * block_size] = True
    return mask & flash_mask(T, T, True, (-1, -1)) if causal else mask


def check_sparse(B, T, Hq, Hkv, D, block_size, layout, causal, dtype, backend="triton"):
    g = torch.Generator().manual_seed(T + Hq)
    q = torch.randn(B, T, Hq, D, generator=g).to(dtype)
    k = torch.randn(B, T, Hkv, D, generator=g).to(dtype)
    v = torch.randn(B, T, Hkv, D, generator=g).to(dtype)
    mask = token_mask(layout, block_size, T, causal)
    check_attention(lambda q, k, v: block_sparse_attention(q, k, v, layout, block_size, causal=causal, backend=backend),
                    q, k, v, lambda q, k, v, dt: reference_attention(q, k, v, mask, D ** -0.5, dt))


nb = L.num_blocks_for
# (B, T, Hq, Hkv, D, block_size, layout, causal, dtype)
CASES = {
    "local-causal-gqa": (2, 129, 4, 2, 32, 32, L.local_layout(nb(129, 32), 2), True, F32),
    "bigbird-perhead-mqa-fp16": (1, 113, 4, 1, 32, 16, L.bigbird_layout(nb(113, 16), 2, 1, 2, seed=1, num_heads=4),
                                 False, F16),
    "strided-causal-bf16": (1, 200, 2, 2, 64, 32, L.strided_layout(nb(200, 32), 3), True, BF16),
    "fixed-causal-gqa": (1, 256, 4, 2, 32, 64, L.fixed_layout(nb(256, 64), 2), True, F32),
    "random-perhead-empty-rows": (1, 100, 2, 2, 32, 16, L.random_layout(nb(100, 16), 0.3, seed=4, num_heads=2),
                                  False, F32),
    "random-causal-fp16": (2, 64, 2, 1, 64, 16, L.random_layout(nb(64, 16), 0.5, seed=5, causal=True), True, F16),
    "global-mqa-bf16": (1, 150, 3, 1, 32, 32, L.global_layout(nb(150, 32), [2]), False, BF16),
    "dense-causal-d128": (1, 97, 2, 2, 128, 64, L.dense_layout(nb(97, 64), causal=True), True, F32),
}


@needs_kernel
@pytest.mark.parametrize("name", list(CASES))
def test_matches_dense_float64_under_token_mask(name):
    check_sparse(*CASES[name])


def test_reference_backend_matches_float64():
    check_sparse(*CASES["bigbird-perhead-mqa-fp16"][:-1], F32, backend="reference")
    check_sparse(*CASES["local-causal-gqa"], backend="reference")


@needs_kernel
def test_dense_layout_equals_flash_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 90, 2, 32, generator=g) for _ in range(3))
    sparse = block_sparse_attention(q, k, v, L.dense_layout(3, causal=True), 32, causal=True)
    torch.testing.assert_close(sparse, K.flash_attention(q, k, v, causal=True), atol=1e-6, rtol=1e-6)


@needs_kernel
def test_dropped_blocks_are_never_read():
    """NaN in the keys/values of a block column no row keeps, and in the queries/dO of a block row
    that keeps nothing: if the kernels loaded those blocks the NaN would spread. Outputs and
    gradients elsewhere stay finite and exact; the dropped parts get zero output and gradients."""
    T, bs = 96, 16
    layout = L.random_layout(6, 0.6, seed=2, num_heads=2)
    layout[:, :, 3] = False  # key block 3 kept by no row
    layout[:, 4, :] = False  # query block 4 keeps nothing
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, T, 2, 32, generator=g).requires_grad_() for _ in range(3))
    poisoned = [x.detach().clone() for x in (q, k, v)]
    poisoned[1][:, 48:64] = float("nan")
    poisoned[2][:, 48:64] = float("nan")
    poisoned[0][:, 64:80] = float("nan")
    poisoned = [x.requires_grad_() for x in poisoned]
    grad_out = torch.randn(1, T, 2, 32, generator=g)
    grad_out_poisoned = grad_out.clone()
    grad_out_poisoned[:, 64:80] = float("nan")
    results = []
    for (qq, kk, vv), go in (((q, k, v), grad_out), (poisoned, grad_out_poisoned)):
        out = block_sparse_attention(qq, kk, vv, layout, bs)
        results.append((out, *torch.autograd.grad(out, (qq, kk, vv), go)))
    keep_rows = torch.ones(T, dtype=torch.bool)
    keep_rows[64:80] = False
    keep_keys = torch.ones(T, dtype=torch.bool)
    keep_keys[48:64] = False
    (out, dq, dk, dv), (out_p, dq_p, dk_p, dv_p) = results
    assert torch.equal(out[:, keep_rows], out_p[:, keep_rows]) and (out_p[:, 64:80] == 0).all()
    assert torch.equal(dq[:, keep_rows], dq_p[:, keep_rows]) and (dq_p[:, 64:80] == 0).all()
    for a, b in ((dk, dk_p), (dv, dv_p)):
        assert torch.equal(a[:, keep_keys], b[:, keep_keys]) and (b[:, 48:64] == 0).all()


@needs_kernel
def test_empty_layout_gives_zeros():
    q = torch.randn(1, 40, 2, 16, requires_grad=True)
    layout = torch.zeros(1, 3, 3, dtype=torch.bool)
    out = block_sparse_attention(q, q, q, layout, 16)
    (dq,) = torch.autograd.grad(out.sum(), q)
    assert (out == 0).all() and (dq == 0).all()


def test_block_index_matches_loops_and_is_cached():
    layout = L.random_layout(5, 0.4, seed=9, num_heads=3)
    index = sparse_mod.block_index(layout)
    for h in range(3):
        for r in range(5):
            row = h * 5 + r
            cols = index.col_idx[index.row_ptr[row]:index.row_ptr[row + 1]].tolist()
            assert cols == [n for n in range(5) if layout[h, r, n]]
            rows = index.row_idx[index.col_ptr[row]:index.col_ptr[row + 1]].tolist()
            assert rows == [m for m in range(5) if layout[h, m, r]]
    assert sparse_mod.block_index(layout) is index  # cached on the tensor
    layout[0, 0, 0] = not layout[0, 0, 0]  # an in-place change bumps the version: rebuilt
    rebuilt = sparse_mod.block_index(layout)
    assert rebuilt is not index and rebuilt.row_ptr[1] - index.row_ptr[1] in (-1, 1)


@needs_kernel
def test_layout_changed_in_place_is_honoured():
    layout = L.local_layout(4, 1, causal=False)
    q = torch.randn(1, 64, 1, 16)
    first = block_sparse_attention(q, q, q, layout, 16)
    layout[0, 3, 0] = True
    second = block_sparse_attention(q, q, q, layout, 16)
    expected = reference_attention(q, q, q, token_mask(layout, 16, 64, False), 0.25)
    assert torch.equal(first[:, :48], second[:, :48])
    torch.testing.assert_close(second.double(), expected, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------ bad input


def _q(T=40, H=2):
    return torch.randn(1, T, H, 16)


@pytest.mark.parametrize("layout,block_size,causal,message", [
    (L.local_layout(3, 1), 24, False, r"block_size \(24\) must be a power of two >= 16"),
    (L.local_layout(3, 1), 8, False, r"block_size \(8\) must be a power of two >= 16"),
    (L.local_layout(3, 1).int(), 16, False, r"layout must be a bool tensor, got torch.int32"),
    (L.local_layout(4, 1), 16, False,
     r"layout of shape \(1, 4, 4\) must be \(1 or 2, 3, 3\) for seqlen 40, 2 query heads and block_size 16"),
    (L.random_layout(3, 0.5, num_heads=3), 16, False, r"layout of shape \(3, 3, 3\) must be \(1 or 2, 3, 3\)"),
    (L.local_layout(3, 2, causal=False), 16, True,
     r"causal layout must keep no block above the diagonal; kept \(head, query block, key block\): \[\(0, 0, 1\), \(0, 1, 2\)\]"),
])
def test_bad_layouts(layout, block_size, causal, message):
    with pytest.raises(ValueError, match=message):
        block_sparse_attention(_q(), _q(), _q(), layout, block_size, causal=causal)


def test_bad_lengths_and_heads():
    with pytest.raises(ValueError, match=r"queries and keys of one length, got 40 and 30"):
        block_sparse_attention(_q(), _q(30), _q(30), L.local_layout(3, 1), 16)
    with pytest.raises(ValueError, match=r"query heads \(2\) must be a multiple of key/value heads \(3\)"):
        block_sparse_attention(_q(), _q(H=3), _q(H=3), L.local_layout(3, 1), 16)


@pytest.mark.gpu
@pytest.mark.parametrize("block_size,causal", [(64, True), (128, False), (16, True)])
def test_compiled_kernels_on_gpu(block_size, causal):
    T = 1000
    layout = L.bigbird_layout(nb(T, block_size), 2, 1, 2, num_heads=4, causal=causal).cuda()
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, T, 4, 128, generator=g).to(BF16).cuda()
    k, v = (torch.randn(2, T, 2, 128, generator=g).to(BF16).cuda() for _ in range(2))
    mask = L.layout_to_token_mask(layout, block_size, T, causal)
    check_attention(lambda q, k, v: block_sparse_attention(q, k, v, layout, block_size, causal=causal), q, k, v,
                    lambda q, k, v, dt: reference_attention(q, k, v, mask, 128 ** -0.5, dt))
