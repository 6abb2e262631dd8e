"""The sampling engine against independent references: an argmax loop over full forwards without a
cache, log-probs recomputed from one full forward of prompt + completion (the distribution rebuilt in
float64 Python), hand-computed filtered distributions, and counts of what the model processed."""
import math

import pytest
import torch

from mathlm.sampling import (Completion, generate, processed_logprobs, sample_from_logprobs,
                             sample_uniforms)
from sampling_references import (ForwardRecorder, PieceTokenizer, ScriptedModel, argmax_loop, refill_schedule,
                                 reference_distribution, reference_logprobs, script, tiny_config, tiny_model)

# Ragged on purpose: a prompt of length 1, equal lengths, and one far longer than the rest.
PROMPTS = [[5], [3, 9, 12, 40, 7, 8, 1], [50, 51, 52], [60, 61, 62], list(range(10, 33))]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


# --------------------------------------------------------------------------- greedy and log-probs


def test_greedy_equals_argmax_loop_for_every_prompt_of_a_ragged_batch(model):
    out = generate(model, PROMPTS, max_new_tokens=12, temperature=0)
    for prompt, (c,) in zip(PROMPTS, out):
        assert c.tokens == argmax_loop(model, prompt, 12)
        assert c.finish_reason == "length" and c.sampled_mask == [True] * 12 and c.text is None


def test_greedy_logprobs_equal_a_full_forward(model):
    out = generate(model, PROMPTS, max_new_tokens=10, temperature=0, return_logprobs=True)
    for prompt, (c,) in zip(PROMPTS, out):
        ref = reference_logprobs(model, prompt, c.tokens, temperature=0)
        assert max(abs(a - b) for a, b in zip(c.logprobs, ref)) < 1e-5
        assert min(ref) < -0.01  # the check is not vacuous: the tokens were not all certain


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, None, None), (1.3, 8, None),
                                                     (0.9, None, 0.8), (1.0, 20, 0.9)])
def test_sampled_logprobs_equal_the_processed_distribution_of_a_full_forward(model, temperature, top_k, top_p):
    """Log-probs are those of the distribution each token was drawn from (temperature, top-k, top-p)."""
    out = generate(model, PROMPTS, max_new_tokens=10, temperature=temperature, top_k=top_k, top_p=top_p,
                   n=2, seed=3, return_logprobs=True)
    for prompt, cs in zip(PROMPTS, out):
        for c in cs:
            ref = reference_logprobs(model, prompt, c.tokens, temperature, top_k, top_p)
            assert all(math.isfinite(r) for r in ref), "a token outside the top-k/top-p set was sampled"
            assert max(abs(a - b) for a, b in zip(c.logprobs, ref)) < 1e-5


def test_fixed_seed_reproduces_and_another_seed_differs(model):
    kw = dict(max_new_tokens=10, temperature=1.0, n=3, return_logprobs=True)
    a = generate(model, PROMPTS, seed=7, **kw)
    b = generate(model, PROMPTS, seed=7, **kw)
    c = generate(model, PROMPTS, seed=8, **kw)
    tokens = lambda out: [[s.tokens for s in cs] for cs in out]  # noqa: E731
    assert tokens(a) == tokens(b)
    assert [[s.logprobs for s in cs] for cs in a] == [[s.logprobs for s in cs] for cs in b]
    assert tokens(a) != tokens(c)
    assert len({tuple(s.tokens) for s in a[4]}) == 3  # the n samples of a prompt differ


def test_samples_do_not_depend_on_the_rest_of_the_batch(model):
    """The random stream of sample j of prompt i is keyed on (seed, i * n + j, position)."""
    both = generate(model, PROMPTS[:2], max_new_tokens=8, n=2, seed=11)
    alone = generate(model, PROMPTS[:1], max_new_tokens=8, n=2, seed=11)
    assert [c.tokens for c in both[0]] == [c.tokens for c in alone[0]]


def test_global_seed_reproduces_when_seed_is_none(model):
    torch.manual_seed(5)
    a = generate(model, PROMPTS[:2], max_new_tokens=6)
    torch.manual_seed(5)
    b = generate(model, PROMPTS[:2], max_new_tokens=6)
    assert [c[0].tokens for c in a] == [c[0].tokens for c in b]


