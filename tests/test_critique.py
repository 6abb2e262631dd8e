"""Critique model: corrupted questions do what their kind says, deterministically; wrong solutions;
dataset balance and a split disjoint by question; agreement metrics against hand-computed confusion
matrices; scoring and the loss against unbatched forwards; sample weights against the formula; and
a tiny model that learns the question-quality task better than the majority-class baseline."""
import math
import random
import re
from collections import Counter

import pytest
import torch

from mathlm import ModelConfig, Tokenizer, Transformer
from mathlm.critique import (CORRUPTIONS, QUESTION_TRAILER, SOLUTION_TRAILER, UNANSWERABLE, CritiqueScorer,
                             agreement_metrics, build_critique_dataset, collate_critique, corrupt_question,
                             corrupt_solution, critique_batches, critique_class_weights, critique_eval_fn,
                             critique_loss_fn, critique_text, encode_critique_examples,
                             encode_critique_input, evaluate_critique, graded_examples, question_examples,
                             solution_evidence, synthetic_graded_samples, twin_pairs)
from mathlm.data import filter_by_score, generate_dataset, normalize_question
from mathlm.grading import extract_answer, math_equal
from mathlm.losses import critique_loss, hard_sample_weights
from mathlm.scalar_head import ScalarHeadModel
from mathlm.train import Trainer, TrainConfig

NUMBER = re.compile(r"(?<![\w.^/'])-?\d+(?:/\d+)?(?![\w^/(]|\.\d)")

EGGS = {
    "id": "arithmetic-eggs", "domain": "arithmetic",
    "question": "Nina has 26 eggs and finds 17 more. How many eggs does Nina have in total?",
    "pot": "```python\nhave = 26\nnew = 17\nprint(have + new)\n```\n```output\n43\n```\nThe answer is \\boxed{43}.",
    "cot": "Add the 17 new eggs: 26 + 17 = 43.\nThe answer is \\boxed{43}.",
}
EQUATION = {
    "id": "linear-eq", "domain": "linear_equations", "question": "If 3x + 4 = 19, what is x?",
    "pot": "```python\na, b, c = 3, 4, 19\nx = Fraction(c - b, a)\nprint(x)\n```\n```output\n5\n```\nThe answer is \\boxed{5}.",
}
SEQUENCE = {
    "id": "seq", "domain": "sequences", "question": "What is the 12th term of the arithmetic sequence 2, 10, 18, ...?",
    "pot": "```python\na, d, n = 2, 8, 12\nprint(a + (n - 1) * d)\n```\n```output\n90\n```\nThe answer is \\boxed{90}.",
}


@pytest.fixture(scope="module")
def records():
    return generate_dataset(n_per_domain=12, seed=3, verify=False)


def numbers(text):
    return Counter(NUMBER.findall(text))


# ------------------------------------------------------------------------------------------ corruptions


def test_drop_quantity_removes_one_number_the_program_uses():
    seen = set()
    for seed in range(30):
        bad = corrupt_question(EGGS, "drop_quantity", random.Random(seed))
        removed = bad["detail"]["removed"]
        seen.add(removed)
        assert removed in ("26", "17")  # both appear in the program
        assert numbers(EGGS["question"]) - numbers(bad["question"]) == Counter([removed])
        assert numbers(bad["question"]) - numbers(EGGS["question"]) == Counter()
        assert bad["detail"]["replacement"] in bad["question"]
        assert bad["answer"] == UNANSWERABLE and bad["corruption"] == "drop_quantity"
        assert bad["parent"] == "arithmetic-eggs"
    assert seen == {"26", "17"}
    # "Nina has some eggs and finds 17 more." / "... and finds some more."
    assert {corrupt_question(EGGS, "drop_quantity", random.Random(s))["question"].split(".")[0] for s in range(30)} == {
        "Nina has some eggs and finds 17 more", "Nina has 26 eggs and finds some more"}


def test_drop_quantity_never_drops_a_listed_sequence_term():
    """2, 10, 18, ... determine each other: only the term index (12, used by the program) can go."""
    for seed in range(10):
        bad = corrupt_question(SEQUENCE, "drop_quantity", random.Random(seed))
        assert bad["question"] == "What is a later term of the arithmetic sequence 2, 10, 18, ...?"
        assert bad["detail"]["removed"] == "12"


