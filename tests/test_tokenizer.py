"""Tokenizer: round trips, every digit its own token, byte fallback, the template's loss boundary,
loading from a checkpoint folder, and the errors; tokenizer.json folders in the Qwen2 and Llama-3
styles (tests/hf_tokenizers.py) against transformers.AutoTokenizer on the same folder."""
import json
import pickle
import random

import pytest

from mathlm import PROMPT_TEMPLATE, Tokenizer
from mathlm.sampling import default_stop_ids


def corpus(n=400, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99999), rng.randint(1, 999)
        out.append(f"Question: What is {a} times {b}?\nAnswer:\nWe multiply.\n```python\nprint({a} * {b})\n```\n"
                   f"```output\n{a * b}\n```\nThe answer is \\boxed{{{a * b}}}.")
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    return Tokenizer.train(corpus(), vocab_size=400, path=path), path


@pytest.mark.parametrize("text", [
    "Solve 3x + 7 = 22.\n```python\nx = (22 - 7) / 3\nprint(x)\n```",
    "    indented\tand\ttabs  double  spaces\n\n",
    "unicode: café → ∑ 中文 🙂",
    "",
])
def test_round_trip_is_exact(tok, text):
    t, _ = tok
    assert t.decode(t.encode(text, bos=True, eos=True)) == text


def test_every_digit_is_its_own_token(tok):
    t, _ = tok
    ids = t.encode("x=1234567890 and 42", bos=False)
    pieces = [t.id_to_piece(i) for i in ids]
    digit_pieces = [p for p in pieces if not p.startswith("<0x") and any(c.isdigit() for c in p)]
    assert digit_pieces == list("1234567890") + ["4", "2"]


def test_no_piece_spans_a_newline_or_a_code_fence(tok):
    """The engine appends output blocks after a closing fence: the fence must be a token of its own."""
    t, _ = tok
    text = "x = 3\nprint(x * 2)\n```\n```output\n6\n```\nThe answer is \\boxed{6}."
    pieces = [t.id_to_piece(i) for i in t.encode(text, bos=False)]
    for p in pieces:
        assert p in ("\n", "```", "```python", "```output") or ("\n" not in p and "`" not in p), p
    assert pieces.count("```") == 2 and pieces.count("```output") == 1


def test_byte_fallback_never_produces_unknown(tok):
    t, _ = tok
    ids = t.encode("ʃ∮ƛ", bos=False)
    assert t.sp.unk_id() not in ids
    assert all(t.id_to_piece(i).startswith("<0x") for i in ids)


def test_special_ids(tok):
    t, _ = tok
    assert (t.pad_id, t.bos_id, t.eos_id) == (0, 1, 2)
    assert t.encode("7", bos=True, eos=True)[0] == 1 and t.encode("7", bos=True, eos=True)[-1] == 2
    assert 300 <= len(t) <= 400


def test_template_and_loss_boundary(tok):
    t, _ = tok
    ids, start = t.encode_example("What is 2+2?", "4\nThe answer is \\boxed{4}.")
    assert t.decode(ids[:start]) == PROMPT_TEMPLATE.format(question="What is 2+2?")
    assert ids[:start] == t.encode_prompt("What is 2+2?")
    assert t.decode(ids[start:]) == "4\nThe answer is \\boxed{4}."
    assert ids[-1] == t.eos_id and ids[0] == t.bos_id


def test_from_file_and_folder_and_pickle(tok, tmp_path):
    t, path = tok
    again = Tokenizer.from_file(path)
    folder = Tokenizer.from_file(path.parent)
    s = "The answer is \\boxed{12}."
    assert again.encode(s) == folder.encode(s) == t.encode(s)
    assert pickle.loads(pickle.dumps(t)).encode(s) == t.encode(s)


