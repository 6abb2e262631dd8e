"""Layout builders (mathlm.kernels.sparse_layouts): counts worked out by hand, the patterns'
definitions from their papers checked entry by entry, causality, symmetry, seeding."""
from __future__ import annotations

import pytest
import torch

from mathlm.kernels import sparse_layouts as L


def entries(layout, head=0):
    return {(m, n) for m in range(layout.shape[1]) for n in range(layout.shape[2]) if layout[head, m, n]}


def test_local_counts_by_hand():
    """6 blocks, window 3. Causal: row m keeps min(m + 1, 3) blocks: 1+2+3+3+3+3 = 15 of the 21 on
    or below the diagonal. Bidirectional |m - n| < 3: rows keep 3, 4, 5, 5, 4, 3 = 24 of 36."""
    causal = L.local_layout(6, 3, causal=True)
    full = L.local_layout(6, 3, causal=False)
    assert causal.shape == (1, 6, 6) and causal.dtype == torch.bool
    assert causal.sum() == 15 and L.layout_density(causal, causal=True) == pytest.approx(15 / 21)
    assert full.sum() == 24 and L.layout_density(full) == pytest.approx(24 / 36)
    assert entries(causal) == {(m, n) for m in range(6) for n in range(6) if 0 <= m - n < 3}


def test_strided_matches_sparse_transformer_definition():
    """Child et al. 2019, strided: A(i) = {j : i - j < l}, B(i) = {j : (i - j) mod l = 0}, j <= i."""
    nb, l = 11, 3
    expected = {(i, j) for i in range(nb) for j in range(i + 1) if i - j < l or (i - j) % l == 0}
    assert entries(L.strided_layout(nb, l)) == expected


