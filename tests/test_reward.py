"""Reward model: pair encoding and collation, the Trainer loss against reward_loss on scores computed
one sequence at a time, text scoring against unbatched forwards, held-out accuracy against hand
values, save/load, errors, and a tiny model that learns a toy preference better than chance."""
import random

import pytest
import torch

from mathlm import ModelConfig, Tokenizer, Transformer
from mathlm.losses import reward_loss
from mathlm.reward import (RewardModel, collate_pairs, encode_reward_pairs, encode_response, fit_to_length,
                           pad_right, preference_accuracy, reward_batches, reward_eval_fn, reward_loss_fn)
from mathlm.train import Trainer, TrainConfig


def toy_pair(n: int) -> dict:
    """The toy preference: the chosen response states the parity of the question's number."""
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return {"question": f"Is {n} odd or even?", "chosen": f"The answer is {right}.", "rejected": f"The answer is {wrong}."}


@pytest.fixture(scope="module")
def pairs():
    """500 training pairs on numbers below 800, then 100 held-out pairs on unseen numbers 800..999."""
    rng = random.Random(0)
    return [toy_pair(rng.randint(10, 799)) for _ in range(500)] + [toy_pair(n) for n in rng.sample(range(800, 1000), 100)]


@pytest.fixture(scope="module")
def tok(pairs):
    texts = [f"Question: {p['question']}\nAnswer:\n{p['chosen']}" for p in pairs[:500]]  # training pairs only
    return Tokenizer.train(texts, vocab_size=300)


def tiny_reward_model(tok, seed=0, dim=32, init_std=1.0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(tok), dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=3 * dim,
                      max_seq_len=64)
    return RewardModel(Transformer(cfg), init_std=init_std, tokenizer=tok).eval()


def single_score(model, ids) -> torch.Tensor:
    """The head at the last token of one unpadded sequence: no batching, no mask."""
    return model(torch.tensor([ids]))[0, -1]


def test_fit_to_length_cuts_the_body_start_then_the_head_after_bos():
    head, body, tail = [1, 5, 6], [7, 8, 9, 10], [2]
    assert fit_to_length(head, body, tail, 8) == [1, 5, 6, 7, 8, 9, 10, 2]
    assert fit_to_length(head, body, tail, 6) == [1, 5, 6, 9, 10, 2]
    assert fit_to_length(head, body, tail, 3) == [1, 6, 2]
    assert fit_to_length(head, body, tail, 2) == [1, 2]
    with pytest.raises(ValueError, match=r"max_len \(1\) must leave room"):
        fit_to_length(head, body, tail, 1)


def test_encode_response_is_the_policy_format(tok, pairs):
    p = pairs[0]
    ids, _ = tok.encode_example(p["question"], p["chosen"])
    assert encode_response(tok, p["question"], p["chosen"], 64) == ids
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id


def test_collate_pairs_layout(tok, pairs):
    ex = encode_reward_pairs([{**pairs[0], "margin": 0.5}, pairs[1], pairs[2]], tok, 64)
    batch = collate_pairs(ex, tok.pad_id)
    B = 3
    assert batch["tokens"].shape[0] == 2 * B and batch["margin"].tolist() == [0.5, 0.0, 0.0]
    for i, e in enumerate(ex):
        for row, ids in ((i, e.chosen), (B + i, e.rejected)):
            assert batch["tokens"][row, :len(ids)].tolist() == ids
            assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (batch["tokens"].shape[1] - len(ids))
            assert set(batch["tokens"][row, len(ids):].tolist()) <= {tok.pad_id}


def test_reward_loss_fn_equals_reward_loss_on_independent_scores(tok, pairs):
    chosen_margin = [{**p, "margin": m} for p, m in zip(pairs[:5], [0.0, 1.0, -0.5, 2.0, 0.25])]
    ex = encode_reward_pairs(chosen_margin, tok, 64)
    model = tiny_reward_model(tok)
    with torch.no_grad():
        chosen = torch.stack([single_score(model, e.chosen) for e in ex])
        rejected = torch.stack([single_score(model, e.rejected) for e in ex])
        loss, metrics = reward_loss_fn(model, collate_pairs(ex, tok.pad_id))
    ref_loss, ref_metrics = reward_loss(chosen, rejected, margin=torch.tensor([0.0, 1.0, -0.5, 2.0, 0.25]))
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-5)
    for k in ("accuracy", "margin", "chosen_mean", "rejected_mean"):
        assert metrics[k].item() == pytest.approx(ref_metrics[k].item(), abs=1e-5)


