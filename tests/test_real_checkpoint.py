"""A tiny random Hugging Face Qwen2 checkpoint (q/k/v biases, GQA, tied embeddings) with a
Qwen2.5-Math-style tokenizer folder, end to end against transformers: logits on a chat prompt,
greedy generation from the chat prompt equal to `generate` (stopping on generation_config's EOS
ids), and the folder mathlm writes back loading in AutoModelForCausalLM / AutoTokenizer /
GenerationConfig with the same numbers."""
import json

import pytest
import torch

from mathlm import Tokenizer, generate, load_hf_checkpoint, save_hf_checkpoint

transformers = pytest.importorskip("transformers")

MESSAGES = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
            {"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in total?"}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from hf_tokenizers import write_tiny_qwen2_checkpoint

    return write_tiny_qwen2_checkpoint(tmp_path_factory.mktemp("qwen2-tiny"))


def hf_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64,
                                                             attn_implementation="eager").eval()


def hf_greedy(path, ids, max_new_tokens):
    hf = hf_model(path)
    out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                      max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=hf.generation_config.pad_token_id)
    return out[0, len(ids):].tolist()


def test_chat_prompt_logits_match_transformers(folder):
    tok = Tokenizer.from_pretrained(folder)
    ids = tok.encode_prompt(MESSAGES[1]["content"])
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert ids == hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    ours = load_hf_checkpoint(folder, dtype=torch.float64).eval()
    assert ours.config.qkv_bias and ours.config.tie_embeddings
    x = torch.tensor([ids])
    with torch.no_grad():
        # transformers builds the RoPE tables in float32 even for a float64 model: agreement to ~1e-6
        torch.testing.assert_close(ours(x), hf_model(folder)(x).logits, rtol=1e-5, atol=1e-5)


def test_greedy_generation_equals_hf_generate_and_stops_on_eos_ids(folder, tmp_path):
    """First both run to max_new_tokens; then the token HF produced 5th is made one more EOS id in
    generation_config.json: both must stop right after it (mathlm's default stop ids come from the
    tokenizer's eos_ids, no eos_id argument)."""
    tok = Tokenizer.from_pretrained(folder)
    model = load_hf_checkpoint(folder, dtype=torch.float64).eval()
    prompt = tok.encode_prompt(MESSAGES[1]["content"])
    want = hf_greedy(folder, prompt, 24)
    got = generate(model, [prompt], 24, temperature=0, tokenizer=tok)[0][0]
    assert got.tokens == want and got.text == tok.decode(want)
    assert not set(want) & set(tok.stop_ids) and got.finish_reason == "length"
    assert len(set(want)) >= 8 and want[4] not in want[:4]  # a varied sequence, so stopping is visible

    stop = want[4]
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": gen["eos_token_id"] + [stop]}))
    try:
        tok = Tokenizer.from_pretrained(folder)
        want = hf_greedy(folder, prompt, 24)
        got = generate(model, [prompt], 24, temperature=0, tokenizer=tok)[0][0]
    finally:
        (folder / "generation_config.json").write_text(json.dumps(gen))
    assert stop in tok.eos_ids
    assert got.tokens == want and len(want) == 5 and got.finish_reason == "eos"


def test_written_folder_loads_in_transformers(folder, tmp_path):
    tok = Tokenizer.from_pretrained(folder)
    model = load_hf_checkpoint(folder)
    save_hf_checkpoint(model, tmp_path / "out", tokenizer=tok)
    out = tmp_path / "out"
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    gen = transformers.GenerationConfig.from_pretrained(out)
    assert list(tok.eos_ids) == gen.eos_token_id and gen.pad_token_id == tok.pad_id
    assert hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False) == \
        tok.apply_chat_template(MESSAGES, add_generation_prompt=True)
    text = "Natalia sold <|im_end|> 48 + 24 = 72 clips. \\boxed{72}"
    assert hf_tok.encode(text) == tok.encode(text) == Tokenizer.from_pretrained(out).encode(text)
    x = torch.tensor([tok.encode_prompt("What is 2+2?")])
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, hf_model(folder)(x).logits.float(), rtol=1e-5, atol=1e-5)
    assert json.loads((out / "prompt_format.json").read_text()) == {"style": "chat", "system": MESSAGES[0]["content"]}