def test_fixed_matches_sparse_transformer_definition():
    """Child et al. 2019, fixed: A(i) = {j : floor(j/l) = floor(i/l)}, B(i) = {j : j mod l in
    {l - c, ..., l - 1}} (c = summary blocks), j <= i."""
    nb, l, c = 10, 4, 2
    expected = {(i, j) for i in range(nb) for j in range(i + 1) if j // l == i // l or j % l >= l - c}
    assert entries(L.fixed_layout(nb, l, summary_blocks=c)) == expected


def test_global_blocks():
    """Blocks 0 and 3 of 5 global: rows 0 and 3 full, columns 0 and 3 full: 2*5 + 2*5 - 4 = 16 kept."""
    g = L.global_layout(5, [0, 3])
    assert g.sum() == 16 and entries(g) == {(m, n) for m in range(5) for n in range(5) if m in (0, 3) or n in (0, 3)}
    assert torch.equal(L.global_layout(5, 2), L.global_layout(5, [0, 1]))


DETERMINISTIC = {
    "dense": lambda c: L.dense_layout(9, causal=c), "local": lambda c: L.local_layout(9, 2, causal=c),
    "strided": lambda c: L.strided_layout(9, 3, causal=c), "fixed": lambda c: L.fixed_layout(9, 3, causal=c),
    "global": lambda c: L.global_layout(9, 2, causal=c),
    "random": lambda c: L.random_layout(9, 0.5, num_heads=2, causal=c),
}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_causal_layout_is_the_lower_triangle_of_the_full_one(name):
    causal, full = DETERMINISTIC[name](True), DETERMINISTIC[name](False)
    assert causal.any() and torch.equal(causal, full.tril())


def test_causal_bigbird_keeps_nothing_above_the_diagonal():
    """Its random blocks are drawn among the blocks at or before the row, so it is no triangle of
    the bidirectional draw; its band and globals are."""
    layout = L.bigbird_layout(12, random_blocks=3, num_heads=3, causal=True)
    structured = L.local_layout(12, 2, causal=True) | L.global_layout(12, 2, causal=True)
    assert not layout.triu(1).any() and torch.equal(layout & structured, structured.expand(3, -1, -1))


@pytest.mark.parametrize("layout", [
    L.local_layout(8, 3, causal=False), L.strided_layout(8, 3, causal=False), L.global_layout(8, [1, 5]),
    L.bigbird_layout(8, random_blocks=0), L.dense_layout(8)], ids=["local", "strided", "global", "bigbird-no-random", "dense"])
def test_bidirectional_structured_layouts_are_symmetric(layout):
    assert torch.equal(layout, layout.transpose(1, 2))


def test_bigbird_structure_and_random_blocks():
    """Row m keeps its band (|m - n| < 2), the 2 global columns, and 3 random blocks drawn outside
    both; global rows keep everything. Different seeds and heads draw differently."""
    nb = 16
    layout = L.bigbird_layout(nb, window_blocks=2, global_blocks=2, random_blocks=3, seed=7, num_heads=4)
    structured = L.local_layout(nb, 2, causal=False) | L.global_layout(nb, 2)
    assert layout.shape == (4, nb, nb) and torch.equal(layout & structured, structured.expand(4, -1, -1))
    extra = (layout & ~structured).sum(-1)  # (4, nb) random blocks per row
    for m in range(2, nb):  # global rows are already full
        assert (extra[:, m] == 3).all(), f"row {m}: {extra[:, m].tolist()}"
    assert not torch.equal(layout[0], layout[1])
    assert torch.equal(layout, L.bigbird_layout(nb, 2, 2, 3, seed=7, num_heads=4))
    assert not torch.equal(layout, L.bigbird_layout(nb, 2, 2, 3, seed=8, num_heads=4))


def test_causal_bigbird_extends_with_the_sequence():
    """The model rebuilds the layout for every length (prefill, then each decode step): the rows of
    a shorter causal layout must be the first rows of a longer one."""
    short = L.bigbird_layout(8, random_blocks=2, causal=True, num_heads=2)
    long = L.bigbird_layout(13, random_blocks=2, causal=True, num_heads=2)
    assert torch.equal(long[:, :8, :8], short)


def test_random_layout_density_and_seed():
    layout = L.random_layout(64, 0.25, seed=3)
    assert abs(L.layout_density(layout) - 0.25) < 0.02
    assert torch.equal(layout, L.random_layout(64, 0.25, seed=3))
    assert L.layout_density(L.random_layout(16, 0.0)) == 0.0 and L.layout_density(L.random_layout(16, 1.0)) == 1.0


def test_combining_layouts():
    local, glob = L.local_layout(10, 2), L.global_layout(10, 1, causal=True)
    union, both = local | glob, local & glob
    assert union.sum() == local.sum() + glob.sum() - both.sum()
    per_head = L.random_layout(10, 0.5, num_heads=3, causal=True)
    assert (local | per_head).shape == (3, 10, 10)  # a shared layout broadcasts against a per-head one


def test_layout_to_token_mask_by_hand():
    """Blocks of 16 over 20 tokens: layout [[1, 0], [1, 1]]. Tokens 0-15 see 0-15 only, tokens
    16-19 see everything; with causal, token i sees j <= i."""
    layout = torch.tensor([[[True, False], [True, True]]])
    mask = L.layout_to_token_mask(layout, 16, 20)
    assert mask.shape == (1, 20, 20)
    assert mask[0, :16, :16].all() and not mask[0, :16, 16:].any() and mask[0, 16:].all()
    causal = L.layout_to_token_mask(layout, 16, 20, causal=True)
    assert torch.equal(causal[0], torch.ones(20, 20, dtype=torch.bool).tril())


def test_layout_for_pattern_reads_model_settings():
    class Settings:
        sparse_local_blocks, sparse_stride, sparse_global_blocks, sparse_random_blocks = 2, 3, 1, 2

    assert torch.equal(L.layout_for_pattern("local", 7, Settings()), L.local_layout(7, 2))
    assert torch.equal(L.layout_for_pattern("strided", 7, Settings()), L.strided_layout(7, 3))
    assert torch.equal(L.layout_for_pattern("fixed", 7, Settings()), L.fixed_layout(7, 3))
    assert torch.equal(L.layout_for_pattern("dense", 7), L.dense_layout(7, causal=True))
    assert torch.equal(L.layout_for_pattern("bigbird", 7, Settings()),
                       L.bigbird_layout(7, 2, 1, 2, seed=0, causal=True))
    assert torch.equal(L.layout_for_pattern("local", 7), L.local_layout(7, 4))  # defaults
    with pytest.raises(ValueError, match=r"unknown attention pattern 'banded'; valid patterns: dense, local"):
        L.layout_for_pattern("banded", 7)


@pytest.mark.parametrize("call,message", [
    (lambda: L.local_layout(4, 0), r"window_blocks \(0\) must be >= 1"),
    (lambda: L.strided_layout(4, 0), r"stride \(0\) must be >= 1"),
    (lambda: L.fixed_layout(4, 2, summary_blocks=3), r"stride \(2\) and summary_blocks \(3\)"),
    (lambda: L.global_layout(4, [1, 4]), r"global blocks \[4\] out of range for num_blocks \(4\)"),
    (lambda: L.random_layout(4, 1.5), r"density \(1.5\) must be in \[0, 1\]"),
    (lambda: L.dense_layout(0), r"num_blocks \(0\) must be >= 1"),
    (lambda: L.bigbird_layout(4, random_blocks=-1), r"random_blocks \(-1\) must be >= 0"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
