"""Presets are the published architectures: parameter counts against the published figures and
against Hugging Face's own model classes built from our exported config.json."""
import pytest
import torch

from mathlm import PRESETS, ModelConfig, Transformer

# Published parameter counts (model cards / papers; HF `num_parameters()` of the released weights).
PUBLISHED = {
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "mistral-7b": 7_241_732_096,
    "llama3-8b": 8_030_261_248,
    "qwen2.5-math-1.5b": 1_543_714_304,
    "deepseek-math-7b": 6_910_365_696,
}


def meta_model(cfg):
    with torch.device("meta"):
        return Transformer(cfg)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_big_presets_have_published_parameter_counts(name):
    model = meta_model(ModelConfig.from_preset(name))
    assert model.embed_tokens.weight.device.type == "meta"
    assert model.num_params() == PUBLISHED[name]


@pytest.mark.parametrize("name", ["llama2-7b", "mistral-7b", "llama3-8b", "qwen2.5-math-1.5b", "deepseek-math-7b"])
def test_presets_match_transformers_classes(name):
    transformers = pytest.importorskip("transformers")
    cfg = ModelConfig.from_preset(name)
    hf_cfg = transformers.AutoConfig.for_model(**cfg.to_hf_config())
    with torch.device("meta"):
        hf_model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    n_hf = sum(p.numel() for p in hf_model.parameters())
    assert meta_model(cfg).num_params() == n_hf


def test_small_presets_sizes():
    assert 0.5e6 < meta_model(ModelConfig.from_preset("tiny")).num_params() < 5e6
    assert 20e6 < meta_model(ModelConfig.from_preset("small")).num_params() < 30e6


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        ModelConfig.from_preset("llama2-8b")
    msg = str(e.value)
    assert "'llama2-8b'" in msg
    for name in PRESETS:
        assert name in msg


def test_overrides_and_unknown_override():
    cfg = ModelConfig.from_preset("tiny", max_seq_len=64, n_kv_heads=1)
    assert cfg.max_seq_len == 64 and cfg.n_kv_heads == 1 and cfg.name == "tiny"
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_preset("tiny", n_head=3)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(n_heads=6, n_kv_heads=4), r"n_heads \(6\) must be divisible by n_kv_heads \(4\)"),
    (dict(dim=100, n_heads=3), r"dim \(100\) must be divisible by n_heads \(3\)"),
    (dict(attn_backend="xformers"), r"attn_backend \('xformers'\) must be one of"),
    (dict(attn_pattern=["dense", "diagonal"]), r"attn_pattern entry 'diagonal'"),
    (dict(sparse_block_size=24), r"sparse_block_size \(24\) must be a power of two >= 16"),
    (dict(vocab_size=0), r"vocab_size \(0\) must be a positive integer"),
])
def test_config_errors_name_the_values(kwargs, msg):
    base = dict(vocab_size=64, dim=64, n_layers=1, n_heads=4)
    with pytest.raises(ValueError, match=msg):
        ModelConfig(**{**base, **kwargs})


def test_derived_hidden_dim_is_llamas():
    # LLaMA-7B: 2/3 * 4 * 4096 = 10922.67 -> rounded up to a multiple of 256 = 11008.
    assert ModelConfig(dim=4096, n_heads=32, n_layers=1).hidden_dim == 11008


def test_flops_per_token_formula():
    cfg = ModelConfig(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_seq_len=32)
    model = Transformer(cfg)
    # Linear weights: per layer q,k,v,o 4*64*64 + mlp 3*64*128; plus the head 64*100.
    n_matmul = 2 * (4 * 64 * 64 + 3 * 64 * 128) + 64 * 100
    attn = 4 * 2 * 4 * 16 * 32  # 4 * n_layers * n_heads * head_dim * seq_len
    assert model.flops_per_token(32, training=False) == 2 * n_matmul + attn
    assert model.flops_per_token(32) == 3 * (2 * n_matmul + attn)
