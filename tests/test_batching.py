"""Batching: the template and loss mask, label shifting, padding and packing (against separate
forwards), per-sample weights, and the deterministic, resumable, rank-aware BatchIterator."""
import random

import pytest
import torch

from mathlm.batching import (BatchIterator, SFTExample, collate_packed, collate_padded, encode_sft_records,
                             pack_examples)
from mathlm.config import ModelConfig
from mathlm.model import Transformer
from mathlm.tokenizer import Tokenizer
from mathlm.train import causal_lm_loss


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    texts = [f"Question: what is {rng.randint(1, 999)} plus {rng.randint(1, 999)}?\nAnswer:\nWe add them. "
             f"The answer is {rng.randint(1, 2000)}." for _ in range(200)]
    return Tokenizer.train(texts, vocab_size=320)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64,
                                   max_seq_len=64))


# ------------------------------------------------------------------------------------------ records


def test_encode_uses_the_template_and_marks_the_response(tok):
    records = [{"question": "what is 2 plus 3?", "response": "We add. The answer is 5.", "weight": 2.5},
               {"question": "what is 7 plus 1?", "response": "8"}]
    examples = encode_sft_records(records, tok, max_len=200)
    for record, e in zip(records, examples):
        prompt = tok.encode(f"Question: {record['question']}\nAnswer:\n", bos=True)
        assert e.ids == prompt + tok.encode(record["response"], bos=False, eos=True)
        assert e.response_start == len(prompt)
    assert [e.weight for e in examples] == [2.5, 1.0]


def test_overflow_policies_and_errors(tok):
    rec = {"question": "what is 2 plus 3?", "response": "We add them. The answer is 5."}
    full = encode_sft_records([rec], tok, max_len=500)[0]
    max_len = full.response_start + 2  # room for 3 response ids of the longer response
    cut = encode_sft_records([rec], tok, max_len=max_len)[0]
    assert cut.ids == full.ids[:max_len + 1] and cut.response_start == full.response_start
    assert encode_sft_records([rec, {"question": "q", "response": "r"}], tok, max_len=max_len, overflow="drop")[0].ids \
        == encode_sft_records([{"question": "q", "response": "r"}], tok, max_len=max_len)[0].ids
    with pytest.raises(ValueError, match=rf"record 0: {len(full.ids) - 1} input tokens exceed max_len \({max_len}\)"):
        encode_sft_records([rec], tok, max_len=max_len, overflow="error")
    with pytest.raises(ValueError, match=rf"the prompt has {full.response_start} tokens, so max_len \(5\) leaves no"):
        encode_sft_records([rec], tok, max_len=5)
    with pytest.raises(ValueError, match=r"data.jsonl:7: field 'response' must be a string, got None"):
        encode_sft_records([{"question": "q", "response": None, "_source": "data.jsonl:7"}], tok, max_len=50)
    with pytest.raises(ValueError, match=r"record 1: field 'mixed' must be a string"):
        encode_sft_records([{"question": "q", "mixed": "a"}, {"question": "q"}], tok, 50, response_key="mixed")
    with pytest.raises(ValueError, match=r"record 0: field 'weight' must be a number >= 0, got -1"):
        encode_sft_records([{"question": "q", "response": "r", "weight": -1}], tok, max_len=50)
    with pytest.raises(ValueError, match=r"overflow \('cut'\) must be one of"):
        encode_sft_records([rec], tok, max_len=50, overflow="cut")
    with pytest.raises(ValueError, match=r"response_start \(4\) must lie in \[1, 3\]"):
        SFTExample([1, 2, 3, 4], 4)


# ------------------------------------------------------------------------------------------ collate


def test_collate_padded_shifts_labels_masks_prompt_and_pads_right():
    """ids [1, 10, 11, 12, 13, 2] with the response from index 3 (12, 13, EOS):
    inputs  [1, 10, 11, 12, 13], labels [10, 11, 12, 13, 2]; input t predicts ids[t+1], a target
    when t + 1 >= 3, so the mask is [F, F, T, T, T]. The second example [1, 20, 21, 2] with its
    response from index 2 gives inputs [1, 20, 21], labels [20, 21, 2], mask [F, T, T], padded."""
    a = SFTExample([1, 10, 11, 12, 13, 2], 3, weight=0.5)
    b = SFTExample([1, 20, 21, 2], 2)
    batch = collate_padded([a, b], pad_id=0)
    assert batch["tokens"].tolist() == [[1, 10, 11, 12, 13], [1, 20, 21, 0, 0]]
    assert batch["labels"].tolist() == [[10, 11, 12, 13, 2], [20, 21, 2, -100, -100]]
    assert batch["loss_mask"].tolist() == [[False, False, True, True, True], [False, True, True, False, False]]
    assert batch["weights"].tolist() == [0.5, 1.0]
    assert collate_padded([b], pad_id=0, seq_len=6)["tokens"].tolist() == [[1, 20, 21, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"an example has 5 inputs, more than seq_len \(4\)"):
        collate_padded([a], pad_id=0, seq_len=4)


def test_pack_examples_next_fit_and_packed_layout():
    """Inputs per example 5, 4, 3, 6 into rows of 9: [5, 4] (9), then 3 + 6 = 9."""
    ex = [SFTExample(list(range(1, n + 2)), 1) for n in (5, 4, 3, 6)]
    rows = pack_examples(ex, seq_len=9)
    assert [[e.num_inputs for e in row] for row in rows] == [[5, 4], [3, 6]]
    with pytest.raises(ValueError, match=r"example 1 has 12 inputs, more than seq_len \(9\)"):
        pack_examples([ex[0], SFTExample(list(range(13)), 1)], 9)

    a, b = SFTExample([1, 10, 11, 2], 2), SFTExample([1, 20, 2], 1, weight=3.0)
    batch = collate_packed([[a, b]], seq_len=7, pad_id=0)
    assert batch["tokens"].tolist() == [[1, 10, 11, 1, 20, 0, 0]]
    assert batch["labels"].tolist() == [[10, 11, 2, 20, 2, -100, -100]]  # no label crosses a boundary
    assert batch["loss_mask"].tolist() == [[False, True, True, True, True, False, False]]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 1, 1, 2, 2]]
    assert batch["token_weights"].tolist() == [[1, 1, 1, 3, 3, 1, 1]]
    assert "token_weights" not in collate_packed([[a]], seq_len=7, pad_id=0)
    with pytest.raises(ValueError, match=r"row 0 holds 5 inputs, more than seq_len \(4\)"):
        collate_packed([[a, b]], seq_len=4, pad_id=0)