def test_errors(tok, tmp_path):
    t, _ = tok
    with pytest.raises(FileNotFoundError, match="no sentencepiece model"):
        Tokenizer.from_file(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model is not a sentencepiece model"):
        Tokenizer.from_file(tmp_path / "bad.model")
    with pytest.raises(ValueError, match=r"token id 5000 is outside the vocabulary"):
        t.decode([1, 5000])
    with pytest.raises(ValueError, match="vocab_size \\(100\\) must be >= 300"):
        Tokenizer.train(["a"], vocab_size=100)
    with pytest.raises(ValueError, match="text must be a str, got int"):
        t.encode(3)


# ---------------------------------------------------------------- tokenizer.json folders vs transformers

PARITY_TEXTS = [
    "Natalia sold 48 clips in April. The answer is \\boxed{72}.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",  # Qwen specials inside the text
    "<|begin_of_text|>hi<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>",  # Llama-3 specials
    "a<tool_call>{\"name\": 1}</tool_call>b",  # a non-special added token
    "<|box_start|>12345678<|endoftext|>",  # the token only tokenizer_config.json declares
    "cafe\u0301 vs café ≥ √2, 数学 🙂",  # NFC matters for Qwen2 (e + combining acute)
    "  two  spaces\n\n\ttab   trailing   ",
    "Hello , world . isn't it ? 1234567 x=-3.25",  # clean_up_tokenization_spaces would change this
    "```python\nprint(6 * 7)\n```\n```output\n42\n```",
    "",
]


@pytest.fixture(scope="module", params=["qwen2", "llama3"])
def hf_pair(request, tmp_path_factory):
    """(mathlm Tokenizer, transformers AutoTokenizer) on the same locally built folder."""
    transformers = pytest.importorskip("transformers")
    from hf_tokenizers import write_llama3_folder, write_qwen2_folder

    write = write_qwen2_folder if request.param == "qwen2" else write_llama3_folder
    folder = write(tmp_path_factory.mktemp(request.param))
    return request.param, Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("text", PARITY_TEXTS)
def test_encode_equals_transformers(hf_pair, text):
    _, tok, hf = hf_pair
    for special in (True, False):
        assert tok.encode(text, bos=special) == hf.encode(text, add_special_tokens=special)
    assert tok.encode(text, bos=False, eos=True) == hf.encode(text, add_special_tokens=False) + [hf.eos_token_id]


def test_decode_and_len_equal_transformers(hf_pair):
    """Decoding the encodings of the texts and 300 random id sequences (broken UTF-8 byte runs,
    specials anywhere, ids past the vocabulary) gives HF's string; len counts the added tokens as HF does."""
    _, tok, hf = hf_pair
    assert len(tok) == len(hf)
    for text in PARITY_TEXTS:
        ids = hf.encode(text)
        assert tok.decode(ids) == hf.decode(ids)
    rng = random.Random(0)
    for _ in range(300):  # ids past len(hf) stand for the padded embedding rows real checkpoints have
        ids = [rng.randrange(len(hf) + 8) for _ in range(rng.randint(1, 12))]
        assert tok.decode(ids) == hf.decode(ids), ids


def test_special_ids_and_eos_ids(hf_pair):
    """eos_ids = the config's EOS first, then generation_config's list (duplicates dropped)."""
    style, tok, hf = hf_pair
    ids = {t: hf.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|begin_of_text|>",
                                                     "<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")}
    if style == "qwen2":  # eos <|endoftext|>; generation_config [<|im_end|>, <|endoftext|>]; no BOS
        assert tok.eos_ids == (ids["<|endoftext|>"], ids["<|im_end|>"])
        assert (tok.bos_id, tok.pad_id) == (None, ids["<|endoftext|>"])
    else:  # eos <|eot_id|>; generation_config [<|end_of_text|>, <|eom_id|>, <|eot_id|>]; no pad: EOS pads
        assert tok.eos_ids == (ids["<|eot_id|>"], ids["<|end_of_text|>"], ids["<|eom_id|>"])
        assert (tok.bos_id, tok.pad_id) == (ids["<|begin_of_text|>"], ids["<|eot_id|>"])
    assert tok.eos_id == hf.eos_token_id and tok.bos_id == hf.bos_token_id


def test_save_pretrained_round_trip_loads_in_transformers(hf_pair, tmp_path):
    transformers = pytest.importorskip("transformers")
    _, tok, hf = hf_pair
    tok.save_pretrained(tmp_path)
    again, hf_again = Tokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    for text in PARITY_TEXTS:
        assert again.encode(text) == hf_again.encode(text) == hf.encode(text)
    assert len(hf_again) == len(hf) and again.eos_ids == tok.eos_ids
    assert again.apply_chat_template(msgs, add_generation_prompt=True) == \
        hf_again.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert pickle.loads(pickle.dumps(tok)).encode(PARITY_TEXTS[1]) == tok.encode(PARITY_TEXTS[1])


def test_chat_prompt_and_response_end(hf_pair):
    """Chat style (the default with a template): the prompt is the rendered [system, user] turns with
    the generation prompt; the response ends with the template's end-of-turn token, which joins
    the default stop ids."""
    style, tok, hf = hf_pair
    assert tok.prompt_format.style == "chat"
    msgs = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
            {"role": "user", "content": "What is 2+2?"}]
    want = hf.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    ids, start = tok.encode_example("  What is 2+2? ", "2 + 2 = 4. \\boxed{4}")
    end = hf.convert_tokens_to_ids("<|im_end|>" if style == "qwen2" else "<|eot_id|>")
    assert ids[:start] == want == tok.encode_prompt("What is 2+2?")
    assert ids[start:] == hf.encode("2 + 2 = 4. \\boxed{4}", add_special_tokens=False) + [end]
    assert tok.turn_end_id == end and end in tok.stop_ids and set(tok.eos_ids) <= set(tok.stop_ids)
    assert default_stop_ids(tok) == list(tok.stop_ids)  # what generate(..., tokenizer=tok) stops on
    tok.set_prompt_format("plain")
    try:
        ids, start = tok.encode_example("What is 2+2?", "4")
        assert ids[:start] == hf.encode(PROMPT_TEMPLATE.format(question="What is 2+2?"))
        assert ids[-1] == tok.eos_id and tok.stop_ids == tok.eos_ids and default_stop_ids(tok) == list(tok.eos_ids)
    finally:
        tok.set_prompt_format("chat", msgs[0]["content"])


