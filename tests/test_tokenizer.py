"""Tokenizer: round trips, every digit its own token, byte fallback, the template's loss boundary,
loading from a checkpoint folder, and the errors."""
import pickle
import random

import pytest

from mathlm import PROMPT_TEMPLATE, Tokenizer


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
