"""Preference pairs (by hand), encoding against the template built in the test, reference log-probs and
the DPO loss_fn against naive per-sequence log_softmax loops, and DPO training that raises the
chosen-vs-rejected reward margin over its step-0 value."""
import random
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mathlm.batching import BatchIterator
from mathlm.config import ModelConfig
from mathlm.losses import dpo_loss
from mathlm.model import Transformer
from mathlm.preference import (DPOLoss, PreferenceExample, build_preference_pairs, collate_preference,
                               encode_preference_pairs, precompute_reference_logps)
from mathlm.tokenizer import Tokenizer
from mathlm.train import TrainConfig, Trainer


def sample(q, response, correct, **extra):
    return {"id": f"id-{q}", "domain": "d", "question": q, "answer": "1", "response": response, "correct": correct,
            "sampler": "s", "predicted": "1" if correct else "0", **extra}


# ------------------------------------------------------------------------------------------- pairs

SAMPLES = ([sample("A", "a-right-1", True), sample("A", "a-wrong-1", False), sample("A", "a-right-2", True),
            sample("A", "a-right-1", True), sample("A", "a-wrong-2", False), sample("A", "a-wrong-3", False)]
           + [sample("B", f"b-right-{i}", True) for i in range(3)]          # all correct: no pair
           + [sample("C", "c-wrong", False), sample("C", "c-right", True)])


def test_pairs_are_correct_vs_wrong_per_prompt_capped_without_repeats():
    """A: distinct chosen {a-right-1, a-right-2} x rejected {a-wrong-1..3} = 6 cells, cap 4 -> 4
    distinct pairs; correct_fraction 3/6 (the repeated sample counts). B: none. C: its 1 x 1 pair,
    correct_fraction 1/2."""
    pairs = build_preference_pairs(SAMPLES, max_pairs_per_prompt=4, seed=0)
    a = [p for p in pairs if p["question"] == "A"]
    assert [p["question"] for p in pairs] == ["A"] * 4 + ["C"]
    assert len({(p["chosen"], p["rejected"]) for p in a}) == 4
    assert all(p["chosen"].startswith("a-right") and p["rejected"].startswith("a-wrong") for p in a)
    assert all(p["correct_fraction"] == 0.5 for p in a)
    assert pairs[-1] == {"id": "id-C", "domain": "d", "question": "C", "answer": "1", "chosen": "c-right",
                         "rejected": "c-wrong", "chosen_sampler": "s", "rejected_sampler": "s",
                         "rejected_predicted": "0", "correct_fraction": 0.5}
    everything = build_preference_pairs(SAMPLES, max_pairs_per_prompt=10)
    assert sorted((p["chosen"], p["rejected"]) for p in everything if p["question"] == "A") == sorted(
        (c, r) for c in ("a-right-1", "a-right-2") for r in ("a-wrong-1", "a-wrong-2", "a-wrong-3"))


def test_pairs_are_deterministic_and_each_prompts_pairs_ignore_the_other_prompts():
    pairs = build_preference_pairs(SAMPLES, max_pairs_per_prompt=2, seed=7)
    assert build_preference_pairs(SAMPLES, max_pairs_per_prompt=2, seed=7) == pairs
    shuffled = SAMPLES[6:] + SAMPLES[:6]
    only_a = build_preference_pairs([x for x in shuffled if x["question"] == "A"], max_pairs_per_prompt=2, seed=7)
    assert only_a == [p for p in pairs if p["question"] == "A"]
    draws = {tuple((p["chosen"], p["rejected"]) for p in build_preference_pairs(SAMPLES, 2, seed=s)
                   if p["question"] == "A") for s in range(6)}
    assert len(draws) > 1  # the seed matters


def test_pair_input_errors():
    with pytest.raises(ValueError, match=r"max_pairs_per_prompt \(0\) must be >= 1"):
        build_preference_pairs(SAMPLES, max_pairs_per_prompt=0)
    with pytest.raises(ValueError, match=r"sample 1: field 'correct' must be a bool, got None"):
        build_preference_pairs([SAMPLES[0], {"question": "A", "response": "x"}])