def test_hf_folder_errors(tmp_path):
    from hf_tokenizers import write_qwen2_folder

    with pytest.raises(FileNotFoundError, match="holds neither tokenizer.json nor tokenizer.model"):
        Tokenizer.from_pretrained(tmp_path)
    folder = write_qwen2_folder(tmp_path / "q")
    (folder / "generation_config.json").write_text('{"eos_token_id": "eos"}')
    with pytest.raises(ValueError, match=r"eos_token_id \('eos'\) must be an int or a list of ints"):
        Tokenizer.from_pretrained(folder)
    (folder / "generation_config.json").write_text('{"eos_token_id": 1,\n')
    with pytest.raises(ValueError, match=r"generation_config.json:2: not valid JSON"):
        Tokenizer.from_pretrained(folder)
    (folder / "generation_config.json").unlink()
    n = len(Tokenizer.from_pretrained(folder))  # a new token would get id n
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"]["9999"] = {"content": "<|far|>", "special": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"added token '<\|far\|>' is declared at id 9999 but the vocabulary places it at {n}"):
        Tokenizer.from_pretrained(folder)
    tok = Tokenizer.from_file(write_qwen2_folder(tmp_path / "q2"))
    with pytest.raises(ValueError, match="this tokenizer is a tokenizer.json one: use save_pretrained"):
        tok.save(tmp_path / "x.model")
    with pytest.raises(ValueError, match=r"prompt style \('chatml'\) must be one of \('plain', 'chat'\)"):
        tok.set_prompt_format("chatml")


def test_prompt_format_is_saved_with_the_tokenizer(tmp_path):
    """The format a run used travels with its folder: the next stage prompts the same way."""
    from hf_tokenizers import write_qwen2_folder

    tok = Tokenizer.from_pretrained(write_qwen2_folder(tmp_path / "q"))
    tok.set_prompt_format("chat", None)  # no system turn: Qwen's template then writes its own default
    tok.save_pretrained(tmp_path / "saved")
    again = Tokenizer.from_pretrained(tmp_path / "saved")
    assert (again.prompt_format.style, again.prompt_format.system) == ("chat", None)
    assert again.prompt_text("2+2?").startswith("<|im_start|>system\nPlease reason step by step")
    tok.set_prompt_format("plain")
    tok.save_pretrained(tmp_path / "plain")
    assert Tokenizer.from_pretrained(tmp_path / "plain").encode_prompt("2+2?") == tok.encode(PROMPT_TEMPLATE.format(question="2+2?"))
    (tmp_path / "plain" / "prompt_format.json").write_text('{"style": "plain", "sytem": "x"}')
    with pytest.raises(ValueError, match=r"prompt_format.json: unknown field\(s\) \['sytem'\]"):
        Tokenizer.from_pretrained(tmp_path / "plain")


def test_own_sentencepiece_folder_loads_in_transformers(tok, tmp_path):
    """mathlm's sentencepiece model is saved with an equivalent tokenizer.json: AutoTokenizer encodes
    the corpus and 2,000 random strings (whitespace runs, digits, fences, unicode, byte fallback) as
    sentencepiece does, BOS included; mathlm itself reloads the sentencepiece model."""
    transformers = pytest.importorskip("transformers")
    t, _ = tok
    t.save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert again.sp is not None and len(hf) == len(t)
    rng = random.Random(0)
    alphabet = list("ab c\n\t  x=1+2()`é中🙂ʃ_-.,\\{}$") + ["```python\n", "```output\n", "```\n", "    ", "\n\n"]
    texts = corpus(50, seed=1) + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    for text in texts:
        ids = t.encode(text, bos=False)
        assert hf.encode(text, add_special_tokens=False) == ids, text
        assert hf.encode(text) == t.encode(text) == again.encode(text)
        assert hf.decode(ids) == t.decode(ids)


def test_foreign_sentencepiece_models_get_no_conversion(tmp_path):
    """A dummy-prefix model (Llama-2 style) converts differently: the probes catch it, no tokenizer.json."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(200)), model_writer=buf, vocab_size=400,
                                   model_type="bpe", byte_fallback=True, add_dummy_prefix=True, minloglevel=2,
                                   character_coverage=1.0, hard_vocab_limit=False)
    Tokenizer(buf.getvalue()).save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.model").is_file() and not (tmp_path / "tokenizer.json").exists()
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizer"
