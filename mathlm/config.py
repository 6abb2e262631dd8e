"""Model configuration: one dataclass and one table of presets.

The big presets are the published architectures exactly (parameter counts are checked in
tests/test_config.py against the published figures and against Hugging Face's own classes).
Field names follow the Llama paper/gpt-fast; `to_hf_config` / `from_hf_config` translate to and
from Hugging Face `config.json` for the llama, mistral and qwen2 model types.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ATTN_BACKENDS = ("sdpa", "flash", "sparse")
ATTN_PATTERNS = ("dense", "local", "strided", "fixed", "bigbird")
HF_MODEL_TYPES = ("llama", "mistral", "qwen2")


@dataclass
class ModelConfig:
    vocab_size: int = 32000
    dim: int = 4096                      # model width (HF hidden_size)
    n_layers: int = 32
    n_heads: int = 32                    # query heads
    n_kv_heads: int | None = None        # key/value heads: None = n_heads (MHA), 1 = MQA, else GQA
    hidden_dim: int | None = None        # SwiGLU inner width; None = LLaMA's 2/3 * 4 * dim rounded up
    multiple_of: int = 256               # rounding for the derived hidden_dim
    head_dim: int | None = None          # None = dim // n_heads
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None     # LLaMA-3.1 style: {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
    max_seq_len: int = 4096
    qkv_bias: bool = False               # Qwen2 puts a bias on q/k/v projections
    tie_embeddings: bool = False         # lm_head shares the embedding matrix
    sliding_window: int | None = None    # Mistral: each token sees at most this many keys (itself included)
    attn_backend: str = "sdpa"           # "sdpa" (reference), "flash" (Triton), "sparse" (block-sparse Triton)
    attn_pattern: tuple[str, ...] = ("dense",)  # per-layer pattern, cycled over layers (GPT-3: dense, local)
    sparse_block_size: int = 64          # block size of the block-sparse layouts
    sparse_local_blocks: int = 4         # "local": band width in blocks (the diagonal block included)
    sparse_stride: int = 4               # "strided"/"fixed": stride in blocks
    sparse_global_blocks: int = 1        # "bigbird": leading global blocks
    sparse_random_blocks: int = 1        # "bigbird": random blocks per query-block row
    activation_checkpointing: bool = False
    initializer_range: float = 0.02
    pad_id: int | None = None            # written to config.json; the model itself never needs it
    bos_id: int | None = 1
    eos_id: int | None = 2
    hf_model_type: str = "llama"         # model_type written to config.json on export
    name: str = ""                       # preset name, for logs

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for f in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "max_seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} ({v!r}) must be a positive integer")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if self.head_dim is None:
            if self.dim % self.n_heads != 0:
                raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}) "
                                 f"unless head_dim is given")
            self.head_dim = self.dim // self.n_heads
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if self.hidden_dim is None:
            hidden = int(2 * 4 * self.dim / 3)
            self.hidden_dim = self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"attn_backend ({self.attn_backend!r}) must be one of {ATTN_BACKENDS}")
        self.attn_pattern = tuple(self.attn_pattern) if not isinstance(self.attn_pattern, str) else (self.attn_pattern,)
        if not self.attn_pattern:
            raise ValueError("attn_pattern must name at least one pattern")
        for p in self.attn_pattern:
            if p not in ATTN_PATTERNS:
                raise ValueError(f"attn_pattern entry {p!r} must be one of {ATTN_PATTERNS}")
        bs = self.sparse_block_size
        if bs < 16 or bs & (bs - 1):
            raise ValueError(f"sparse_block_size ({bs}) must be a power of two >= 16")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window ({self.sliding_window}) must be None or >= 1")
        if self.hf_model_type not in HF_MODEL_TYPES:
            raise ValueError(f"hf_model_type ({self.hf_model_type!r}) must be one of {HF_MODEL_TYPES}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ("llama3", "default"):
                raise ValueError(f"rope_scaling type {kind!r} is not supported (supported: 'llama3', 'default')")

    # ------------------------------------------------------------------ presets

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """The published architecture `name`, with any field overridden (e.g. `max_seq_len=1024`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {sorted(unknown)} in overrides")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    def layer_pattern(self, layer: int) -> str:
        """Attention pattern of layer `layer` ("dense", "local", ...), cycling `attn_pattern`."""
        return self.attn_pattern[layer % len(self.attn_pattern)]

    # --------------------------------------------------------- Hugging Face config.json

    def to_hf_config(self) -> dict:
        """The `config.json` dict Hugging Face transformers reads for this architecture."""
        mt = self.hf_model_type
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[mt]
        cfg = {
            "architectures": [arch],
            "model_type": mt,
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_seq_len,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "tie_word_embeddings": self.tie_embeddings,
            "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_id,
            "pad_token_id": self.pad_id,
            "attention_dropout": 0.0,
        }
        if mt == "llama":
            cfg["attention_bias"] = self.qkv_bias
            cfg["mlp_bias"] = False
        if mt == "mistral":
            cfg["sliding_window"] = self.sliding_window
        if mt == "qwen2":
            cfg["use_sliding_window"] = self.sliding_window is not None
            cfg["sliding_window"] = self.sliding_window
            cfg["max_window_layers"] = self.n_layers
        return cfg

    @classmethod
    def from_hf_config(cls, hf: dict, **overrides: Any) -> "ModelConfig":
        """Translate a Hugging Face `config.json` dict (llama, mistral, qwen2) to a ModelConfig."""
        mt = hf.get("model_type")
        if mt not in HF_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {mt!r}; supported: {', '.join(HF_MODEL_TYPES)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {hf.get('hidden_act')!r}; mathlm implements SwiGLU (silu)")
        rope_scaling = hf.get("rope_scaling")
        rope_params = hf.get("rope_parameters")  # transformers >= 5 may nest theta/scaling here
        rope_theta = hf.get("rope_theta")
        if isinstance(rope_params, dict):
            rope_theta = rope_params.get("rope_theta", rope_theta)
            if rope_params.get("rope_type", "default") != "default" and rope_scaling is None:
                rope_scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        if rope_scaling is not None and rope_scaling.get("rope_type", rope_scaling.get("type")) == "default":
            rope_scaling = None
        sliding = hf.get("sliding_window")
        if mt == "qwen2" and not hf.get("use_sliding_window", False):
            sliding = None
        n_heads = hf["num_attention_heads"]
        kw = dict(
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            hidden_dim=hf["intermediate_size"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
            rope_scaling=rope_scaling,
            max_seq_len=hf.get("max_position_embeddings", 4096),
            qkv_bias=(mt == "qwen2") or bool(hf.get("attention_bias", False)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            sliding_window=sliding,
            initializer_range=hf.get("initializer_range", 0.02),
            pad_id=hf.get("pad_token_id"),
            bos_id=hf.get("bos_token_id"),
            eos_id=_first(hf.get("eos_token_id")),
            hf_model_type=mt,
        )
        if mt == "llama" and hf.get("mlp_bias", False):
            raise ValueError("mlp_bias=True is not supported (no Llama family checkpoint uses it)")
        return cls(**{**kw, **overrides})


def _first(x):
    return x[0] if isinstance(x, (list, tuple)) and x else x


_LLAMA = dict(norm_eps=1e-5, rope_theta=10000.0, vocab_size=32000, bos_id=1, eos_id=2)

# Exact-key lookup; the big ones are the published architectures (see each model card's config.json).
PRESETS: dict[str, dict[str, Any]] = {
    # ~1M parameters: tests and the CPU demo (docs/calibration.md: ~20k tokens/s training on 2 cores).
    "tiny": dict(vocab_size=1024, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, hidden_dim=384,
                 max_seq_len=512, norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=False),
    # ~26M parameters: CPU benchmarks.
    "small": dict(vocab_size=4096, dim=512, n_layers=8, n_heads=8, n_kv_heads=4, hidden_dim=1408,
                  max_seq_len=1024, norm_eps=1e-5, rope_theta=10000.0),
    "llama2-7b": dict(**_LLAMA, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, hidden_dim=11008,
                      max_seq_len=4096),
    "llama2-13b": dict(**_LLAMA, dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, hidden_dim=13824,
                       max_seq_len=4096),
    "llama2-70b": dict(**_LLAMA, dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, hidden_dim=28672,
                       max_seq_len=4096),
    "mistral-7b": dict(**_LLAMA, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, hidden_dim=14336,
                       max_seq_len=32768, sliding_window=4096, hf_model_type="mistral"),
    "llama3-8b": dict(vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                      hidden_dim=14336, max_seq_len=8192, norm_eps=1e-5, rope_theta=500000.0,
                      bos_id=128000, eos_id=128001),
    "qwen2.5-math-1.5b": dict(vocab_size=151936, dim=1536, n_layers=28, n_heads=12, n_kv_heads=2,
                              hidden_dim=8960, max_seq_len=4096, norm_eps=1e-6, rope_theta=10000.0,
                              qkv_bias=True, tie_embeddings=True, bos_id=151643, eos_id=151643,
                              hf_model_type="qwen2"),
    "deepseek-math-7b": dict(vocab_size=102400, dim=4096, n_layers=30, n_heads=32, n_kv_heads=32,
                             hidden_dim=11008, max_seq_len=4096, norm_eps=1e-6, rope_theta=10000.0,
                             bos_id=100000, eos_id=100001),
}