# ------------------------------------------------------------------------------------------- encoding


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    texts = []
    for _ in range(200):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        texts.append(f"Question: What is {a} + {b}?\nAnswer:\n{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.")
    return Tokenizer.train(texts, vocab_size=320)


def tiny_model(tok, seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64,
                                   max_seq_len=128))


PAIRS = [{"question": "What is 2 + 3?", "chosen": "2 + 3 = 5. The answer is \\boxed{5}.",
          "rejected": "2 + 3 = 6. The answer is \\boxed{6}.", "weight": 1.5},
         {"question": "What is 14 + 9?", "chosen": "14 + 9 = 23. The answer is \\boxed{23}.",
          "rejected": "The answer is \\boxed{5}."},
         {"question": "What is 31 + 40?", "chosen": "31 + 40 = 71. The answer is \\boxed{71}.",
          "rejected": "31 + 40 = 7140 and then more words follow. The answer is \\boxed{7140}."}]


def test_encoding_uses_the_template_and_shares_the_prompt(tok):
    examples = encode_preference_pairs(PAIRS, tok, max_len=100)
    for pair, e in zip(PAIRS, examples):
        prompt = tok.encode(f"Question: {pair['question']}\nAnswer:\n", bos=True)
        assert e.chosen.ids == prompt + tok.encode(pair["chosen"], bos=False, eos=True)
        assert e.rejected.ids == prompt + tok.encode(pair["rejected"], bos=False, eos=True)
        assert e.chosen.response_start == e.rejected.response_start == len(prompt)
    assert [e.weight for e in examples] == [1.5, 1.0, 1.0]
    assert examples[0].ref_chosen_logp is None


def test_encoding_overflow_policies(tok):
    prompt_len = len(tok.encode_prompt(PAIRS[2]["question"]))
    long_side = len(tok.encode_example(PAIRS[2]["question"], PAIRS[2]["rejected"])[0])
    max_len = long_side - 3
    truncated = encode_preference_pairs(PAIRS[2:], tok, max_len=max_len)[0]
    assert len(truncated.rejected.ids) == max_len + 1 and truncated.rejected.ids[-1] != tok.eos_id
    assert encode_preference_pairs(PAIRS[2:], tok, max_len=max_len, overflow="drop") == []
    with pytest.raises(ValueError, match=rf"pair 0 \(rejected\): {long_side - 1} input tokens exceed max_len"):
        encode_preference_pairs(PAIRS[2:], tok, max_len=max_len, overflow="error")
    with pytest.raises(ValueError, match=rf"pair 0 \(chosen\): the prompt has {prompt_len} tokens"):
        encode_preference_pairs(PAIRS[2:], tok, max_len=prompt_len - 1)
    with pytest.raises(ValueError, match=r"pair 0: field 'rejected' must be a string"):
        encode_preference_pairs([{"question": "q", "chosen": "c"}], tok, max_len=50)
    with pytest.raises(ValueError, match=r"pair 0 \(chosen\): field 'weight' must be a number >= 0, got -1"):
        encode_preference_pairs([{**PAIRS[0], "weight": -1}], tok, max_len=50)


def test_collate_puts_chosen_rows_first_then_rejected(tok):
    examples = encode_preference_pairs(PAIRS, tok, max_len=100)
    batch = collate_preference(examples, pad_id=tok.pad_id)
    sides = [e.chosen for e in examples] + [e.rejected for e in examples]
    T = max(len(s.ids) for s in sides) - 1
    assert batch["tokens"].shape == batch["labels"].shape == batch["loss_mask"].shape == (6, T)
    for row, s in enumerate(sides):
        n = len(s.ids) - 1
        assert batch["tokens"][row, :n].tolist() == s.ids[:-1]
        assert batch["labels"][row, :n].tolist() == s.ids[1:]
        assert batch["loss_mask"][row].nonzero().flatten().tolist() == list(range(s.response_start - 1, n))
    assert batch["weights"].tolist() == [1.5, 1.0, 1.0]
    assert "ref_chosen_logps" not in batch
    examples[0].ref_chosen_logp = examples[0].ref_rejected_logp = -1.0
    with pytest.raises(ValueError, match="2 of 3 examples lack reference log-probs"):
        collate_preference(examples, pad_id=tok.pad_id)
    with pytest.raises(ValueError, match="share the prompt ids"):
        PreferenceExample(examples[0].chosen, examples[1].rejected)


