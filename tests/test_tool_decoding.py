"""Tool-integrated decoding: the text watcher against full decodes, and generate(tools=...) with a
fake session factory (independent of the sandbox) and with the real sandbox.

The model is `ScriptedModel`: a random transformer plus a bigram bias, so greedy decoding writes a
known python block, while every log-prob still depends on the whole context. Each test checks the
completion against what one full forward of prompt + completion gives: the appended output tokens
must sit in the cache exactly where a plain forward would put them.
"""
import threading

import pytest
import torch

import mathlm.sampling as sampling
from mathlm import Tokenizer
from mathlm.sampling import generate
from mathlm.tool_decoding import TextWatcher, output_block
from sampling_references import ForwardRecorder, PieceTokenizer, ScriptedModel, reference_logprobs, script, tiny_config

PIECES = ["```python\n", "print(6*7)", "print(1/0)", "\n```", "\n```output\n", "\n```\n", "Done.", "Q1", "Q2", "Q3"]
TOK = PieceTokenizer(PIECES)
TOOL_CHAIN = ["Q1", "```python\n", "print(6*7)", "\n```"]  # then the engine appends the output block
AFTER_OUTPUT = ["\n```\n", "Done.", "<eos>"]
PLAIN_CHAIN = ["Q2", "a", "b", "c", "d", "e", "f", "g", "h", "<eos>"]
ERROR_CHAIN = ["Q3", "```python\n", "print(1/0)", "\n```"]


def ids(*pieces):
    return [TOK.index[p] for p in pieces]


def scripted_model(*chains, seed=0, **cfg):
    torch.manual_seed(seed)
    return ScriptedModel(tiny_config(vocab_size=len(TOK), **cfg), script(TOK, *chains)).eval()


class FakeSession:
    """Canned outputs, tagged with the session's number so a test can tell whose session ran a block."""
    made: list["FakeSession"] = []
    outputs = {"print(6*7)": "42", "print(1/0)": "ZeroDivisionError: division by zero"}

    def __init__(self, gate: threading.Event | None = None):
        self.number, self.gate = len(FakeSession.made), gate
        self.calls: list[str] = []
        self.closed = False
        FakeSession.made.append(self)

    def run(self, code: str) -> str:
        self.calls.append(code)
        if self.gate is not None and not self.gate.wait(timeout=10):
            return "late"
        return f"{self.outputs.get(code, 'SyntaxError')} s{self.number}\n"  # sampled code may be garbled

    def close(self):
        self.closed = True


@pytest.fixture(autouse=True)
def fresh_sessions():
    FakeSession.made = []


def assert_matches_full_forward(model, prompt, c, temperature=0.0):
    """Sampled tokens' log-probs equal one full forward of prompt + completion (tool tokens included)."""
    ref = reference_logprobs(model, prompt, c.tokens, temperature)
    for j, (got, want, sampled) in enumerate(zip(c.logprobs, ref, c.sampled_mask)):
        if sampled:
            assert abs(got - want) < 1e-5, (j, got, want)
        else:
            assert got == 0.0


# --------------------------------------------------------------------------- the text watcher


def test_watcher_decodes_incrementally_like_a_full_decode():
    tok = Tokenizer.train(["température → 3·4 = 12 ✓ ok\n```python\nprint(3*4)\n```\n"] * 20, vocab_size=300)
    text = "Soit x → y: ```python\nprint('é')\n``` et après ✓ fin"
    tokens: list[int] = []
    w = TextWatcher(tok, tokens, stop=["après ✓"], watch_code=True)
    events = []
    for t in tok.encode(text, bos=False):
        tokens.append(t)
        w.push()
        assert tok.decode(tokens).startswith(w.text)  # never ahead of, never different from a full decode
        if w.closed_code is not None or w.hit_stop:
            events.append((w.closed_code, w.hit_stop, w.text))
    assert w.text == text
    assert events[0][0] == "print('é')" and events[0][2].endswith("```python\nprint('é')\n```")
    assert events[1][1] and events[1][2].endswith("après ✓")


def test_watcher_ignores_fences_and_stops_inside_tool_output():
    tokens = ids("```python\n", "print(6*7)", "\n```")
    w = TextWatcher(TOK, [], stop=["42"], watch_code=True)
    for t in tokens:
        w.tokens.append(t)
        w.push()
    assert w.closed_code == "print(6*7)"
    w.tokens.extend(TOK.encode(w.output_text("```python\n42"), bos=False))
    w.push_tool_output()
    assert w.text.endswith("\n```output\n```python\n42\n```\n")
    w.tokens.append(TOK.index["D"])
    w.push()
    assert not w.hit_stop and w.closed_code is None and w.code_start is None