# --------------------------------------------------------------------------- work done


def test_n_samples_share_one_prefill(model):
    n = 4
    rec = ForwardRecorder(model)
    try:
        out = generate(model, PROMPTS, max_new_tokens=5, n=n, seed=0)
    finally:
        rec.remove()
    prefill, *decode = rec.calls
    assert prefill["batch"] == len(PROMPTS)  # each prompt once, not n times
    assert prefill["real"] == sum(len(p) for p in PROMPTS)
    assert all(c["T"] == 1 and c["batch"] == n * len(PROMPTS) for c in decode)
    assert len(decode) == 4  # the first token comes from the prefill's logits
    assert all(len(cs) == n and all(len(c.tokens) == 5 for c in cs) for cs in out)


def test_eos_stops_a_sequence_and_finished_rows_stop_costing_compute(model):
    max_new = 12
    free = [argmax_loop(model, p, max_new) for p in PROMPTS]
    eos = free[0][2]  # the token prompt 0 produces third: it finishes early
    ref = [argmax_loop(model, p, max_new, eos_id=eos) for p in PROMPTS]
    assert sorted(len(r) for r in ref)[0] <= 3 < max(len(r) for r in ref)
    rec = ForwardRecorder(model)
    try:
        out = generate(model, PROMPTS, max_new_tokens=max_new, temperature=0, eos_id=eos)
    finally:
        rec.remove()
    for r, (c,) in zip(ref, out):
        assert c.tokens == r
        assert c.finish_reason == ("eos" if r[-1] == eos else "length")
    batches = [c["batch"] for c in rec.calls[1:]]
    assert batches == sorted(batches, reverse=True) and batches[-1] < len(PROMPTS)
    # Every step processes only rows still running, or at most 1/8 of the batch idle before compaction.
    alive = [sum(len(r) > step for r in ref) for step in range(1, max_new)]
    for processed, live in zip(batches, alive):
        assert processed >= live and (processed - live) * 8 < processed


def test_eos_as_a_list(model):
    free = argmax_loop(model, PROMPTS[1], 10)
    eos = [free[4], free[1]]
    end = next(j for j, t in enumerate(free) if t in eos) + 1
    (c,), = generate(model, [PROMPTS[1]], 10, temperature=0, eos_id=eos)
    assert c.tokens == free[:end] and c.finish_reason == "eos"


def test_eos_defaults_to_the_tokenizers_and_strings_are_encoded_with_it():
    tok = PieceTokenizer()
    model = ScriptedModel(tiny_config(vocab_size=len(tok)), script(tok, ["c", "d", "<eos>"]))
    (c,), = generate(model, ["abc"], 10, temperature=0, tokenizer=tok)
    assert c.tokens == [tok.index["d"], tok.eos_id] and c.finish_reason == "eos" and c.text == "d"
    (c,), = generate(model, [tok.encode("abc")], 4, temperature=0)  # no tokenizer: no EOS unless given
    assert c.tokens[:2] == [tok.index["d"], tok.eos_id] and c.finish_reason == "length"


def test_length_is_capped_by_the_context():
    model = tiny_model(seed=2, max_seq_len=24)
    prompts = [list(range(3, 23)), [4, 5]]  # 20 tokens leave room for 4 new ones
    out = generate(model, prompts, max_new_tokens=10, temperature=0)
    assert len(out[0][0].tokens) == 4 and out[0][0].finish_reason == "length"
    assert out[0][0].tokens == argmax_loop(model, prompts[0], 4)
    assert out[1][0].tokens == argmax_loop(model, prompts[1], 10)


# --------------------------------------------------------------------------- stop strings