def test_drop_quantity_does_not_apply_without_a_needed_number():
    record = {"question": "Compute 5 + 6.", "pot": "```python\nprint(11)\n```\n```output\n11\n```\nThe answer is \\boxed{11}."}
    assert corrupt_question(record, "drop_quantity", random.Random(0)) is None


def _claim_is_false(added: str) -> bool:
    """The false premises, checked by arithmetic written here."""
    if m := re.fullmatch(r"Note that (\S+) is equal to (\S+)\.", added):
        from fractions import Fraction
        return Fraction(m.group(1)) != Fraction(m.group(2))
    if m := re.fullmatch(r"Note that (-?\d+) is an (odd|even) number\.", added):
        return (int(m.group(1)) % 2 == 1) != (m.group(2) == "odd")
    if m := re.fullmatch(r"Note that (-?\d+) is greater than (-?\d+)\.", added):
        return int(m.group(1)) <= int(m.group(2))
    raise AssertionError(f"unexpected claim {added!r}")


def test_contradiction_keeps_the_question_and_adds_a_conflicting_statement():
    forms = set()
    for record in (EGGS, EQUATION):
        for seed in range(40):
            bad = corrupt_question(record, "contradiction", random.Random(seed))
            added, at = bad["detail"]["added"], bad["detail"]["at"]
            q = record["question"]
            assert bad["question"].replace(" " + added, "", 1) == q  # nothing of the original is lost
            assert bad["answer"] == UNANSWERABLE
            if added.startswith("and also "):  # "If 3x + 4 = 19 and also 3x + 4 = 22, what is x?"
                forms.add("equation")
                other = added[len("and also "):]
                assert q[:at].endswith("3x + 4 = 19")
                a, b = "3x + 4 = 19".split(), other.split()
                assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
            elif added.startswith("At the same moment"):
                forms.add("possession")
                m = re.fullmatch(r"At the same moment, Nina has exactly (\d+) eggs\.", added)
                assert m and int(m.group(1)) != 26
                assert bad["question"].startswith("Nina has 26 eggs and finds 17 more. At the same moment")
            else:
                forms.add("claim")
                assert _claim_is_false(added)
    assert forms == {"equation", "possession", "claim"}


def test_contradiction_of_a_sequence_restates_a_listed_term_wrongly():
    bad = corrupt_question(SEQUENCE, "contradiction", random.Random(0))
    m = re.fullmatch(r"Note that the (first|second|third) term is (-?\d+)\.", bad["detail"]["added"])
    assert m and int(m.group(2)) != {"first": 2, "second": 10, "third": 18}[m.group(1)]


def test_unanswerable_asks_for_what_the_data_does_not_determine():
    data = "Nina has 26 eggs and finds 17 more. "
    replaced_asks = {"What is the value of z?", "How old is Nina?", "How many siblings does Nina have?",
                     "What color are the eggs?", "How much does one egg weigh, in grams?"}
    added = re.compile(r"Then (add (z|w) to your answer|multiply your answer by (z|w)|subtract (z|w) from your "
                       r"answer)\. What number do you get\?")
    kinds = set()
    for seed in range(40):
        bad = corrupt_question(EGGS, "unanswerable", random.Random(seed))
        asked = bad["detail"]["asked"]
        if asked in replaced_asks:
            kinds.add("replaced")
            assert bad["question"] == data + asked  # the original question is gone, the data kept
        else:
            kinds.add("added")
            assert added.fullmatch(asked) and bad["question"] == EGGS["question"] + " " + asked
        assert bad["answer"] == UNANSWERABLE
    assert kinds == {"replaced", "added"}


def test_swap_entity_asks_about_someone_or_something_never_mentioned():
    q = EGGS["question"]
    swapped = set()
    for seed in range(30):
        bad = corrupt_question(EGGS, "swap_entity", random.Random(seed))
        old, new = bad["detail"]["replaced"], bad["detail"]["by"]
        swapped.add(old)
        assert old in ("Nina", "eggs") and not re.search(rf"\b{new}\b", q)
        i = q.rindex(old)  # the last mention (in the question sentence) is the one replaced
        assert bad["question"] == q[:i] + new + q[i + len(old):]
        if old == "Nina":  # same pronoun class: she
            assert new in ("Maria", "Lena", "Priya", "Ana", "Zoe", "Mei", "Sara")
    assert swapped == {"Nina", "eggs"}
    assert corrupt_question({"question": "Compute 25% of 80."}, "swap_entity", random.Random(0)) is None


