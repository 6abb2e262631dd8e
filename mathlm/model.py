"""A decoder-only transformer of the LLaMA family, readable top to bottom.

Architecture (as LLaMA-2/3, Mistral, Qwen2, DeepSeek-Math):
- pre-norm blocks: x + attn(rmsnorm(x)), then x + mlp(rmsnorm(x)); a final RMSNorm; an untied or
  tied (Qwen2.5 1.5B) output projection.
- RMSNorm computed in fp32 and cast back before the weight multiplies, as Hugging Face does.
- RoPE with the rotate-half convention and Hugging Face's theta handling, so HF weights load without
  any permutation of q/k; LLaMA-3.1 frequency scaling (`rope_scaling={"rope_type": "llama3", ...}`).
  The cos/sin tables are fp32 and kept out of the module's buffers so `.to(bfloat16)` never rounds them.
- SwiGLU MLP: down(silu(gate(x)) * up(x)).
- grouped-query attention from `n_kv_heads` (1 = multi-query); K/V are never repeated in memory.
- optional q/k/v bias (Qwen2), sliding-window attention (Mistral; a token sees at most
  `sliding_window` keys, itself included).
- one attention call site with three backends: `sdpa` (torch's scaled_dot_product_attention, the
  reference path), `flash` (Triton flash attention, mathlm.kernels) and `sparse` (block-sparse Triton
  kernels for the layers whose `attn_pattern` is not "dense").
- which keys a query sees is described once per forward by `AttentionMask`: causal order, left
  padding (`attention_mask`), packed documents (`document_ids`: no attention across documents),
  sliding window and the KV cache's filled slots.
- module names are Hugging Face's (`embed_tokens`, `layers.0.self_attn.q_proj`, ...), so a checkpoint
  converts by adding the `model.` prefix (mathlm/checkpoint.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig

# --------------------------------------------------------------------------- building blocks


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * rsqrt(mean(x^2) + eps) in fp32, cast back, then the weight: HF Llama's order of operations.
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies theta^(-2i/d) (fp32, CPU), with LLaMA-3.1 scaling when configured."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    sc = cfg.rope_scaling
    if sc is None or sc.get("rope_type", sc.get("type")) == "default":
        return inv_freq
    # LLaMA 3.1: long wavelengths are slowed down by `factor`, short ones kept, the band between
    # interpolated smoothly (Meta's reference `apply_scaling`).
    factor, low, high = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    old_len = sc["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, smoothed, scaled)


def rope_tables(cfg: ModelConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (max_seq_len, head_dim / 2) in fp32 (HF repeats the halves; we apply them per half)."""
    inv_freq = rope_frequencies(cfg).to(device)
    pos = torch.arange(cfg.max_seq_len, device=device, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]  # (L, D/2)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, D); cos/sin (B, T, D/2) fp32. Rotate-half: x*cos + [-x2, x1]*sin, on the halves."""
    cos = cos[:, :, None, :].to(x.dtype)
    sin = sin[:, :, None, :].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# --------------------------------------------------------------------------- masks and cache


@dataclass
class MaskViews:
    """What the attention backends derive from one AttentionMask, built on first use and shared by
    the layers of one forward (a forward runs on one device, so the views live on it)."""

    dense: torch.Tensor | None = None                  # (B or 1, 1, T, S) bool for sdpa
    packed_offsets: tuple[torch.Tensor, int] | None = None  # flash varlen over packed documents
    padded_offsets: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None  # flash varlen, left padding
    sparse_layouts: dict[str, torch.Tensor] = field(default_factory=dict)  # attention pattern -> block layout
    sparse_token_masks: dict[str, torch.Tensor] = field(default_factory=dict)  # pattern -> (1, T, S) bool