def test_stop_strings_end_at_the_token_that_completes_them():
    tok = PieceTokenizer(pieces=["ab", "abc", "cd"])
    model = tiny_model(seed=4, vocab_size=len(tok), head_scale=10.0)
    prompts = [tok.encode("hello"), tok.encode("x")]
    free = [argmax_loop(model, p, 20) for p in prompts]
    texts = [tok.decode(f) for f in free]
    # A stop string spanning token boundaries, taken from the middle of prompt 0's free text.
    cut = len(tok.decode(free[0][:6]))
    stop = texts[0][cut - 2:cut + 1]
    out = generate(model, prompts, 20, temperature=0, stop=["never-there", stop], tokenizer=tok, eos_id=[])
    for f, (c,) in zip(free, out):
        # Reference: the first prefix whose decoded text contains the stop string.
        end = next((j + 1 for j in range(len(f)) if stop in tok.decode(f[:j + 1])), None)
        if end is None:
            assert c.tokens == f and c.finish_reason == "length"
        else:
            assert c.tokens == f[:end] and c.finish_reason == "stop" and stop in c.text
    assert out[0][0].finish_reason == "stop" and len(out[0][0].tokens) <= 7


# --------------------------------------------------------------------------- the distribution


def test_processed_distribution_matches_hand_computed_values():
    """logits = log[4, 3, 2, 1]: softmax = [.4, .3, .2, .1].
    top_k=3: [4, 3, 2]/9.  top_p=0.6: mass before each token [0, .4, .7, .9] -> keep 2: [4, 3]/7.
    top_k=3 then top_p=0.5: [4/9, 3/9, 2/9], mass before [0, .444, .778] -> keep 2: [4, 3]/7.
    top_p=0.75: mass before .7 < .75 keeps the third: [4, 3, 2]/9.
    temperature 0.5: squares, [16, 9, 4, 1]/30.  top_k=1: the argmax only."""
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]]).log()
    cases = [
        (dict(), [.4, .3, .2, .1]),
        (dict(top_k=3), [4 / 9, 3 / 9, 2 / 9, 0]),
        (dict(top_p=0.6), [4 / 7, 3 / 7, 0, 0]),
        (dict(top_k=3, top_p=0.5), [4 / 7, 3 / 7, 0, 0]),
        (dict(top_p=0.75), [4 / 9, 3 / 9, 2 / 9, 0]),
        (dict(temperature=0.5), [16 / 30, 9 / 30, 4 / 30, 1 / 30]),
        (dict(top_k=1), [1, 0, 0, 0]),
        (dict(top_p=1.0, top_k=4), [.4, .3, .2, .1]),
    ]
    for kw, expected in cases:
        got = processed_logprobs(logits, **kw).exp()[0].tolist()
        assert got == pytest.approx(expected, abs=1e-6), kw
        assert reference_distribution([math.log(v) for v in (4, 3, 2, 1)], kw.get("temperature", 1.0), kw.get("top_k"),
                                      kw.get("top_p")) == pytest.approx(expected, abs=1e-12), kw


@pytest.mark.parametrize("spread", [0.05, 1.0, 8.0])  # flat (the top-64 holds little mass) to peaked
def test_top_p_over_a_large_vocabulary_matches_the_float64_reference(spread):
    torch.manual_seed(0)
    logits = torch.randn(3, 3000, dtype=torch.float64) * spread
    for kw in (dict(top_p=0.9), dict(top_p=0.5, top_k=300), dict(temperature=0.7, top_p=0.99)):
        got = processed_logprobs(logits.float(), **kw).exp()
        for row, g in zip(logits.tolist(), got):
            ref = torch.tensor(reference_distribution(row, kw.get("temperature", 1.0), kw.get("top_k"), kw["top_p"]),
                               dtype=torch.float64)
            assert torch.equal(g > 0, ref > 0), kw  # the same tokens kept
            assert torch.allclose(g.double(), ref, atol=1e-6), kw


def test_top_k_keeps_ties_with_the_kth_logit():
    got = processed_logprobs(torch.tensor([[2.0, 1.0, 1.0, 0.0]]), top_k=2).exp()[0]
    e = math.e
    assert got.tolist() == pytest.approx([e / (e + 2), 1 / (e + 2), 1 / (e + 2), 0], abs=1e-6)