def test_corruptions_are_deterministic_by_seed_and_change_every_question(records):
    for kind in CORRUPTIONS:
        first = [corrupt_question(r, kind, random.Random(f"{r['id']}/1")) for r in records]
        again = [corrupt_question(r, kind, random.Random(f"{r['id']}/1")) for r in records]
        other = [corrupt_question(r, kind, random.Random(f"{r['id']}/2")) for r in records]
        assert first == again
        assert first != other
        for r, bad in zip(records, first):
            if bad is not None:
                assert normalize_question(bad["question"]) != normalize_question(r["question"])
    applies = {k: sum(corrupt_question(r, k, random.Random(0)) is not None for r in records) / len(records)
               for k in CORRUPTIONS}
    assert applies["drop_quantity"] > 0.9 and applies["contradiction"] > 0.9 and applies["unanswerable"] == 1.0


def test_corrupt_question_errors():
    with pytest.raises(ValueError, match=r"kind \('typo'\) must be one of \('drop_quantity'"):
        corrupt_question(EGGS, "typo", random.Random(0))
    with pytest.raises(ValueError, match="non-empty 'question'"):
        corrupt_question({"question": "  "}, "drop_quantity", random.Random(0))


# ------------------------------------------------------------------------------------------ wrong solutions


def test_corrupt_solution_final_answer_disagrees_with_the_output():
    for seed in range(10):
        bad = corrupt_solution(EGGS, "final_answer", random.Random(seed), "pot")
        assert bad["correct"] is False and bad["question"] == EGGS["question"]
        before, after = EGGS["pot"].rsplit("\n", 1)[0], bad["solution"].rsplit("\n", 1)[0]
        assert before == after  # program and output block untouched
        assert not math_equal(extract_answer(bad["solution"]), "43")


def test_corrupt_solution_copied_number_changes_the_work_not_the_result():
    bad = corrupt_solution(EGGS, "copied_number", random.Random(1), "cot")
    work, final = bad["solution"].split("\n")
    assert final == "The answer is \\boxed{43}."
    # one of 26 / 17 no longer appears in the work, and the work is otherwise the reference
    gone = [n for n in ("26", "17") if n not in work]
    assert len(gone) == 1
    assert re.sub(r"\d+", "#", work) == re.sub(r"\d+", "#", EGGS["cot"].split("\n")[0])
    # single-digit numbers are never "copied wrong" (they double as indices and exponents)
    assert corrupt_solution({"question": "Find gcd(8, 6).", "pot": "print(2)\nThe answer is \\boxed{2}."},
                            "copied_number", random.Random(0), "pot") is None


def test_synthetic_graded_samples(records):
    graded = synthetic_graded_samples(records[:20], fields=("pot", "mixed"), seed=0)
    good = [g for g in graded if g["correct"]]
    assert [g["solution"] for g in good] == [r[f] for r in records[:20] for f in ("pot", "mixed") if r[f]]
    bad = [g for g in graded if not g["correct"]]
    assert len(bad) == len(good)  # final_answer always applies to a solution with a boxed answer
    assert all(g["solution"] not in {r[f] for r in records[:20] for f in ("pot", "mixed")} for g in bad)


# ------------------------------------------------------------------------------------------ dataset


def test_build_critique_dataset_balanced_and_disjoint_by_question(records):
    graded = synthetic_graded_samples(records, fields=("pot",), seed=1)
    graded += [{"question": records[0]["question"], "solution": records[0]["cot"], "correct": True}] * 3
    ds = build_critique_dataset(records, graded, held_out=0.25, seed=7)
    train, held = ds["train"], ds["held_out"]
    for part in (train, held):
        for task in ("question", "solution"):
            labels = Counter(e["label"] for e in part if e["task"] == task)
            assert labels[0] == labels[1] > 0
    groups_train, groups_held = {e["group"] for e in train}, {e["group"] for e in held}
    assert not groups_train & groups_held
    n_groups = len({normalize_question(r["question"]) for r in records})
    assert len(groups_held) == round(0.25 * n_groups)
    # a held-out question, its corruptions and its solutions never appear in training
    train_texts = {e["question"] for e in train}
    for e in held:
        assert e["question"] not in train_texts
    assert build_critique_dataset(records, graded, held_out=0.25, seed=7) == ds
    assert build_critique_dataset(records, graded, held_out=0.25, seed=8) != ds