def test_output_block_follows_the_data_format():
    assert output_block("42\n\n") == "\n```output\n42\n```\n"
    assert output_block("42", after_newline=True) == "```output\n42\n```\n"


def test_a_training_solution_block_round_trips_through_the_watcher():
    """The text a model trained on mathlm.data writes, plus what the engine appends, is the data's
    `python_block` exactly."""
    from mathlm.data.format import code_block, python_block

    code, stdout = "a = 3\nb = 4\nprint(a * b)", "12\n"
    text = "We multiply.\n" + code_block(code)
    tokens: list[int] = []
    w = TextWatcher(TOK, tokens, watch_code=True)
    closed = []
    for t in TOK.encode(text, bos=False):
        tokens.append(t)
        w.push()
        closed.append(w.closed_code)
    assert closed[:-1] == [None] * (len(closed) - 1) and closed[-1] == code
    assert w.text + w.output_text(stdout) == "We multiply.\n" + python_block(code, stdout)


# --------------------------------------------------------------------------- generate(tools=...)


def test_tool_call_appends_the_output_block_and_continues():
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN)
    prompts = [ids("Q1"), TOK.encode("xyz Q2")]
    out = generate(model, prompts, 40, temperature=0, tokenizer=TOK, tools=FakeSession, return_logprobs=True)
    (tool,), (plain,) = out
    block = TOK.encode("\n```output\n42 s0\n```\n", bos=False)
    assert tool.tokens == ids(*TOOL_CHAIN[1:]) + block + ids("Done.", "<eos>")
    assert tool.sampled_mask == [True] * 3 + [False] * len(block) + [True] * 2
    assert tool.text == "```python\nprint(6*7)\n```\n```output\n42 s0\n```\nDone."
    assert tool.finish_reason == "eos" and tool.tool_calls == 1
    assert plain.tokens == ids(*PLAIN_CHAIN[1:]) and plain.tool_calls == 0
    for prompt, (c,) in zip(prompts, out):
        assert_matches_full_forward(model, prompt, c)
    assert [s.calls for s in FakeSession.made] == [["print(6*7)"]] and FakeSession.made[0].closed


def test_each_sequence_has_its_own_session_and_the_limit_ends_it():
    loop = ["\n```\n", "```python\n"]  # after each output block the model opens another block
    model = scripted_model(TOOL_CHAIN, loop)
    out = generate(model, [ids("Q1")], 80, temperature=0, n=3, tokenizer=TOK, tools=FakeSession,
                   max_tool_calls=2, return_logprobs=True, seed=0)
    assert len(FakeSession.made) == 3 and all(s.calls == ["print(6*7)"] * 2 for s in FakeSession.made)
    numbers = set()
    for c in out[0]:
        assert c.finish_reason == "tool_limit" and c.tool_calls == 2
        assert c.text.count("```output\n") == 2 and c.text.endswith("print(6*7)\n```")
        (own,) = {part.split()[0] for part in c.text.split("42 ")[1:]}  # both outputs from one session
        numbers.add(own)
        assert_matches_full_forward(model, ids("Q1"), c)
    assert numbers == {"s0", "s1", "s2"}
    assert all(s.closed for s in FakeSession.made)


def test_zero_tool_calls_allowed_ends_at_the_first_block():
    model = scripted_model(TOOL_CHAIN)
    (c,), = generate(model, [ids("Q1")], 20, temperature=0, tokenizer=TOK, tools=FakeSession, max_tool_calls=0)
    assert c.finish_reason == "tool_limit" and c.tokens == ids(*TOOL_CHAIN[1:]) and FakeSession.made == []


def test_errors_appear_as_output_text():
    model = scripted_model(ERROR_CHAIN, AFTER_OUTPUT)
    (c,), = generate(model, [ids("Q3")], 80, temperature=0, tokenizer=TOK, tools=FakeSession)
    assert "```output\nZeroDivisionError: division by zero s0\n```\nDone." in c.text


def test_the_batch_keeps_decoding_while_a_tool_runs():
    """The session blocks until the model has run 5 more forwards; a synchronous engine would wait
    for it forever (here: 10 s, then the output would read "late")."""
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN)
    gate = threading.Event()
    rec = ForwardRecorder(model)
    calls_at_submit = []

    def factory():
        calls_at_submit.append(len(rec.calls))
        return FakeSession(gate)

    def open_gate(module, args, kwargs):
        if calls_at_submit and len(rec.calls) >= calls_at_submit[0] + 5:
            gate.set()

    handle = model.register_forward_pre_hook(open_gate, with_kwargs=True)
    try:
        (tool,), (plain,) = generate(model, [ids("Q1"), ids("Q2")], 40, temperature=0, tokenizer=TOK,
                                     tools=factory, return_logprobs=True)
    finally:
        handle.remove()
        rec.remove()
    assert "42 s0" in tool.text and "late" not in tool.text and tool.finish_reason == "eos"
    assert plain.finish_reason == "eos" and plain.tokens == ids(*PLAIN_CHAIN[1:])
    assert_matches_full_forward(model, ids("Q1"), tool)
    assert_matches_full_forward(model, ids("Q2"), plain)


