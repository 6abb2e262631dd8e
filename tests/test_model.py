"""The transformer against independent references: causality, GQA as MHA with repeated K/V,
KV-cache decoding against the full forward, padding and packing against each sequence alone,
sliding window against a naive masked attention, and the bad-input errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from mathlm import KVCache, ModelConfig, Transformer


def make(seed=0, **kw):
    base = dict(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=64)
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**{**base, **kw})).eval()


def tokens(B, T, seed=1, vocab=97):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def test_causality_future_tokens_do_not_change_past_logits():
    model = make()
    x = tokens(2, 20)
    y = x.clone()
    y[:, 12:] = tokens(2, 8, seed=5)
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-6)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


def test_gqa_equals_mha_with_repeated_kv_weights():
    gqa = make(n_heads=4, n_kv_heads=2)
    mha = make(n_heads=4, n_kv_heads=4)
    sd = gqa.state_dict()
    rep = gqa.config.n_heads // gqa.config.n_kv_heads
    hd = gqa.config.head_dim
    for name, t in list(sd.items()):
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            heads = t.view(gqa.config.n_kv_heads, hd, -1)
            sd[name] = heads.repeat_interleave(rep, dim=0).reshape(-1, t.shape[1])
    mha.load_state_dict(sd)
    x = tokens(3, 19)
    with torch.no_grad():
        torch.testing.assert_close(gqa(x), mha(x), rtol=1e-5, atol=1e-5)


def test_mqa_runs_through_the_same_path():
    model = make(n_heads=4, n_kv_heads=1)
    assert model.layers[0].self_attn.k_proj.weight.shape == (16, 64)
    x = tokens(1, 9)
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kw", [dict(), dict(sliding_window=5), dict(n_kv_heads=1, qkv_bias=True)])
def test_kv_cache_decoding_equals_full_forward(kw):
    model = make(**kw)
    x = tokens(2, 23)
    with torch.no_grad():
        full = model(x)
        cache = KVCache(model.config, batch_size=2, max_len=32)
        parts = [model(x[:, :9], cache=cache)]  # prefill
        parts += [model(x[:, t:t + 1], cache=cache) for t in range(9, 17)]  # decode one by one
        parts.append(model(x[:, 17:], cache=cache))  # a chunk after decoding
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.pos == 23


@pytest.mark.parametrize("use_cache", [False, True])
def test_left_padding_leaves_each_sequence_unchanged(use_cache):
    model = make(sliding_window=6)
    lengths = [11, 4, 1]
    seqs = [tokens(1, n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    T = max(lengths)
    batch = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, T - len(s):] = s
        mask[i, T - len(s):] = 1
    nxt = tokens(len(seqs), 3, seed=99)
    with torch.no_grad():
        if use_cache:
            cache = KVCache(model.config, len(seqs), max_len=T + 3)
            out = model(batch, attention_mask=mask, cache=cache)
            steps = [model(nxt[:, j:j + 1], cache=cache) for j in range(3)]
        else:
            out = model(batch, attention_mask=mask)
        for i, s in enumerate(seqs):
            alone = model(torch.cat([s, nxt[i]])[None])
            torch.testing.assert_close(out[i, T - len(s):], alone[0, :len(s)], rtol=1e-5, atol=1e-5)
            if use_cache:
                for j in range(3):
                    torch.testing.assert_close(steps[j][i, 0], alone[0, len(s) + j], rtol=1e-5, atol=1e-5)


def test_packed_documents_do_not_attend_across_boundaries():
    model = make(sliding_window=7)
    docs = [tokens(1, n, seed=20 + n)[0] for n in (9, 1, 14)]
    packed = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])[None]
    with torch.no_grad():
        out = model(packed, document_ids=doc_ids)
        start = 0
        for d in docs:
            torch.testing.assert_close(out[0, start:start + len(d)], model(d[None])[0], rtol=1e-5, atol=1e-5)
            start += len(d)


def naive_attention_logits(model, x, window):
    """An independent forward: explicit loops over heads, masks written out, float64."""
    cfg = model.config
    m = model.double()
    h = m.embed_tokens(x)
    T = x.shape[1]
    pos = torch.arange(T, dtype=torch.float64)
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    ang = pos[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(t):  # (T, D)
        half = t.shape[-1] // 2
        return t * cos + torch.cat([-t[:, half:], t[:, :half]], -1) * sin

    def rms(t, w):
        return w * t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)

    allowed = torch.tensor([[j <= i and i - j < window for j in range(T)] for i in range(T)])
    for blk in m.layers:
        a = blk.self_attn
        u = rms(h[0], blk.input_layernorm.weight)
        q = (u @ a.q_proj.weight.T).view(T, cfg.n_heads, -1)
        k = (u @ a.k_proj.weight.T).view(T, cfg.n_kv_heads, -1)
        v = (u @ a.v_proj.weight.T).view(T, cfg.n_kv_heads, -1)
        heads = []
        for hq in range(cfg.n_heads):
            hk = hq // (cfg.n_heads // cfg.n_kv_heads)
            s = rope(q[:, hq]) @ rope(k[:, hk]).T / math.sqrt(cfg.head_dim)
            s = s.masked_fill(~allowed, float("-inf"))
            heads.append(torch.softmax(s, -1) @ v[:, hk])
        h = h + (torch.cat(heads, -1) @ a.o_proj.weight.T)[None]
        u = rms(h[0], blk.post_attention_layernorm.weight)
        mlp = blk.mlp
        h = h + ((F.silu(u @ mlp.gate_proj.weight.T) * (u @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T)[None]
    return rms(h, m.norm.weight) @ m.lm_head.weight.T


@pytest.mark.parametrize("window", [None, 4])
def test_forward_matches_naive_float64_reference(window):
    model = make(sliding_window=window)
    x = tokens(1, 13)
    with torch.no_grad():
        ours = model(x).double()
        ref = naive_attention_logits(model, x, window or 10**9)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_llama3_rope_scaling_matches_meta_reference():
    """Meta's `apply_scaling` (llama-models, LLaMA 3.1) written out per frequency."""
    from mathlm.model import rope_frequencies

    sc = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=8192)
    cfg = ModelConfig(dim=4096, n_heads=32, n_layers=1, rope_theta=500000.0, rope_scaling=sc)
    base = 1.0 / (500000.0 ** (torch.arange(0, 128, 2).float() / 128))
    expected = []
    for f in base.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < 8192 / 4.0:
            expected.append(f)
        elif wavelen > 8192 / 1.0:
            expected.append(f / 8.0)
        else:
            smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            expected.append((1 - smooth) * f / 8.0 + smooth * f)
    torch.testing.assert_close(rope_frequencies(cfg), torch.tensor(expected), rtol=1e-6, atol=0)