# ------------------------------------------------------------------------------------------- log-probs and the loss


def naive_response_logps(model, ids, response_start):
    """sum over response tokens of log_softmax(model(ids[:-1]))[t, ids[t+1]], one unpadded sequence at a time."""
    logits = model(torch.tensor([ids[:-1]]))[0].double()  # (T, V)
    logp = F.log_softmax(logits, dim=-1)
    total = logits.new_zeros(())
    for t in range(response_start - 1, len(ids) - 1):
        total = total + logp[t, ids[t + 1]]
    return total


def test_reference_logps_equal_a_naive_loop_whatever_the_batching(tok):
    model = tiny_model(tok, seed=1).train()
    examples = encode_preference_pairs(PAIRS, tok, max_len=100)
    precompute_reference_logps(model, examples, pad_id=tok.pad_id, batch_size=2, progress=False)
    assert model.training  # restored
    with torch.no_grad():
        for e in examples:
            assert e.ref_chosen_logp == pytest.approx(float(naive_response_logps(model, e.chosen.ids, e.chosen.response_start)), abs=1e-4)
            assert e.ref_rejected_logp == pytest.approx(float(naive_response_logps(model, e.rejected.ids, e.rejected.response_start)), abs=1e-4)
    assert min(e.ref_chosen_logp for e in examples) < -10  # a random model: far from certain


@pytest.mark.parametrize("options", [
    dict(beta=0.1),
    dict(beta=0.5, loss_type="ipo", length_normalized=True),
    dict(beta=0.2, reference_free=True),
    dict(beta=0.1, rpo_alpha=0.5),
    dict(beta=0.3, loss_type="robust", label_smoothing=0.1),
])
def test_loss_fn_equals_dpo_loss_on_naive_logps(tok, options):
    model = tiny_model(tok, seed=2)
    examples = encode_preference_pairs(PAIRS, tok, max_len=100)
    for i, e in enumerate(examples):  # reference values that differ from the policy's
        e.ref_chosen_logp, e.ref_rejected_logp = -30.0 - i, -28.0 + 2 * i
    batch = collate_preference(examples, pad_id=tok.pad_id)
    loss, metrics = DPOLoss(**options)(model, batch)

    policy = [[naive_response_logps(model, s.ids, s.response_start) for s in (e.chosen, e.rejected)] for e in examples]
    chosen = torch.stack([p[0] for p in policy]).float()
    rejected = torch.stack([p[1] for p in policy]).float()
    counts = [[len(s.ids) - s.response_start for s in (e.chosen, e.rejected)] for e in examples]
    ref_c = torch.tensor([e.ref_chosen_logp for e in examples])
    ref_r = torch.tensor([e.ref_rejected_logp for e in examples])
    kw = {k: v for k, v in options.items() if k in ("beta", "loss_type", "label_smoothing", "rpo_alpha")}
    if options.get("rpo_alpha"):
        kw["chosen_nll"] = -chosen / torch.tensor([c for c, _ in counts], dtype=torch.float32)
    if options.get("length_normalized"):
        n_c = torch.tensor([c for c, _ in counts], dtype=torch.float32)
        n_r = torch.tensor([r for _, r in counts], dtype=torch.float32)
        chosen, rejected, ref_c, ref_r = chosen / n_c, rejected / n_r, ref_c / n_c, ref_r / n_r
    refs = dict(reference_free=True) if options.get("reference_free") else dict(ref_chosen_logps=ref_c, ref_rejected_logps=ref_r)
    expected, expected_metrics = dpo_loss(chosen, rejected, **refs, **kw)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert set(metrics) == set(expected_metrics)
    for name in metrics:
        assert float(metrics[name]) == pytest.approx(float(expected_metrics[name]), rel=1e-5, abs=1e-5), name

    # the gradient of the batched loss equals the naive loss's
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected.backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_weighted_loss_is_the_weighted_mean_of_per_pair_dpo_losses(tok):
    """loss = mean_i w_i * -log sigmoid(beta * h_i), h_i from naive log-probs, by hand."""
    model = tiny_model(tok, seed=3)
    examples = encode_preference_pairs(PAIRS, tok, max_len=100)
    weights = [0.5, 2.0, 0.5]
    for e, w in zip(examples, weights):
        e.weight, e.ref_chosen_logp, e.ref_rejected_logp = w, -40.0, -35.0
    batch = collate_preference(examples, pad_id=tok.pad_id)
    beta = 0.2
    loss, metrics = DPOLoss(beta=beta, weighted=True)(model, batch)
    with torch.no_grad():
        terms = []
        for e, w in zip(examples, weights):
            h = (naive_response_logps(model, e.chosen.ids, e.chosen.response_start) + 40.0) - \
                (naive_response_logps(model, e.rejected.ids, e.rejected.response_start) + 35.0)
            terms.append(w * -F.logsigmoid(beta * h))
    assert loss.item() == pytest.approx(float(sum(terms) / 3), rel=1e-5)
    unweighted, _ = DPOLoss(beta=beta)(model, batch)
    assert abs(unweighted.item() - loss.item()) > 1e-3  # the weights changed the loss
    batch["weights"] = torch.ones(2)
    with pytest.raises(ValueError, match=r"batch\['weights'\] has shape \(2,\), expected \(3,\)"):
        DPOLoss(weighted=True)(model, batch)