@dataclass
class AttentionMask:
    """Which keys each query may attend to, shared by all layers of one forward.

    Queries are the T new tokens, sitting in cache slots [q_start, q_start + T); keys are slots
    [0, q_start + T). A query sees a key when the key's slot is not after its own (causal), the key
    holds a real token (`key_valid`), both belong to the same document (`document_ids`, packing)
    and the key is within the sliding window. A query always sees itself, so padding rows stay finite.
    What the backends derive from it (the dense mask, varlen offsets, sparse layouts) is built on
    first use and kept in `views`, so the layers of one forward share it.
    """

    q_start: int
    n_queries: int
    key_valid: torch.Tensor | None = None  # (B, S) bool, None = every slot is real
    document_ids: torch.Tensor | None = None  # (B, T) int, only without a cache (S == T)
    window: int | None = None
    views: MaskViews = field(default_factory=MaskViews, repr=False)

    @property
    def n_keys(self) -> int:
        return self.q_start + self.n_queries

    @property
    def is_plain_causal(self) -> bool:
        """True when torch's `is_causal` (or flash's causal flag) alone describes the mask."""
        return self.key_valid is None and self.document_ids is None and self.window is None

    def dense(self, device: torch.device, extra: torch.Tensor | None = None) -> torch.Tensor:
        """The mask as a (B or 1, 1, T, S) bool tensor (True = attend); `extra` (.., T, S) is ANDed in.
        Without `extra` it is built once per forward."""
        if extra is not None:
            return self._build_dense(device, extra)
        if self.views.dense is None:
            self.views.dense = self._build_dense(device)
        return self.views.dense

    def _build_dense(self, device: torch.device, extra: torch.Tensor | None = None) -> torch.Tensor:
        q = torch.arange(self.q_start, self.n_keys, device=device)[:, None]  # (T, 1) query slots
        k = torch.arange(self.n_keys, device=device)[None, :]  # (1, S) key slots
        allowed = k <= q
        if self.window is not None:
            allowed = allowed & (q - k < self.window)
        allowed = allowed[None]  # (1, T, S)
        if self.key_valid is not None:
            allowed = allowed & self.key_valid[:, None, :]
        if self.document_ids is not None:
            allowed = allowed & (self.document_ids[:, :, None] == self.document_ids[:, None, :])
        if extra is not None:
            allowed = allowed & extra
        allowed = allowed | (q == k)[None]
        return allowed[:, None]

    def packed_offsets(self) -> tuple[torch.Tensor, int]:
        """Packed documents as varlen sequences: (cu_seqlens int32 over B*T tokens, max length)."""
        if self.views.packed_offsets is None:
            ids = self.document_ids
            B, T = ids.shape
            starts = torch.ones_like(ids, dtype=torch.bool)
            starts[:, 1:] = ids[:, 1:] != ids[:, :-1]  # each maximal run of equal ids is one sequence
            flat = starts.flatten().nonzero().flatten()
            cu = torch.cat([flat, flat.new_tensor([B * T])]).to(torch.int32)
            self.views.packed_offsets = (cu, int((cu[1:] - cu[:-1]).max()))
        return self.views.packed_offsets

    def padded_offsets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Left padding as varlen: (flat indices of the real keys, cu_seqlens_q, cu_seqlens_k, max keys)."""
        if self.views.padded_offsets is None:
            valid = self.key_valid
            B = valid.shape[0]
            n_valid = valid.sum(1)
            keep = valid.flatten().nonzero().flatten()
            cu_k = torch.cat([n_valid.new_zeros(1), n_valid.cumsum(0)]).to(torch.int32)
            cu_q = (torch.arange(B + 1, device=valid.device) * self.n_queries).to(torch.int32)
            self.views.padded_offsets = (keep, cu_q, cu_k, int(n_valid.max()))
        return self.views.padded_offsets


class KVCache:
    """A static, preallocated key/value cache: (n_layers, B, max_len, n_kv_heads, head_dim).

    All rows share the slot counter `pos`; ragged prompts are left padded and `key_valid` marks the
    slots that hold real tokens. `select` gathers rows (to share one prefill among n samples, or to
    drop finished sequences).
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        max_len = max_len or cfg.max_seq_len
        if max_len > cfg.max_seq_len:
            raise ValueError(f"cache length ({max_len}) exceeds max_seq_len ({cfg.max_seq_len})")
        shape = (cfg.n_layers, batch_size, max_len, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_valid = torch.zeros(batch_size, max_len, device=device, dtype=torch.bool)
        self.n_seen = torch.zeros(batch_size, device=device, dtype=torch.long)  # real tokens per row
        self.has_padding = False  # some filled slot holds padding: attention must read key_valid
        self.pos = 0
        self.max_len = max_len
        self.decode_weights: DecodeWeights | None = None  # set by an engine: single-token steps take the fast path

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, T, Hkv, D) at the current slots; return all keys/values so far."""
        end = self.pos + k.shape[1]
        self.k[layer, :, self.pos:end] = k
        self.v[layer, :, self.pos:end] = v
        return self.k[layer, :, :end], self.v[layer, :, :end]

    def select(self, index: torch.Tensor) -> "KVCache":
        """Keep rows `index` (may repeat rows), in place; returns self."""
        index = index.to(self.k.device)
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.key_valid, self.n_seen = self.key_valid[index], self.n_seen[index]
        return self


# --------------------------------------------------------------------------- attention


def _sdpa(q, k, v, mask: AttentionMask, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Reference attention. q (B, T, H, D), k/v (B, S, Hkv, D) -> (B, T, H, D)."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    gqa = q.shape[1] != k.shape[1]
    if extra is None and mask.is_plain_causal:
        # A single query sees every key; a prefill from slot 0 is plain causal.
        is_causal = mask.n_queries > 1
        if mask.q_start == 0 or not is_causal:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=gqa)
            return out.transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense(q.device, extra), enable_gqa=gqa)
    return out.transpose(1, 2)


def _flash(q, k, v, mask: AttentionMask) -> torch.Tensor:
    """Triton flash attention; padding and packing go through the varlen entry point."""
    from mathlm.kernels import flash_attention, flash_attention_varlen

    window = (-1, -1) if mask.window is None else (mask.window - 1, 0)
    B, T, H, D = q.shape
    S = k.shape[1]
    if mask.key_valid is None and mask.document_ids is None:
        return flash_attention(q, k, v, causal=True, window_size=window)
    if mask.document_ids is not None:
        cu, max_len = mask.packed_offsets()
        out = flash_attention_varlen(q.reshape(B * T, H, D), k.reshape(B * T, -1, D), v.reshape(B * T, -1, D),
                                     cu, cu, max_len, max_len, causal=True, window_size=window)
        return out.view(B, T, H, D)
    # Left padding: the real keys of each row are the contiguous slots [pad, S); with bottom-right
    # causal alignment query i of a row sees its keys up to its own slot.
    keep, cu_q, cu_k, max_k = mask.padded_offsets()
    k_packed = k.reshape(B * S, -1, D).index_select(0, keep)
    v_packed = v.reshape(B * S, -1, D).index_select(0, keep)
    out = flash_attention_varlen(q.reshape(B * T, H, D), k_packed, v_packed, cu_q, cu_k, T, max_k,
                                 causal=True, window_size=window)
    return out.view(B, T, H, D)


def _sparse(q, k, v, mask: AttentionMask, cfg: ModelConfig, pattern: str) -> torch.Tensor:
    """Block-sparse attention for a non-dense layer. The kernel serves training and prefill (it picks
    its reference path on CPU); with padding, packing or a cache the layout becomes a token mask for sdpa."""
    from mathlm.kernels import block_sparse_attention
    from mathlm.kernels.sparse_layouts import layout_for_pattern, layout_to_token_mask

    bs, views = cfg.sparse_block_size, mask.views
    if pattern not in views.sparse_layouts:
        n_blocks = -(-mask.n_keys // bs)
        views.sparse_layouts[pattern] = layout_for_pattern(pattern, n_blocks, cfg).to(q.device)  # (1, nb, nb) bool, causal
    layout = views.sparse_layouts[pattern]
    if mask.is_plain_causal and mask.q_start == 0:
        return block_sparse_attention(q, k, v, layout, bs, causal=True)
    if pattern not in views.sparse_token_masks:
        views.sparse_token_masks[pattern] = layout_to_token_mask(layout, bs, mask.n_keys)[:, mask.q_start:mask.n_keys, :]
    return _sdpa(q, k, v, mask, views.sparse_token_masks[pattern])  # token mask (1, T, S)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.pattern = cfg.layer_pattern(layer)
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask: AttentionMask, cache: KVCache | None) -> torch.Tensor:
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(B, T, cfg.n_heads, cfg.head_dim)
        k = self.k_proj(x).view(B, T, cfg.n_kv_heads, cfg.head_dim)
        v = self.v_proj(x).view(B, T, cfg.n_kv_heads, cfg.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, S, Hkv, D)
        if cfg.attn_backend == "sparse" and self.pattern != "dense":
            out = _sparse(q, k, v, mask, cfg, self.pattern)
        elif cfg.attn_backend == "flash" or (cfg.attn_backend == "sparse" and q.is_cuda):
            out = _flash(q, k, v, mask)  # on CPU tensors the kernels run their reference path
        else:
            out = _sdpa(q, k, v, mask)
        return self.o_proj(out.reshape(B, T, cfg.n_heads * cfg.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask: AttentionMask, cache: KVCache | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# --------------------------------------------------------------------------- the single-token decode step


DECODE_FUSE_MAX_BYTES = 2**31  # fused copies of bigger models would cost too much memory: no fast path


@dataclass
class DecodeWeights:
    """What a single-token decode step reads, built once per `generate` call (`Transformer.decode_weights`).

    q/k/v and gate/up are concatenated into one matrix each (one GEMM instead of three or two); the
    module parameters, and so the state dict and the safetensors layout, stay Hugging Face's, split.
    The copies are made from the live parameters, so a model trained between two calls is current.
    `rope` is the rotary table at full head width, (max_seq_len, 2, head_dim): cos, then sin with the
    sign of rotate-half folded into its first half, so a rotation is x * cos + roll(x) * sin.
    """

    layers: list[tuple]  # per layer: (attn norm w, Wqkv, bqkv or None, Wo, mlp norm w, Wgate_up, Wdown)
    norm: torch.Tensor
    rope: torch.Tensor


def build_decode_weights(model: "Transformer") -> DecodeWeights | None:
    cfg = model.config
    if cfg.attn_backend != "sdpa" or any(p.device.type == "meta" for p in model.parameters()):
        return None
    size = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "layers." in n)
    if size > DECODE_FUSE_MAX_BYTES or not all(type(p.data) is torch.Tensor for p in model.parameters()):
        return None  # too big to copy, or sharded (DTensor): the general forward serves it
    layers = []
    for block in model.layers:
        a, m = block.self_attn, block.mlp
        wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        bqkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]) if cfg.qkv_bias else None
        wgu = torch.cat([m.gate_proj.weight, m.up_proj.weight])
        layers.append((block.input_layernorm.weight.detach(), wqkv.detach(), bqkv if bqkv is None else bqkv.detach(),
                       a.o_proj.weight.detach(), block.post_attention_layernorm.weight.detach(), wgu.detach(),
                       m.down_proj.weight.detach()))
    cos, sin = model.rope(model.norm.weight.device)  # (L, D/2) fp32
    rope = torch.stack([torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)], dim=1)  # (L, 2, D)
    return DecodeWeights(layers, model.norm.weight.detach(), rope)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)  # RMSNorm's order of operations


def decode_step(model: "Transformer", tokens: torch.Tensor, real: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
    """One token per row through the cache (B, 1) -> final hidden states (B, dim), with as few ops as
    possible: 2-D activations, one GEMM for q/k/v and one for gate/up, q and k rotated together, one
    attention mask per step (not per layer). Same result as the general forward up to rounding.
    The caller (`Transformer.forward`) has marked the slot in `key_valid`; bookkeeping stays there."""
    cfg, w = model.config, cache.decode_weights
    B, pos, hd, H, Hkv, eps = tokens.shape[0], cache.pos, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.norm_eps
    positions = cache.n_seen if real is None else (cache.n_seen + real.long()[:, 0] - 1).clamp_min(0)
    cos, sin = w.rope[positions].unbind(1)  # (B, D) each, fp32
    cos, sin = cos[:, None].to(cache.k.dtype), sin[:, None].to(cache.k.dtype)
    allowed = None
    if cache.has_padding:
        allowed = cache.key_valid[:, :pos + 1].clone()
        allowed[:, pos] = True  # a padding row sees itself: no row without keys, no NaN
        allowed = allowed[:, None, None, :]  # (B, 1, 1, S)
    # Per-step views of every layer's slot and keys (indexing them per layer costs more than the ops).
    k_slot, v_slot = cache.k[:, :, pos], cache.v[:, :, pos]  # (n_layers, B, Hkv, hd)
    keys = cache.k[:, :, :pos + 1].transpose(2, 3)  # (n_layers, B, Hkv, S, hd)
    values = cache.v[:, :, :pos + 1].transpose(2, 3)
    x = F.embedding(tokens[:, 0], model.embed_tokens.weight)  # (B, dim)
    for layer, (w_in, wqkv, bqkv, wo, w_post, wgu, wdown) in enumerate(w.layers):
        qk, v = F.linear(_rms(x, w_in, eps), wqkv, bqkv).split([(H + Hkv) * hd, Hkv * hd], -1)
        qk = qk.view(B, H + Hkv, hd)
        qk = torch.addcmul(qk * cos, qk.roll(hd // 2, -1), sin)  # rotate-half RoPE, q and k at once
        k_slot[layer].copy_(qk[:, H:])
        v_slot[layer].copy_(v.view(B, Hkv, hd))
        q = qk[:, :H].view(B, Hkv, H // Hkv, hd)  # the query heads of a group act as its queries
        out = F.scaled_dot_product_attention(q, keys[layer], values[layer], attn_mask=allowed)  # (B, Hkv, H/Hkv, hd)
        x = x + F.linear(out.view(B, H * hd), wo)
        gate, up = F.linear(_rms(x, w_post, eps), wgu).chunk(2, -1)
        x = x + F.linear(F.silu(gate) * up, wdown)
    return _rms(x, w.norm, eps)


# --------------------------------------------------------------------------- the model


class Transformer(nn.Module):
    """`model(tokens)` -> logits (B, T, vocab_size) in the model's dtype.

    Build on the meta device and materialize without allocating twice:
        with torch.device("meta"):
            model = Transformer(cfg)
        model.materialize("cuda", torch.bfloat16)   # or load_hf_checkpoint(...)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        if self.embed_tokens.weight.device.type != "meta":
            self.init_weights()

    # ---- parameters

    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2/LLaMA-style init: N(0, 0.02); residual output projections scaled by 1/sqrt(2 n_layers)."""
        gen = torch.Generator(device=self.embed_tokens.weight.device) if seed is not None else None
        if gen is not None:
            gen.manual_seed(seed)
        std = self.config.initializer_range
        out_std = std / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                scaled = name.endswith("o_proj.weight") or name.endswith("down_proj.weight")
                nn.init.normal_(p, 0.0, out_std if scaled else std, generator=gen)

    def materialize(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    seed: int | None = None) -> "Transformer":
        """Allocate a meta-built model on `device` once and initialize it."""
        self.to_empty(device=device)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.to(dtype)
        self.init_weights(seed)
        return self

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameters counted once (tied weights once); optionally without the input embedding."""
        n = sum(p.numel() for p in self.parameters())  # parameters() already deduplicates ties
        if exclude_embeddings and not self.config.tie_embeddings:
            n -= self.embed_tokens.weight.numel()
        return n

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """FLOPs per token (PaLM appendix B): forward = 2 * N_matmul + 4 * n_layers * n_heads * head_dim * seq_len.

        N_matmul counts every weight used in a matmul (all linear layers and the output head, not the
        embedding lookup); the attention term counts QK^T and AV over the full (non-causal) square,
        as PaLM does. Training = 3x forward (backward costs twice the forward).
        """
        cfg = self.config
        n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        fwd = 2 * n_matmul + 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
        return 3 * fwd if training else fwd

    # ---- forward

    def decode_weights(self) -> DecodeWeights | None:
        """Fused weights for single-token decode steps (see `DecodeWeights`); None where the general
        forward must serve (non-sdpa backends, sharded or very large models)."""
        with torch.no_grad():
            return build_decode_weights(self)

    def rope(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._rope:
            self._rope[device] = rope_tables(self.config, device)
        return self._rope[device]

    def _check_tokens(self, tokens: torch.Tensor, cache: KVCache | None) -> None:
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be a (batch, seq_len) integer tensor, got {shape}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise ValueError(f"tokens must have an integer dtype, got {tokens.dtype}")
        start = cache.pos if cache is not None else 0
        if start + tokens.shape[1] > cfg.max_seq_len:
            raise ValueError(f"sequence length ({start + tokens.shape[1]}) exceeds max_seq_len ({cfg.max_seq_len})")
        if cache is not None and start + tokens.shape[1] > cache.max_len:
            raise ValueError(f"sequence length ({start + tokens.shape[1]}) exceeds the cache length ({cache.max_len})")
        if cache is not None and cache.batch_size != tokens.shape[0]:
            raise ValueError(f"batch size ({tokens.shape[0]}) differs from the cache's ({cache.batch_size})")
        if tokens.numel() and not torch.compiler.is_compiling():
            lo, hi = (int(t) for t in torch.aminmax(tokens))
            if lo < 0 or hi >= cfg.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token id {bad} is outside the vocabulary [0, {cfg.vocab_size})")

    def forward(self, tokens: torch.Tensor, *, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, document_ids: torch.Tensor | None = None,
                cache: KVCache | None = None, return_hidden: bool = False, validate: bool = True) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab), or final hidden states (B, T, dim) with `return_hidden`.

        attention_mask (B, T): 1 for real tokens, 0 for (left) padding of these T tokens.
        document_ids (B, T): packed sequences; tokens attend only within their document and positions
            restart at each document. Not combinable with a cache.
        position_ids (B, T): RoPE positions; derived from the masks when omitted.
        cache: a KVCache; the tokens go to slots [cache.pos, cache.pos + T) and cache.pos advances.
        validate: check token ids and lengths (a device sync); engines that feed their own sampled
            tokens may turn it off.
        """
        if validate:
            self._check_tokens(tokens, cache)
        B, T = tokens.shape
        dev = tokens.device
        q_start = cache.pos if cache is not None else 0
        if attention_mask is not None and attention_mask.shape != tokens.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} must equal tokens shape {tuple(tokens.shape)}")
        if document_ids is not None:
            if cache is not None:
                raise ValueError("document_ids (packing) cannot be combined with a KV cache")
            if document_ids.shape != tokens.shape:
                raise ValueError(f"document_ids shape {tuple(document_ids.shape)} must equal tokens shape {tuple(tokens.shape)}")

        real = attention_mask.bool() if attention_mask is not None else None
        padded = real is not None and not bool(real.all())
        key_valid = real if padded else None
        if cache is not None:
            cache.key_valid[:, q_start:q_start + T] = True if real is None else real
            cache.has_padding |= padded
            key_valid = cache.key_valid[:, :q_start + T] if cache.has_padding else None

        # Engine-fed single-token steps (a cache carrying decode weights) take the lean path.
        if (T == 1 and cache is not None and cache.decode_weights is not None and position_ids is None
                and (self.config.sliding_window is None or self.config.sliding_window >= cache.max_len)):
            x = decode_step(self, tokens, real, cache)[:, None]  # (B, 1, dim)
            cache.pos += 1
            cache.n_seen += 1 if real is None else real[:, 0]
            return x if return_hidden else self.lm_head(x)
        if position_ids is None:
            position_ids = self._positions(B, T, dev, real, document_ids, cache)
        elif position_ids.shape != tokens.shape:
            raise ValueError(f"position_ids shape {tuple(position_ids.shape)} must equal tokens shape {tuple(tokens.shape)}")
        elif position_ids.numel() and not 0 <= int(position_ids.min()) <= int(position_ids.max()) < self.config.max_seq_len:
            raise ValueError(f"position ids span [{int(position_ids.min())}, {int(position_ids.max())}], "
                             f"outside [0, max_seq_len={self.config.max_seq_len})")
        cos_table, sin_table = self.rope(dev)
        cos, sin = cos_table[position_ids], sin_table[position_ids]  # (B, T, D/2) fp32

        mask = AttentionMask(q_start, T, key_valid, document_ids, self.config.sliding_window)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            if self.config.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, cache, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache)
        if cache is not None:
            cache.pos += T
            cache.n_seen += T if real is None else real.sum(1)
        x = self.norm(x)
        return x if return_hidden else self.lm_head(x)

    @staticmethod
    def _positions(B, T, dev, real, document_ids, cache) -> torch.Tensor:
        """RoPE positions: the count of real tokens before each token in its row (or document)."""
        if document_ids is not None:
            idx = torch.arange(T, device=dev).expand(B, T)
            starts = torch.ones(B, T, dtype=torch.bool, device=dev)
            starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
            start_idx = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
            return idx - start_idx
        before = cache.n_seen[:, None] if cache is not None else torch.zeros(B, 1, dtype=torch.long, device=dev)
        if real is None:
            return before + torch.arange(T, device=dev)[None]
        return (before + real.long().cumsum(1) - 1).clamp_min(0)