def test_activation_checkpointing_gives_same_gradients():
    x = tokens(2, 15)
    grads = []
    for ckpt in (False, True):
        model = make(activation_checkpointing=ckpt).train()
        loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_forward_is_close_to_fp32(dtype):
    model = make()
    x = tokens(2, 16)
    with torch.no_grad():
        ref = model(x)
        low = make().to(dtype)(x)
    assert low.dtype == dtype
    assert (low.float() - ref).abs().max() < 0.1


def test_meta_build_then_materialize_allocates_once():
    cfg = ModelConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, hidden_dim=96, max_seq_len=64, tie_embeddings=True)
    with torch.device("meta"):
        model = Transformer(cfg)
    assert all(p.device.type == "meta" for p in model.parameters())
    model.materialize("cpu", torch.bfloat16, seed=0)
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.lm_head.weight is model.embed_tokens.weight
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert len(ptrs) == len(list(model.parameters()))
    assert torch.isfinite(model(tokens(1, 5)).float()).all()


# ----------------------------------------------------------------------------- bad input

def test_token_ids_outside_vocab():
    model = make()
    with pytest.raises(ValueError, match=r"token id 97 is outside the vocabulary \[0, 97\)"):
        model(torch.tensor([[1, 97]]))
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        model(torch.tensor([[-1, 3]]))


def test_sequence_longer_than_max_seq_len():
    model = make(max_seq_len=16)
    with pytest.raises(ValueError, match=r"sequence length \(17\) exceeds max_seq_len \(16\)"):
        model(tokens(1, 17))
    cache = KVCache(model.config, 1, max_len=8)
    model(tokens(1, 6), cache=cache)
    with pytest.raises(ValueError, match=r"sequence length \(9\) exceeds the cache length \(8\)"):
        model(tokens(1, 3), cache=cache)


def test_wrong_dtypes_and_shapes():
    model = make()
    with pytest.raises(ValueError, match="integer dtype, got torch.float32"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(batch, seq_len\) integer tensor, got \(4,\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 3\) must equal tokens shape \(1, 4\)"):
        model(tokens(1, 4), attention_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="cannot be combined with a KV cache"):
        model(tokens(1, 4), document_ids=torch.zeros(1, 4, dtype=torch.long), cache=KVCache(model.config, 1, 8))