def test_score_texts_and_pairs_match_unbatched_forward(tok, pairs):
    model = tiny_reward_model(tok)
    items = [(p["question"], p["chosen"]) for p in pairs[:5]]
    texts = ["Question: Is 12 odd or even?\nAnswer:\nThe answer is even.", "x", "The answer is odd."]
    with torch.no_grad():
        ref_pairs = [single_score(model, tok.encode_example(q, r)[0]).item() for q, r in items]
        ref_texts = [single_score(model, tok.encode(t, bos=True, eos=True)).item() for t in texts]
    assert model.score(items, batch_size=2) == pytest.approx(ref_pairs, abs=1e-5)
    assert model.score(texts) == pytest.approx(ref_texts, abs=1e-5)
    # the tensor form is ScalarHeadModel.score (what RL code calls on its own token ids)
    tokens, mask = pad_right([tok.encode_example(q, r)[0] for q, r in items], tok.pad_id)
    with torch.no_grad():
        assert model.score(tokens, mask).tolist() == pytest.approx(ref_pairs, abs=1e-5)
    assert model.training is False


def test_preference_accuracy_hand_values(tok, pairs):
    """chosen == rejected: every pair is a tie, accuracy 1/2 and margin 0 for any model."""
    model = tiny_reward_model(tok)
    ties = [{"question": p["question"], "chosen": p["chosen"], "rejected": p["chosen"]} for p in pairs[:4]]
    assert preference_accuracy(model, ties, tok) == {"accuracy": 0.5, "margin": 0.0, "n": 4.0}
    """Swapping chosen and rejected turns accuracy a into 1 - a and the margin m into -m."""
    swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs[:20]]
    a, b = preference_accuracy(model, pairs[:20], tok), reward_eval_fn(swapped, tok)(model)
    assert a["accuracy"] == pytest.approx(1 - b["accuracy"]) and a["margin"] == pytest.approx(-b["margin"], abs=1e-5)
    with torch.no_grad():
        wins = sum(single_score(model, tok.encode_example(p["question"], p["chosen"])[0])
                   > single_score(model, tok.encode_example(p["question"], p["rejected"])[0]) for p in pairs[:20])
    assert a["accuracy"] == pytest.approx(int(wins) / 20)


def test_save_load_roundtrip_keeps_the_tokenizer(tok, pairs, tmp_path):
    model = tiny_reward_model(tok)
    model.save(tmp_path / "rm")
    back = RewardModel.load(tmp_path / "rm")
    items = [(p["question"], p["rejected"]) for p in pairs[:3]]
    assert back.tokenizer is not None and back.tokenizer.encode("Is 12 odd") == tok.encode("Is 12 odd")
    assert back.score(items) == pytest.approx(model.score(items), abs=1e-6)


def test_errors(tok, pairs):
    with pytest.raises(ValueError, match=r"pair 1: field 'rejected' must be a string"):
        encode_reward_pairs([pairs[0], {"question": "q", "chosen": "a"}], tok, 64)
    with pytest.raises(ValueError, match=r"pair 0: field 'margin' must be a number"):
        encode_reward_pairs([{**pairs[0], "margin": "big"}], tok, 64)
    model = tiny_reward_model(tok)
    with pytest.raises(ValueError, match=r"item 1 must be a text or a \(question, response\) pair"):
        model.score(["fine", ("q",)])
    model.tokenizer = None
    with pytest.raises(ValueError, match="needs a tokenizer"):
        model.score(["text"])


def test_tiny_reward_model_ranks_held_out_pairs_better_than_chance(tok, pairs, tmp_path):
    """100 steps of a 2-layer d=48 model on the toy preference (the chosen answer states the parity
    of the question's number): on 100 held-out pairs with numbers never seen in training, accuracy
    well above chance (0.5; one standard error is 0.05, so 0.75 is five of them). Seeds 0, 1, 2 of
    the model gave 0.89, 1.0, 1.0."""
    train, held = pairs[:500], pairs[500:]
    model = tiny_reward_model(tok, dim=48, init_std=None).train()
    batches = reward_batches(train, tok, batch_size=16, max_len=64)
    trainer = Trainer(model, TrainConfig(lr=3e-3, warmup_steps=10, max_steps=100, weight_decay=0.0, log_every=50,
                                         out_dir=str(tmp_path)), reward_loss_fn, batches)
    for _ in range(100):
        trainer.step([next(batches)])
    result = preference_accuracy(model, held, tok)
    print(result)
    assert result["accuracy"] >= 0.75 and result["margin"] > 0