def test_loss_without_reference_logps_says_what_to_run(tok):
    batch = collate_preference(encode_preference_pairs(PAIRS, tok, max_len=100), pad_id=tok.pad_id)
    with pytest.raises(ValueError, match="run precompute_reference_logps"):
        DPOLoss()(tiny_model(tok), batch)
    with pytest.raises(ValueError, match="loss_type 'kto' is not one of"):
        DPOLoss(loss_type="kto")


# ------------------------------------------------------------------------------------------- training


def test_dpo_steps_raise_the_reward_margin_on_the_training_pairs(tok, tmp_path):
    """At step 0 the policy is the reference, so the margin is 0 (checked); after 20 DPO steps the
    implicit reward of the chosen responses exceeds that of the rejected ones on most pairs."""
    rng = random.Random(1)
    pairs = []
    for _ in range(16):
        a, b = rng.randint(1, 49), rng.randint(1, 49)
        wrong = a + b + rng.choice([-10, -1, 1, 10])
        pairs.append({"question": f"What is {a} + {b}?",
                      "chosen": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.",
                      "rejected": f"{a} + {b} = {wrong}. The answer is \\boxed{{{wrong}}}."})
    model = tiny_model(tok, seed=4)
    examples = encode_preference_pairs(pairs, tok, max_len=100)
    precompute_reference_logps(model, examples, pad_id=tok.pad_id, batch_size=8, progress=False)
    collate = partial(collate_preference, pad_id=tok.pad_id)
    loss_fn = DPOLoss(beta=0.1)
    everything = collate(examples)

    def margin():
        model.eval()
        with torch.no_grad():
            _, m = loss_fn(model, everything)
        model.train()
        return float(m["reward_margin"]), float(m["reward_accuracy"])

    before, _ = margin()
    assert abs(before) < 1e-4
    cfg = TrainConfig(lr=5e-3, max_steps=20, schedule="constant", weight_decay=0.0, out_dir=str(tmp_path),
                      log_every=100, bf16=False)
    trainer = Trainer(model, cfg, loss_fn, BatchIterator(examples, 8, collate, seed=0))
    for _ in range(cfg.max_steps):
        record = trainer.step([trainer._next_micro_batch()])
    after, accuracy = margin()
    assert after > before + 0.5, (before, after)
    assert accuracy >= 0.8
    assert record["reward_margin"] > 0.1  # the Trainer logged the loss's diagnostics