def test_sampling_frequencies_follow_the_filtered_distribution():
    """20000 draws (one per sample id) from top_k=3 of [.4, .3, .2, .1] -> [4, 3, 2, 0]/9.
    Standard error of a frequency near 0.4 is ~0.0035; allow 5 of them."""
    N = 20000
    logp = processed_logprobs(torch.tensor([[4.0, 3.0, 2.0, 1.0]]).log().expand(N, 4), top_k=3)
    u = sample_uniforms(123, torch.arange(N), torch.full((N,), 5))
    freq = torch.bincount(sample_from_logprobs(logp, u), minlength=4).double() / N
    assert freq.tolist() == pytest.approx([4 / 9, 3 / 9, 2 / 9, 0.0], abs=0.0175)
    assert freq[3] == 0


def test_uniforms_are_uniform_and_decorrelated():
    ids = torch.arange(400).repeat_interleave(250)
    pos = torch.arange(250).repeat(400)
    u = sample_uniforms(2024, ids, pos)
    assert u.min() >= 0 and u.max() < 1
    hist = torch.histc(u.float(), bins=10, min=0, max=1) / u.numel()  # each ~0.1, s.e. ~0.001
    assert hist.tolist() == pytest.approx([0.1] * 10, abs=0.005)
    nxt = sample_uniforms(2024, ids, pos + 1)
    other_id = sample_uniforms(2024, ids + 1, pos)
    other_seed = sample_uniforms(2025, ids, pos)
    for v in (nxt, other_id, other_seed):  # correlation s.e. ~ 1/sqrt(1e5) = 0.003
        assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1]) < 0.015
    assert torch.equal(u, sample_uniforms(2024, ids, pos))


