"""The model with the Triton attention backends equals the model with `sdpa` (torch's
scaled_dot_product_attention): loss and every parameter gradient in training, packed documents
(varlen), left padding, sliding windows, and KV-cache decoding; the kernels run under the Triton
interpreter on CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mathlm.kernels as K
from mathlm import KVCache, ModelConfig, Transformer

pytestmark = pytest.mark.skipif(not K.kernel_backend_info()["triton_runnable"],
                                reason="needs triton (GPU or TRITON_INTERPRET=1)")

BASE = dict(vocab_size=61, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=128)


def twins(**kw):
    """The same weights under the sdpa backend and under kw's backend."""
    torch.manual_seed(0)
    ref = Transformer(ModelConfig(**{**BASE, "attn_backend": "sdpa", **{k: v for k, v in kw.items()
                                                                      if k != "attn_backend"}}))
    other = Transformer(ModelConfig(**{**BASE, **kw}))
    other.load_state_dict(ref.state_dict())
    return ref, other


def tokens(B, T, seed=1):
    return torch.randint(0, BASE["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def loss_and_grads(model, toks, weights=None, **forward_kw):
    """Next-token cross-entropy (optionally weighted per target) and the gradient of every parameter."""
    model.zero_grad()
    logits = model(toks, **forward_kw)[:, :-1]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1), reduction="none")
    weights = torch.ones_like(losses) if weights is None else weights[:, 1:].reshape(-1).float()
    loss = (losses * weights).sum() / weights.sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_training(ref, other, toks, weights=None, **forward_kw):
    loss_ref, grads_ref = loss_and_grads(ref, toks, weights, **forward_kw)
    loss, grads = loss_and_grads(other, toks, weights, **forward_kw)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kw", [{}, {"sliding_window": 9}, {"n_kv_heads": 1}], ids=["causal", "window", "mqa"])
def test_flash_training_equals_sdpa(kw):
    ref, flash = twins(attn_backend="flash", **kw)
    assert_same_training(ref, flash, tokens(2, 40))


def test_flash_packed_documents_equal_sdpa():
    """document_ids go through flash_attention_varlen (one sequence per document run)."""
    ref, flash = twins(attn_backend="flash")
    toks = tokens(2, 36)
    docs = torch.tensor([[0] * 10 + [1] * 20 + [2] * 6, [0] * 1 + [1] * 35])
    assert_same_training(ref, flash, toks, document_ids=docs)


def test_flash_left_padding_equals_sdpa():
    """Padded queries see no key under flash (output 0) but themselves under sdpa: only the real
    tokens' logits and loss are compared, and their gradients."""
    ref, flash = twins(attn_backend="flash", sliding_window=12)
    toks = tokens(2, 30)
    real = torch.ones(2, 30, dtype=torch.long)
    real[0, :7] = 0
    assert_same_training(ref, flash, toks, weights=real * real.roll(1, 1), attention_mask=real)


@pytest.mark.parametrize("padded", [False, True], ids=["plain", "left-padded"])
def test_flash_kv_cache_decoding_equals_sdpa(padded):
    ref, flash = twins(attn_backend="flash")
    toks = tokens(2, 20)
    real = torch.ones(2, 12, dtype=torch.long)
    if padded:
        real[1, :5] = 0
    logits = {}
    for name, model in (("sdpa", ref.eval()), ("flash", flash.eval())):
        cache = KVCache(model.config, batch_size=2, max_len=32)
        with torch.no_grad():
            steps = [model(toks[:, :12], attention_mask=real, cache=cache)[:, -1]]
            for t in range(12, 20):  # one query over the cache (Tq = 1)
                steps.append(model(toks[:, t:t + 1], cache=cache)[:, -1])
        logits[name] = torch.stack(steps, 1)
    torch.testing.assert_close(logits["flash"], logits["sdpa"], atol=2e-5, rtol=1e-4)


def test_sparse_backend_with_dense_equivalent_layouts_equals_sdpa():
    """A local band as wide as the sequence and a BigBird layout whose band covers it keep every
    causal block, so the `sparse` backend must reproduce dense attention exactly."""
    ref, sparse = twins(attn_backend="sparse", attn_pattern=("local", "bigbird"), sparse_block_size=16,
                        sparse_local_blocks=4)
    assert_same_training(ref, sparse, tokens(2, 50))  # 4 blocks of 16