def test_packed_rows_give_the_logits_and_loss_of_separate_sequences():
    """Packing is only an efficiency: each document's logits equal those of its own forward, and
    the (weighted) loss of the packed batch equals the padded batch's."""
    g = torch.Generator().manual_seed(0)
    examples = []
    for n, w in ((7, 1.0), (12, 0.5), (5, 2.0), (9, 1.5)):
        ids = torch.randint(3, 64, (n,), generator=g).tolist()
        examples.append(SFTExample(ids, int(torch.randint(1, n - 1, (1,), generator=g)), weight=w))
    model = tiny_model()
    rows = pack_examples(examples, seq_len=20)
    assert len(rows) == 2
    packed = collate_packed(rows, seq_len=20, pad_id=0)
    with torch.no_grad():
        logits = model(packed["tokens"], document_ids=packed["document_ids"])
        r, offset = 0, 0
        for e in examples:
            if offset + e.num_inputs > 20:
                r, offset = r + 1, 0
            alone = model(torch.tensor([e.ids[:-1]]))[0]
            torch.testing.assert_close(logits[r, offset:offset + e.num_inputs], alone, atol=1e-5, rtol=1e-5)
            offset += e.num_inputs
        padded = collate_padded(examples, pad_id=0)
        # weighted: sum_b w_b * sum_t nll_bt / (number of targets), computed by hand from the logits
        ref_num, ref_den = 0.0, 0
        for e in examples:
            lp = torch.log_softmax(model(torch.tensor([e.ids[:-1]]))[0].double(), -1)
            for t in range(e.response_start - 1, e.num_inputs):
                ref_num -= e.weight * lp[t, e.ids[t + 1]].item()
                ref_den += 1
        loss_packed, _ = causal_lm_loss(model, packed)
        loss_padded, _ = causal_lm_loss(model, padded)
    assert loss_packed.item() == pytest.approx(ref_num / ref_den, rel=1e-5)
    assert loss_padded.item() == pytest.approx(ref_num / ref_den, rel=1e-5)


# ------------------------------------------------------------------------------------------ iteration


def take(it, n):
    return [next(it) for _ in range(n)]


def test_epochs_follow_seeded_permutations_and_drop_the_remainder():
    """10 items, batches of 4: 2 batches per epoch, epoch e = randperm(10, seed + e)[:8]."""
    it = BatchIterator(list(range(10)), 4, list, seed=3)
    got = take(it, 6)
    for e in range(3):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(3 + e)).tolist()
        assert got[2 * e] + got[2 * e + 1] == perm[:8]
    assert got[0:2] != got[2:4]  # a new order every epoch
    assert take(BatchIterator(list(range(10)), 4, list, shuffle=False), 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


def test_ranks_split_each_global_batch():
    items = list(range(23))
    whole = take(BatchIterator(items, 6, list, seed=1, rank=0, world_size=1), 9)
    r0 = take(BatchIterator(items, 6, list, seed=1, rank=0, world_size=2), 9)
    r1 = take(BatchIterator(items, 6, list, seed=1, rank=1, world_size=2), 9)
    assert [a + b for a, b in zip(r0, r1)] == whole
    assert all(len(a) == 3 for a in r0)


@pytest.mark.parametrize("consumed", [1, 3, 4, 7])  # mid-epoch, at an epoch boundary, later
def test_resume_continues_exactly_on_any_world_size(consumed):
    items = list(range(17))
    straight = BatchIterator(items, 4, list, seed=5)
    expected = take(straight, consumed + 6)[consumed:]
    saved = BatchIterator(items, 4, list, seed=5, rank=1, world_size=2)
    take(saved, consumed)
    state = saved.state_dict()
    resumed = BatchIterator(items, 4, list, seed=5)
    resumed.load_state_dict(state)
    assert take(resumed, 6) == expected


def test_iterator_errors():
    with pytest.raises(ValueError, match=r"batch_size \(5\) must be a positive multiple of world_size \(2\)"):
        BatchIterator(list(range(10)), 5, list, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"3 items cannot fill one batch of batch_size \(4\)"):
        BatchIterator([1, 2, 3], 4, list)
    with pytest.raises(ValueError, match=r"rank \(2\) must lie in \[0, world_size=2\)"):
        BatchIterator(list(range(10)), 2, list, rank=2, world_size=2)
    state = BatchIterator(list(range(10)), 2, list, seed=1).state_dict()
    with pytest.raises(ValueError, match=r"saved data position belongs to another iterator: saved .*'num_items': 10"):
        BatchIterator(list(range(12)), 2, list, seed=1).load_state_dict(state)