def test_flash_backend_with_tools_matches_full_forwards():
    """The flash backend reads left padding through its varlen path: a mid-row gap must not matter."""
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN, attn_backend="flash")
    prompts = [ids("Q1"), TOK.encode("abc Q2"), ids("Q1")]
    out = generate(model, prompts, 40, temperature=0, tokenizer=TOK, tools=FakeSession, return_logprobs=True)
    assert [c.tool_calls for (c,) in out] == [1, 0, 1]
    for prompt, (c,) in zip(prompts, out):
        assert_matches_full_forward(model, prompt, c)


def test_ragged_sampled_batch_with_tools_matches_full_forwards():
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN)
    prompts = [ids("Q1"), TOK.encode("a longer prompt Q2"), TOK.encode("hm Q1")]
    out = generate(model, prompts, 60, temperature=0.8, top_k=30, n=2, seed=5, tokenizer=TOK,
                   tools=FakeSession, return_logprobs=True)
    assert sum(c.tool_calls for cs in out for c in cs) >= 3
    for prompt, cs in zip(prompts, out):
        for c in cs:
            ref = reference_logprobs(model, prompt, c.tokens, 0.8, 30)
            for got, want, sampled in zip(c.logprobs, ref, c.sampled_mask):
                assert (abs(got - want) < 1e-5) if sampled else got == 0.0


def test_output_longer_than_the_budget_is_cut_and_ends_the_sequence():
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT)
    (c,), = generate(model, [ids("Q1")], 6, temperature=0, tokenizer=TOK, tools=FakeSession)
    assert c.finish_reason == "length" and len(c.tokens) == 6 and c.sampled_mask == [True] * 3 + [False] * 3
    assert c.tokens[3:] == TOK.encode("\n```output\n42 s0\n```\n", bos=False)[:3]


def test_slots_are_packed_when_tool_output_fills_the_cache(monkeypatch):
    """A short context: the padding that tool steps leave in the other rows must be packed away."""
    packs = []
    real_pack = sampling._pack_slots
    monkeypatch.setattr(sampling, "_pack_slots", lambda cache: (packs.append(cache.pos), real_pack(cache)))
    loop = ["\n```\n", "```python\n"]
    model = scripted_model(TOOL_CHAIN, loop, PLAIN_CHAIN, ["x", "y", "x"], max_seq_len=48)
    prompts = [ids("Q1"), TOK.encode("Q1"), TOK.encode("long long Q2"), ids("x")]
    out = generate(model, prompts, 44, temperature=0, tokenizer=TOK, tools=FakeSession, max_tool_calls=3,
                   return_logprobs=True)
    assert packs, "the slots never ran out: the test does not exercise packing"
    for prompt, (c,) in zip(prompts, out):
        assert_matches_full_forward(model, prompt, c)
    assert out[3][0].finish_reason == "length" and len(prompts[3]) + len(out[3][0].tokens) == 45


def test_sliding_window_stays_exact_with_tool_padding():
    """Sliding-window masks count cache slots; rows are packed after each padded step to keep them gap-free."""
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN, sliding_window=5)
    prompts = [ids("Q1"), TOK.encode("abc Q2"), ids("Q1")]
    out = generate(model, prompts, 40, temperature=0, tokenizer=TOK, tools=FakeSession, return_logprobs=True)
    assert out[0][0].tool_calls == 1
    for prompt, (c,) in zip(prompts, out):
        assert_matches_full_forward(model, prompt, c)


def test_session_failures_propagate_and_sessions_are_closed():
    class Broken(FakeSession):
        def run(self, code):
            raise RuntimeError("sandbox worker died")

    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT)
    with pytest.raises(RuntimeError, match="sandbox worker died"):
        generate(model, [ids("Q1")], 20, temperature=0, tokenizer=TOK, tools=Broken)
    assert FakeSession.made and all(s.closed for s in FakeSession.made)


def test_a_factory_that_does_not_make_sessions_is_named():
    model = scripted_model(TOOL_CHAIN)
    with pytest.raises(ValueError, match=r"tools\(\) returned int, which has no run\(code\) method"):
        generate(model, [ids("Q1")], 20, temperature=0, tokenizer=TOK, tools=lambda: 3)