def test_question_examples_and_unbalanced_task_kept_whole(records):
    ex = question_examples(records[:10], negatives_per_question=2, seed=0)
    assert sum(e["label"] for e in ex) == 10
    assert Counter(e["source"] for e in ex if e["label"] == 0).keys() <= {f"corruption/{k}" for k in CORRUPTIONS}
    assert sum(1 - e["label"] for e in ex) == 20
    only_correct = [{"question": r["question"], "solution": r["pot"], "correct": True} for r in records[:5]]
    ds = build_critique_dataset(graded=only_correct, held_out=0.0, seed=0)
    assert len(ds["train"]) == 5 and all(e["label"] == 1 for e in ds["train"])  # nothing to balance against


def test_class_weights_and_example_errors():
    ex = [{"label": 1}] * 3 + [{"label": 0}]
    assert critique_class_weights(ex) == pytest.approx((4 / 2, 4 / 6))  # n / (2 n_c)
    with pytest.raises(ValueError, match="field 'correct' must be a bool"):
        graded_examples([{"question": "q", "solution": "s", "correct": "yes"}])
    with pytest.raises(ValueError, match=r"example 0: task \('essay'\) must be one of"):
        encode_critique_examples([{"task": "essay", "question": "q", "label": 1}], None, 10)
    with pytest.raises(ValueError, match=r"held_out \(1.0\) must lie in \[0, 1\)"):
        build_critique_dataset(graded=[{"question": "q", "solution": "s", "correct": True}], held_out=1.0)


# ------------------------------------------------------------------------------------------ metrics