def test_zero_probability_tokens_are_never_drawn():
    logp = torch.tensor([[0.0, -math.inf, -math.inf]]).log_softmax(-1).expand(3, 3)
    assert sample_from_logprobs(logp, torch.tensor([0.0, 0.5, 1 - 2**-32])).tolist() == [0, 0, 0]
    logp = torch.tensor([[-math.inf, 0.0, -math.inf]]).expand(3, 3)
    assert sample_from_logprobs(logp, torch.tensor([0.0, 0.5, 1 - 2**-32])).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompts=[]), r"prompts is empty"),
    (dict(prompts=[[1, 2], []]), r"prompt 1 is empty"),
    (dict(prompts=[list(range(1, 97))]), r"prompt 0 has 96 tokens: the context \(max_seq_len=96\) leaves no room"),
    (dict(prompts=[[1, 97]]), r"prompt 0 holds token id 97, outside the vocabulary \[0, 97\)"),
    (dict(prompts=[[1, -1]]), r"prompt 0 holds token id -1"),
    (dict(prompts=[[1, 2.0]]), r"prompt 0 must be a list of int token ids or a string"),
    (dict(prompts=["abc"]), r"prompt 0 is a string; pass tokenizer="),
    (dict(prompts=torch.ones(2, 3, dtype=torch.long)), r"prompts must be a list"),
    (dict(n=0), r"n \(0\) must be an integer >= 1"),
    (dict(top_p=0.0), r"top_p \(0.0\) must be None or in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p \(1.5\) must be None or in \(0, 1\]"),
    (dict(temperature=-0.5), r"temperature \(-0.5\) must be a finite number >= 0"),
    (dict(temperature=float("nan")), r"temperature \(nan\) must be a finite number >= 0"),
    (dict(top_k=0), r"top_k \(0\) must be None or an integer >= 1"),
    (dict(max_new_tokens=0), r"max_new_tokens \(0\) must be a positive integer"),
    (dict(stop="x"), r"stop strings need tokenizer="),
    (dict(stop=["x", ""], tokenizer=PieceTokenizer()), r"stop \(\['x', ''\]\) must be a string or a list of non-empty"),
    (dict(eos_id=200), r"eos_id \(200\) must be a token id in \[0, 97\)"),
    (dict(eos_id=[3, 2.5]), r"eos_id \(2.5\) must be a token id in \[0, 97\)"),
    (dict(seed=-1), r"seed \(-1\) must be None or an integer >= 0"),
    (dict(tools=lambda: None), r"tools need tokenizer="),
    (dict(tools="sandbox", tokenizer=PieceTokenizer()), r"tools \('sandbox'\) must be a zero-argument factory"),
    (dict(max_tool_calls=-1), r"max_tool_calls \(-1\) must be an integer >= 0"),
])
def test_bad_input_is_named(model, kwargs, message):
    args = dict(prompts=[[1, 2, 3]], max_new_tokens=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(model, **args)


def test_numpy_and_tensor_prompts_are_token_ids(model):
    import numpy as np

    ref = generate(model, [PROMPTS[1]], 4, temperature=0)[0][0].tokens
    assert generate(model, [np.array(PROMPTS[1])], 4, temperature=0)[0][0].tokens == ref
    assert generate(model, [torch.tensor(PROMPTS[1])], 4, temperature=0)[0][0].tokens == ref


def test_progress_lines_report_sequences_rate_and_steps_left(model, monkeypatch, capsys):
    import mathlm.sampling as sampling

    monkeypatch.setattr(sampling, "PROGRESS_EVERY", 0.0)
    generate(model, PROMPTS, 6, temperature=0, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5  # one per decode step
    assert lines[0].startswith("generate: 0/5 sequences done, 10 tokens, ") and "at most 4 steps" in lines[0]
    assert lines[-1].startswith("generate: 5/5 sequences done, 30 tokens, ") and "at most 0 steps" in lines[-1]


def test_completion_fields(model):
    (c,), = generate(model, [[1, 2]], 3, temperature=0, return_logprobs=True)
    assert isinstance(c, Completion) and len(c.tokens) == len(c.logprobs) == len(c.sampled_mask) == 3
    assert c.tool_calls == 0


@pytest.mark.slow
def test_compiled_decode_step_gives_the_same_tokens(model):
    """torch.compile of the decode step (inductor; needs a C compiler on CPU, ~1 min)."""
    eager = generate(model, PROMPTS, 8, temperature=0, return_logprobs=True)
    compiled = generate(model, PROMPTS, 8, temperature=0, return_logprobs=True, compile_decode=True)
    for (a,), (b,) in zip(eager, compiled):
        assert a.tokens == b.tokens
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


# --------------------------------------------------------------------------- TextCompleter


def test_text_completer_batches_equal_single_greedy_calls_and_stop():
    from mathlm.sampling import TextCompleter

    tok = PieceTokenizer(pieces=["ab", "cd"])
    model = tiny_model(seed=7, vocab_size=len(tok), head_scale=10.0)
    prompts = ["hello", "x", "abcd abcd"]
    completer = TextCompleter(model, tok, max_new_tokens=8, temperature=0.0)
    batched = completer.batch(prompts)
    single = [tok.decode(argmax_loop(model, tok.encode(p), 8)) for p in prompts]  # independent reference
    assert batched == single and completer(prompts[0]) == single[0]
    stop = single[1][2:4]
    cut = TextCompleter(model, tok, max_new_tokens=8, temperature=0.0, stop=[stop]).batch([prompts[1]])[0]
    assert cut.endswith(stop) and single[1].startswith(cut) and len(cut) < len(single[1])


# --------------------------------------------------------------------------- continuous batching

# Sequences that end at very different lengths: EOS is a token some prompts reach early.
STREAM = PROMPTS + [[7, 7, 7], [90, 3], list(range(40, 52)), [11, 12, 13, 14], [2, 30], [66] * 9, [8, 1, 8]]


def _stream_eos(model, max_new):
    """Two EOS ids taken from the free-running outputs, so that sequences end early and late."""
    free = [argmax_loop(model, p, max_new) for p in STREAM]
    eos = [free[2][2], free[1][4]]
    ref = [f[:next((j + 1 for j, t in enumerate(f) if t in eos), len(f))] for f in free]
    return eos, ref


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_continuous_batching_greedy_equals_argmax_loop_and_refills_at_once(model, rows):
    """Through `rows` rows, every sequence still equals the argmax loop over full forwards, the batch
    never exceeds `rows`, and the number of decode steps is what refilling each row the moment its
    sequence ends gives (the first token of a sequence comes from its prefill)."""
    max_new = 12
    eos, ref = _stream_eos(model, max_new)
    lengths = [len(r) for r in ref]
    assert min(lengths) <= 3 and max(lengths) == max_new  # the lengths really differ
    rec = ForwardRecorder(model)
    try:
        out = generate(model, STREAM, max_new_tokens=max_new, temperature=0, eos_id=eos, max_batch_size=rows)
    finally:
        rec.remove()
    for r, (c,) in zip(ref, out):
        assert c.tokens == r and c.finish_reason == ("eos" if r[-1] in eos else "length")
    decode = [c for c in rec.calls if not c["fresh"]]
    prefill = [c for c in rec.calls if c["fresh"]]
    assert all(c["batch"] <= rows and c["T"] == 1 for c in decode)
    assert len(decode) == refill_schedule(lengths, rows)
    assert sum(c["real"] for c in prefill) == sum(len(p) for p in STREAM)  # each prompt prefilled once


def test_continuous_batching_beats_static_chunks_in_steps(model):
    """The point of refilling: fewer steps than static chunks of the same size, each of which runs
    until its longest sequence ends."""
    eos, ref = _stream_eos(model, 12)
    lengths = [len(r) for r in ref]
    static = sum(max(lengths[s:s + 3]) - 1 for s in range(0, len(lengths), 3))
    assert refill_schedule(lengths, 3) < static


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_samples_and_logprobs_do_not_depend_on_max_batch_size(model, rows):
    kw = dict(max_new_tokens=10, temperature=0.9, top_p=0.9, n=3, seed=21, return_logprobs=True)
    eos, _ = _stream_eos(model, 10)
    whole = generate(model, STREAM, eos_id=eos, **kw)
    streamed = generate(model, STREAM, eos_id=eos, max_batch_size=rows, **kw)
    for prompt, a, b in zip(STREAM, whole, streamed):
        assert [c.tokens for c in a] == [c.tokens for c in b]
        for c in b:
            ref = reference_logprobs(model, prompt, c.tokens, 0.9, None, 0.9)
            assert max(abs(x - y) for x, y in zip(c.logprobs, ref)) < 1e-5


def test_a_long_stream_through_few_rows_packs_its_slots(model, monkeypatch):
    """The slot counter keeps advancing while sequences stream through the rows: packing must free
    the slots (and leave every result exact)."""
    import mathlm.sampling as sampling

    packs = []
    real_pack = sampling._pack_slots
    monkeypatch.setattr(sampling, "_pack_slots", lambda cache: (packs.append(cache.pos), real_pack(cache)))
    prompts = STREAM * 2
    out = generate(model, prompts, max_new_tokens=12, temperature=0, max_batch_size=2)
    assert packs, "the slots never ran out: the test does not exercise packing"
    for p, (c,) in zip(prompts, out):
        assert c.tokens == argmax_loop(model, p, 12)


def test_max_batch_size_is_validated(model):
    with pytest.raises(ValueError, match=r"max_batch_size \(0\) must be None or an integer >= 1"):
        generate(model, [[1, 2]], 3, max_batch_size=0)


# --------------------------------------------------------------------------- the lean decode step


@pytest.mark.parametrize("overrides", [dict(), dict(n_kv_heads=4), dict(n_kv_heads=1), dict(qkv_bias=True),
                                       dict(tie_embeddings=True)])
def test_lean_decode_step_equals_the_general_forward(overrides, monkeypatch):
    """Fused weights, 2-D activations and the per-step mask give the general forward's hidden states
    (within float32 rounding), with padding rows and a row feeding nothing, for MHA, GQA and MQA."""
    import mathlm.model as model_module
    from mathlm import KVCache

    lean_calls = []
    real_step = model_module.decode_step
    monkeypatch.setattr(model_module, "decode_step", lambda *a: (lean_calls.append(1), real_step(*a))[1])

    model = tiny_model(seed=3, **overrides)
    if overrides.get("qkv_bias"):
        with torch.no_grad():
            for layer in model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    weights = model.decode_weights()
    assert weights is not None
    prompts = torch.randint(3, 97, (3, 9))
    prompt_mask = torch.ones(3, 9, dtype=torch.long)
    prompt_mask[0, :4] = 0  # a left-padded prompt
    steps = [torch.tensor([[5], [6], [7]]), torch.tensor([[8], [9], [10]])]
    step_masks = [None, torch.tensor([[1], [0], [1]])]  # row 1 feeds nothing in the second step
    with torch.inference_mode():
        hidden = {}
        for lean in (False, True):
            cache = KVCache(model.config, 3, 16)
            model(prompts, attention_mask=prompt_mask, cache=cache)
            cache.decode_weights = weights if lean else None
            hidden[lean] = [model(t, attention_mask=m, cache=cache, return_hidden=True, validate=False)
                            for t, m in zip(steps, step_masks)]
            assert cache.pos == 11 and cache.n_seen.tolist() == [7, 10, 11]
    assert len(lean_calls) == 2  # the lean path really ran, for both steps of the lean cache
    for general, lean in zip(hidden[False], hidden[True]):
        assert torch.allclose(general[[0, 2]], lean[[0, 2]], atol=1e-5, rtol=1e-5)  # the rows that fed a token
    assert torch.allclose(hidden[False][0][1], hidden[True][0][1], atol=1e-5, rtol=1e-5)


def test_decode_weights_follow_training_and_skip_other_backends():
    """The fused copies are made from the live parameters at each call, so an update in between is
    seen; backends other than sdpa keep the general forward."""
    model = tiny_model(seed=1)
    before = model.decode_weights().layers[0][1].clone()
    with torch.no_grad():
        model.layers[0].self_attn.k_proj.weight.add_(1.0)
    after = model.decode_weights().layers[0][1]
    q_rows = model.config.n_heads * model.config.head_dim
    k_rows = model.config.n_kv_heads * model.config.head_dim
    assert torch.equal(after[:q_rows], before[:q_rows])
    assert torch.equal(after[q_rows:q_rows + k_rows], before[q_rows:q_rows + k_rows] + 1.0)
    assert tiny_model(seed=1, attn_backend="flash").decode_weights() is None


# --------------------------------------------------------------------------- exactness of the sampler


def test_first_token_distribution_matches_softmax_over_8000_samples(model):
    """8000 first tokens of one prompt (n=8000, streamed through 512 rows: one prefill, stashed)
    against softmax(logits / T) of a full forward in float64: total variation < 0.05. The sampling
    noise alone gives E[TV] ~ sum_i sqrt(p_i (1 - p_i) / (2 pi N)), printed beside it."""
    T, N = 1.3, 8000
    prompt = PROMPTS[1]
    out = generate(model, [prompt], 1, temperature=T, n=N, seed=4, max_batch_size=512)
    counts = torch.bincount(torch.tensor([c.tokens[0] for c in out[0]]), minlength=97).double()
    with torch.no_grad():
        p = (model(torch.tensor([prompt]))[0, -1].double() / T).softmax(-1)
    tv = 0.5 * (counts / N - p).abs().sum()
    noise = (p * (1 - p) / (2 * math.pi * N)).sqrt().sum()
    assert tv < 0.05, (float(tv), float(noise))
    assert noise > 0.005  # the distribution is spread enough for the check to mean something


def test_top_p_never_yields_a_token_outside_the_nucleus(model):
    """4000 sequences x 3 tokens at top_p = 0.6: every token lies in the nucleus that the float64
    reference builds from a full forward of its own context."""
    out = generate(model, PROMPTS[:2], 3, temperature=1.0, top_p=0.6, n=2000, seed=9, max_batch_size=256)
    seen = 0
    for prompt, cs in zip(PROMPTS[:2], out):
        for ctx in {tuple(c.tokens) for c in cs}:
            ref = reference_logprobs(model, prompt, list(ctx), 1.0, None, 0.6)
            assert all(math.isfinite(r) for r in ref), ctx
            seen += 1
    assert seen > 20  # many distinct paths were checked