# --------------------------------------------------------------------------- the real sandbox


def _real_session_class():
    try:
        from mathlm.sandbox import Session
    except ImportError:
        pytest.skip("mathlm.sandbox.Session has not landed yet")
    return Session


def test_real_sandbox_runs_the_blocks_and_reports_errors():
    Session = _real_session_class()
    for chain, prompt, expected in [(TOOL_CHAIN, ids("Q1"), "```output\n42\n```\nDone."),
                                    (ERROR_CHAIN, ids("Q3"), "ZeroDivisionError")]:
        model = scripted_model(chain, AFTER_OUTPUT)
        (c,), = generate(model, [prompt], 80, temperature=0, tokenizer=TOK, return_logprobs=True,
                         tools=lambda: Session(timeout=5.0))
        assert expected in c.text and c.text.count("```output\n") == 1 and c.finish_reason == "eos"
        assert_matches_full_forward(model, prompt, c)


def test_real_sandbox_sessions_run_concurrently_and_keep_their_variables():
    """Three sequences, each with its own session, run two blocks; the second reads the variable the
    first set, so a block run in another sequence's session (or in none) would print a NameError.
    The second opener is spelt with other pieces ("```pyth" + "on\n") so the bigram script can
    lead it to the second program."""
    Session = _real_session_class()
    tok = PieceTokenizer(["```python\n", "```pyth", "on\n", "x = 6*7\nprint(x)", "print(x + 1)", "\n```",
                          "\n```\n", "Q1", "Again."])
    model = ScriptedModel(tiny_config(vocab_size=len(tok)), script(
        tok, ["Q1", "```python\n", "x = 6*7\nprint(x)", "\n```"],
        ["\n```\n", "Again.", "```pyth", "on\n", "print(x + 1)", "\n```"])).eval()
    prompt = [tok.index["Q1"]]
    out = generate(model, [prompt], 120, temperature=0, n=3, tokenizer=tok, return_logprobs=True,
                   tools=lambda: Session(timeout=5.0), max_tool_calls=2)
    for c in out[0]:
        assert "```output\n42\n```\nAgain.```python\nprint(x + 1)\n```\n```output\n43\n```" in c.text, c.text
        assert c.finish_reason == "tool_limit" and c.tool_calls == 2
        assert_matches_full_forward(model, prompt, c)


class UntaggedSession(FakeSession):
    """Output that does not depend on the order the sessions were made in."""

    def run(self, code: str) -> str:
        self.calls.append(code)
        return self.outputs.get(code, "SyntaxError") + "\n"


@pytest.mark.parametrize("rows", [1, 2])
def test_continuous_batching_with_tools_matches_full_forwards(rows):
    """Sequences with tool calls stream through fewer rows: the same samples as with every sequence
    in its own row, exact log-probs, one session per sequence, each closed when its sequence ends."""
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT, PLAIN_CHAIN)
    prompts = [ids("Q1"), TOK.encode("a longer prompt Q2"), TOK.encode("hm Q1"), ids("Q2"), ids("Q1")]
    kw = dict(temperature=0.8, top_k=30, n=2, seed=5, tokenizer=TOK, tools=UntaggedSession, return_logprobs=True)
    whole = generate(model, prompts, 60, **kw)
    FakeSession.made = []
    streamed = generate(model, prompts, 60, max_batch_size=rows, **kw)
    assert [[c.tokens for c in cs] for cs in streamed] == [[c.tokens for c in cs] for cs in whole]
    calls = sum(c.tool_calls for cs in streamed for c in cs)
    assert calls >= 4 and len(FakeSession.made) == sum(c.tool_calls > 0 for cs in streamed for c in cs)
    assert all(s.closed for s in FakeSession.made)
    for prompt, cs in zip(prompts, streamed):
        for c in cs:
            ref = reference_logprobs(model, prompt, c.tokens, 0.8, 30)
            for got, want, sampled in zip(c.logprobs, ref, c.sampled_mask):
                assert (abs(got - want) < 1e-5) if sampled else got == 0.0


def test_sessions_close_as_their_sequences_end():
    """With one row, a sequence's session is closed before the next sequence's first block runs."""
    model = scripted_model(TOOL_CHAIN, AFTER_OUTPUT)
    closed_when_made = []

    def factory():
        closed_when_made.append([s.closed for s in FakeSession.made])
        return FakeSession()

    out = generate(model, [ids("Q1")] * 3, 40, temperature=0, tokenizer=TOK, tools=factory, max_batch_size=1)
    assert [c.tool_calls for (c,) in out] == [1, 1, 1]
    assert closed_when_made == [[], [True], [True, True]]
