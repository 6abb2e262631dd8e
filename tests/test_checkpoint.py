"""Hugging Face checkpoints: logits of checkpoints written by transformers' `save_pretrained`
against transformers' own forward, for llama / mistral / qwen2 (MHA, GQA, MQA, sliding window,
q/k/v bias, tied embeddings); our exported folders reloaded by transformers; sharding; every error."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mathlm import ModelConfig, Transformer, load_hf_checkpoint, save_hf_checkpoint

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6)
FAMILIES = {
    "llama-mha": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=4, rope_theta=10000.0)),
    "llama-gqa-scaled": ("LlamaConfig", "LlamaForCausalLM", dict(
        num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    "mistral-gqa-window": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=5)),
    "qwen2-mqa-tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=1, tie_word_embeddings=True)),
}


def hf_model(family, seed=0):
    cfg_cls, model_cls, extra = FAMILIES[family]
    cfg = getattr(transformers, cfg_cls)(**COMMON, **extra, attn_implementation="eager")
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # HF inits norms to 1 and biases to 0: randomize so they are tested
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def ids(B=2, T=21, seed=3):
    return torch.randint(0, 101, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hf_save_pretrained_loads_with_equal_logits(family, tmp_path):
    ref = hf_model(family)
    ref.save_pretrained(tmp_path)
    ours = load_hf_checkpoint(tmp_path).eval()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_left_padded_batch_matches_hf(family, tmp_path):
    ref = hf_model(family)
    ref.save_pretrained(tmp_path)
    ours = load_hf_checkpoint(tmp_path).eval()
    x = ids(3, 12)
    mask = torch.ones_like(x)
    mask[1, :5] = 0
    mask[2, :11] = 0
    with torch.no_grad():
        a = ours(x, attention_mask=mask)
        b = ref(x, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(a[real], b[real], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_folder_reloads_in_transformers(family, tmp_path):
    ref = hf_model(family)
    ref.save_pretrained(tmp_path / "hf")
    ours = load_hf_checkpoint(tmp_path / "hf")
    save_hf_checkpoint(ours, tmp_path / "ours")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, ref(x).logits, rtol=1e-5, atol=1e-5)


def test_sharded_save_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=101, dim=64, n_layers=3, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=32))
    save_hf_checkpoint(model, tmp_path / "ck", max_shard_size="100KB")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 2
    index = json.loads((tmp_path / "ck" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {("" if n.startswith("lm_head") else "model.") + n for n in model.state_dict()}
    back = load_hf_checkpoint(tmp_path / "ck")
    for (n, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), n
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ck").eval()
    x = ids(1, 9)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x), rtol=1e-5, atol=1e-5)


def test_dtype_and_overwrite(tmp_path):
    model = Transformer(ModelConfig(vocab_size=101, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_seq_len=16))
    save_hf_checkpoint(model, tmp_path / "ck", dtype=torch.bfloat16)
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_hf_checkpoint(tmp_path / "ck").embed_tokens.weight.dtype == torch.bfloat16
    assert load_hf_checkpoint(tmp_path / "ck", dtype=torch.float32).embed_tokens.weight.dtype == torch.float32
    save_hf_checkpoint(model, tmp_path / "ck")  # replaces the folder atomically
    assert load_hf_checkpoint(tmp_path / "ck").embed_tokens.weight.dtype == torch.float32
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary folders left behind


# ----------------------------------------------------------------------------- errors

@pytest.fixture
def saved(tmp_path):
    hf_model("llama-mha").save_pretrained(tmp_path)
    return tmp_path


def rewrite(path, fn):
    tensors = load_file(path / "model.safetensors")
    fn(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_named(saved):
    rewrite(saved, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor\(s\) 'model.layers.1.mlp.up_proj.weight'.*\(96, 64\)"):
        load_hf_checkpoint(saved)


def test_unexpected_tensor_named(saved):
    rewrite(saved, lambda t: t.__setitem__("model.layers.0.self_attn.q_norm.weight", torch.ones(16)))
    with pytest.raises(ValueError, match=r"unexpected tensor 'model.layers.0.self_attn.q_norm.weight'"):
        load_hf_checkpoint(saved)


def test_wrong_shape_names_both_shapes(saved):
    rewrite(saved, lambda t: t.__setitem__("model.layers.0.self_attn.k_proj.weight", torch.ones(32, 64)))
    with pytest.raises(ValueError, match=r"'model.layers.0.self_attn.k_proj.weight'.*shape \(32, 64\), the model expects \(64, 64\)"):
        load_hf_checkpoint(saved)


def test_unsupported_model_type_names_supported(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unsupported model_type 'gpt2'; supported: llama, mistral, qwen2"):
        load_hf_checkpoint(saved)


def test_truncated_file_is_a_clear_error(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_hf_checkpoint(saved)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2).to_hf_config()))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor model.safetensors.index.json"):
        load_hf_checkpoint(tmp_path)