def test_agreement_metrics_against_hand_confusion_matrices():
    """labels 1 1 1 0 0 0 0 1, predictions 1 0 1 0 1 0 0 1: tp 3, fn 1, fp 1, tn 3.
    Both classes: precision 3/4, recall 3/4, F1 3/4; agreement 6/8; majority 4/8."""
    m = agreement_metrics([1, 1, 1, 0, 0, 0, 0, 1], [1, 0, 1, 0, 1, 0, 0, 1])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    for k in ("agreement", "precision_pos", "recall_pos", "f1_pos", "precision_neg", "recall_neg", "f1_neg", "macro_f1"):
        assert m[k] == pytest.approx(0.75)
    assert m["majority_baseline"] == 0.5 and m["n"] == 8 and m["positive_rate"] == 0.5

    """A one-sided judge: six good, four bad, always "good". tp 6, fp 4. Agreement 0.6 equals the
    majority baseline; F1 good = 2 * 0.6 * 1 / 1.6 = 0.75, F1 bad = 0 (0/0 precision counted 0)."""
    m = agreement_metrics([1] * 6 + [0] * 4, [True] * 10)
    assert m["agreement"] == pytest.approx(0.6) == m["majority_baseline"]
    assert (m["precision_pos"], m["recall_pos"], m["f1_pos"]) == pytest.approx((0.6, 1.0, 0.75))
    assert (m["precision_neg"], m["recall_neg"], m["f1_neg"]) == (0.0, 0.0, 0.0)
    assert m["macro_f1"] == pytest.approx(0.375)

    """labels 1 0 0 0 1, predictions 0 0 1 0 1: tp 1, fn 1, fp 1, tn 2. Good: 1/2, 1/2, F1 1/2;
    bad: precision 2/3 (tn / (tn + fn)), recall 2/3 (tn / (tn + fp)), F1 2/3; macro 7/12."""
    m = agreement_metrics([1, 0, 0, 0, 1], [0, 0, 1, 0, 1])
    assert (m["precision_pos"], m["recall_pos"], m["f1_pos"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (m["precision_neg"], m["recall_neg"], m["f1_neg"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert m["macro_f1"] == pytest.approx(7 / 12) and m["agreement"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        agreement_metrics([1, 0, 1], [1, 0])


# ------------------------------------------------------------------------------------------ model pieces


@pytest.fixture(scope="module")
def tok(records):
    texts = [critique_text(r["question"], r["pot"]) for r in records] + [critique_text(r["question"]) for r in records]
    return Tokenizer.train(texts, vocab_size=400)


def tiny_model(tok, seed=0, dim=32, layers=2, max_seq_len=512, init_std=None):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(tok), dim=dim, n_layers=layers, n_heads=4, n_kv_heads=2, hidden_dim=3 * dim,
                      max_seq_len=max_seq_len)
    return ScalarHeadModel(Transformer(cfg), init_std=init_std).eval()


def test_encode_critique_input_templates_and_truncation(tok):
    q, s = EGGS["question"], EGGS["pot"]
    assert tok.decode(encode_critique_input(tok, q, None, 512)) == critique_text(q)
    assert tok.decode(encode_critique_input(tok, q, s, 512)) == critique_text(q, s)
    assert critique_text(q, s) == f"Critique the solution:\n{q}\n{s}\nFinal answer: 43\nLast result: 43\nCorrect?"
    head = tok.encode("Critique the solution:\n" + q + "\n", bos=True)
    body = tok.encode(s, bos=False)
    tail = tok.encode("\nFinal answer: 43\nLast result: 43" + SOLUTION_TRAILER, bos=False)
    keep = 12
    assert keep < len(body)
    cut = encode_critique_input(tok, q, s, len(head) + keep + len(tail))
    assert cut == head + body[len(body) - keep:] + tail  # the solution loses its start, the rest stays
    n = len(tail) + 4
    tiny = encode_critique_input(tok, q, s, n)  # not even the question fits: it loses tokens after BOS
    assert tiny == head[:1] + head[len(head) - 3:] + tail
    with pytest.raises(ValueError, match=rf"max_len \({len(tail)}\) must leave room"):
        encode_critique_input(tok, q, s, len(tail))
    assert tok.decode(encode_critique_input(tok, q, None, 512)).endswith(QUESTION_TRAILER)


def test_solution_evidence_reads_the_final_answer_and_the_last_result():
    assert solution_evidence(EGGS["pot"]) == "\nFinal answer: 43\nLast result: 43"  # output block
    assert solution_evidence(EGGS["cot"]) == "\nFinal answer: 43\nLast result: 43"  # last "= value"
    wrong = EGGS["pot"].replace("boxed{43}", "boxed{44}")
    assert solution_evidence(wrong) == "\nFinal answer: 44\nLast result: 43"
    two_blocks = "```python\nprint(2)\n```\n```output\n2\n```\n```python\nprint(3/4)\n```\n```output\n3/4\n```\nThe answer is 3/4."
    assert solution_evidence(two_blocks) == "\nFinal answer: 3/4\nLast result: 3/4"
    assert solution_evidence("I do not know 12") == "\nFinal answer: none\nLast result: none"


def test_scorer_matches_unbatched_forward_and_plugs_into_filter_by_score(tok, records):
    model = tiny_model(tok, init_std=0.3)  # scores spread out, so a threshold can separate them
    scorer = CritiqueScorer(model, tok, batch_size=3)
    qs = [r["question"] for r in records[:7]]
    with torch.no_grad():
        ref = [torch.sigmoid(model(torch.tensor([encode_critique_input(tok, q, None, 512)]))[0, -1]).item() for q in qs]
        ref_sol = [torch.sigmoid(model(torch.tensor([encode_critique_input(tok, r["question"], r["mixed"], 512)]))[0, -1]).item()
                   for r in records[:7]]
    assert scorer.score_questions(qs) == pytest.approx(ref, abs=1e-5)
    assert scorer.score_solutions(qs, [r["mixed"] for r in records[:7]]) == pytest.approx(ref_sol, abs=1e-5)
    ordered = sorted(ref)
    low, high = max(zip(ordered, ordered[1:]), key=lambda pair: pair[1] - pair[0])
    assert high - low > 1e-4
    kept = filter_by_score(records[:7], scorer.question_scorer(records[:7]), (low + high) / 2)
    assert [r["id"] for r in kept] == [r["id"] for r, p in zip(records[:7], ref) if p > low]
    sol = scorer.solution_scorer("mixed")  # no pre-scoring: one record at a time
    assert [sol(r) for r in records[:3]] == pytest.approx(ref_sol[:3], abs=1e-5)


def test_critique_loss_fn_equals_critique_loss_on_independent_logits(tok, records):
    ex = question_examples(records[:4], seed=0)
    enc = encode_critique_examples(ex, tok, 512)
    batch = collate_critique(enc, tok.pad_id)
    model = tiny_model(tok)
    with torch.no_grad():
        logits = torch.stack([model(torch.tensor([e.ids]))[0, -1] for e in enc])
    weights = (2.0, 0.5)
    loss, metrics = critique_loss_fn(model, batch, class_weights=weights)
    ref_loss, ref_metrics = critique_loss(logits, torch.tensor([float(e["label"]) for e in ex]), class_weights=weights)
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-5)
    assert metrics["accuracy"].item() == ref_metrics["accuracy"].item()
    assert batch["task"].tolist() == [0] * len(ex)


def test_pair_term_is_bradley_terry_over_twins(tok, records):
    """Rows: q0 good, q0 bad, q0 bad (drop/other kind), q1 good, q1-solution good, q1-solution bad.
    Twins (same question and task, good vs bad): (0, 1), (0, 2), (4, 5); row 3 has no bad twin."""
    r0, r1 = records[0], records[1]
    bad0 = [corrupt_question(r0, k, random.Random(0))["question"] for k in ("drop_quantity", "unanswerable")]
    ex = ([{"task": "question", "question": r0["question"], "solution": None, "label": 1, "group": "a"}]
          + [{"task": "question", "question": q, "solution": None, "label": 0, "group": "a"} for q in bad0]
          + [{"task": "question", "question": r1["question"], "solution": None, "label": 1, "group": "b"},
             {"task": "solution", "question": r1["question"], "solution": r1["pot"], "label": 1, "group": "b"},
             {"task": "solution", "question": r1["question"], "solution": r1["pot"].replace("boxed{", "boxed{1"),
              "label": 0, "group": "b"}])
    batch = collate_critique(encode_critique_examples(ex, tok, 512), tok.pad_id)
    good, bad = twin_pairs(batch)
    assert sorted(zip(good.tolist(), bad.tolist())) == [(0, 1), (0, 2), (4, 5)]
    model = tiny_model(tok, init_std=0.3)
    with torch.no_grad():
        s = torch.stack([model(torch.tensor([encode_critique_input(tok, e["question"], e["solution"], 512)]))[0, -1]
                         for e in ex])
        loss, metrics = critique_loss_fn(model, batch, pair_weight=0.5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(s, torch.tensor([1., 0, 0, 1, 1, 0]))
    pairs = -torch.nn.functional.logsigmoid(torch.stack([s[0] - s[1], s[0] - s[2], s[4] - s[5]])).mean()
    assert loss.item() == pytest.approx((bce + 0.5 * pairs).item(), abs=1e-5)
    assert metrics["pair_accuracy"].item() == pytest.approx(
        sum(int(s[i] > s[j]) for i, j in ((0, 1), (0, 2), (4, 5))) / 3)


def test_critique_batches_by_group_keep_each_question_with_its_twins(tok, records):
    ex = question_examples(records[:12], negatives_per_question=2, seed=0)
    batches = critique_batches(ex, tok, batch_size=3, max_len=512, by_group=True)
    sizes = Counter(e["group"] for e in ex)
    encoded = {tuple(encode_critique_input(tok, e["question"], None, 512)): e["group"] for e in ex}
    seen = Counter()
    for _ in range(4):  # one epoch: 12 groups, 3 a batch
        batch = next(batches)
        groups = Counter()
        for row, mask in zip(batch["tokens"], batch["attention_mask"]):
            groups[encoded[tuple(row[:int(mask.sum())].tolist())]] += 1
        assert len(groups) == 3 and all(groups[g] == sizes[g] for g in groups)  # whole groups only
        seen.update(groups)
    assert seen == sizes
    flat = next(critique_batches(ex, tok, batch_size=5, max_len=512))
    assert flat["tokens"].shape[0] == 5


def test_evaluate_critique_splits_tasks_like_unbatched_predictions(tok, records):
    graded = synthetic_graded_samples(records[:6], fields=("pot",), seed=0)
    ex = question_examples(records[:6], seed=0) + graded_examples(graded)
    model = tiny_model(tok, seed=1)
    with torch.no_grad():
        preds = [model(torch.tensor([encode_critique_input(tok, e["question"], e["solution"], 512)]))[0, -1].item() >= 0
                 for e in ex]
    res = evaluate_critique(model, ex, tok, batch_size=5)
    assert res["overall"] == agreement_metrics([e["label"] for e in ex], preds)
    for task in ("question", "solution"):
        idx = [i for i, e in enumerate(ex) if e["task"] == task]
        assert res[task] == agreement_metrics([ex[i]["label"] for i in idx], [preds[i] for i in idx])
    by_source = evaluate_critique(model, ex, tok, by_source=True)
    for source in {e["source"] for e in ex}:
        idx = [i for i, e in enumerate(ex) if e["source"] == source]
        assert by_source[f"source/{source}"] == {
            "n": len(idx), "agreement": sum(preds[i] == ex[i]["label"] for i in idx) / len(idx)}
    flat = critique_eval_fn(ex, tok)(model)
    assert flat["solution/agreement"] == res["solution"]["agreement"]
    with pytest.raises(ValueError, match="needs its tokenizer"):
        evaluate_critique(model, ex)


def test_hard_sample_weights_of_critique_scores_formula():
    """Critique scores as a plain list. p = (0, 1), temperature 1: w = 2 exp(-p) / (1 + e^-1) =
    (1.4621, 0.5379); mean 1."""
    w = hard_sample_weights(scores=[0.0, 1.0]).tolist()
    assert w == pytest.approx([2 / (1 + math.exp(-1)), 2 * math.exp(-1) / (1 + math.exp(-1))], abs=1e-6)
    """temperature 0.5 doubles the exponent: w = 2 exp(-2p) / (1 + e^-2)."""
    w = hard_sample_weights(scores=[0.0, 1.0], temperature=0.5).tolist()
    assert w == pytest.approx([2 / (1 + math.exp(-2)), 2 * math.exp(-2) / (1 + math.exp(-2))], abs=1e-6)
    assert hard_sample_weights(scores=[0.3, 0.3, 0.3]).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="scores is empty"):
        hard_sample_weights(scores=[])


def test_scorer_save_load_roundtrip(tok, tmp_path):
    model = tiny_model(tok)
    scorer = CritiqueScorer(model, tok)
    scorer.save(tmp_path / "critic")
    back = CritiqueScorer.load(tmp_path / "critic")
    qs = [EGGS["question"], EQUATION["question"]]
    assert back.score_questions(qs) == pytest.approx(scorer.score_questions(qs), abs=1e-6)


# ------------------------------------------------------------------------------------------ learning


def test_tiny_critique_beats_majority_baseline_on_held_out_questions(tmp_path):
    """~100 steps of a 2-layer d=48 model on the question-quality task (all nine domains): the
    held-out agreement must clear the majority-class baseline (0.5 on balanced data) and judge both
    classes (F1 of each well above 0), i.e. it is no one-sided judge."""
    records = generate_dataset(n_per_domain=40, seed=0, verify=False)
    ds = build_critique_dataset(records, held_out=0.25, seed=0)
    tok = Tokenizer.train([critique_text(e["question"]) for e in ds["train"]], vocab_size=400)
    model = tiny_model(tok, dim=48, max_seq_len=128).train()
    batches = critique_batches(ds["train"], tok, batch_size=16, max_len=128)
    trainer = Trainer(model, TrainConfig(lr=3e-3, warmup_steps=10, max_steps=100, weight_decay=0.0, log_every=50,
                                         out_dir=str(tmp_path)), critique_loss_fn, batches)
    for _ in range(100):
        trainer.step([next(batches)])
    res = evaluate_critique(model, ds["held_out"], tok)["question"]
    print(res)
    assert res["majority_baseline"] == 0.5 and res["n"] == len(ds["held_out"])
    assert res["agreement"] >= res["majority_baseline"] + 0.15
    assert res["f1_pos"] > 0.6 and res["f1_neg"] > 0.6
