"""Similarity measures and dedup: hand values, a naive DP reference, and the indexed paths
against the exhaustive scan on random and adversarial inputs."""
import random
import re

import pytest

from mathlm.data import (MinHashLSH, NearDuplicateIndex, dedup, dedup_exhaustive, filter_by_score, jaccard,
                         lcs_length, rouge_l, tokenize, word_ngrams)


def naive_rouge_l(a: str, b: str) -> float:
    """rouge_score's ROUGE-L F1, written independently: regex tokens, O(mn) DP table, 2PR/(P+R)."""
    ta = re.sub(r"[^a-z0-9]+", " ", a.lower()).split()
    tb = re.sub(r"[^a-z0-9]+", " ", b.lower()).split()
    table = [[0] * (len(tb) + 1) for _ in range(len(ta) + 1)]
    for i in range(len(ta)):
        for j in range(len(tb)):
            table[i + 1][j + 1] = table[i][j] + 1 if ta[i] == tb[j] else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(tb), lcs / len(ta)
    return 2 * p * r / (p + r)


def naive_dedup(texts, threshold, similarity):
    kept = []
    for i, t in enumerate(texts):
        if all(similarity(t, texts[j]) < threshold for j in kept):
            kept.append(i)
    return kept


def test_tokenize_like_rouge_score():
    assert tokenize("What is 3+4? It's 7!") == ["what", "is", "3", "4", "it", "s", "7"]
    assert tokenize("  ") == []


def test_rouge_l_hand_values():
    """"the cat sat on the mat" vs "the cat on the mat": LCS 5 of 6 and 5 tokens,
    F = 2 * 5 / (6 + 5) = 10/11. Reversed word order "b a" vs "a b": LCS 1, F = 1/2."""
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11, abs=1e-15)
    assert rouge_l("b a", "a b") == pytest.approx(0.5)
    assert rouge_l("", "anything") == 0.0 and rouge_l("x", "y") == 0.0
    assert rouge_l("Same TEXT.", "same text") == 1.0


def test_lcs_matches_dp_on_random_sequences():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        ta, tb = " ".join(a), " ".join(b)
        assert rouge_l(ta, tb) == naive_rouge_l(ta, tb)
        assert lcs_length(a, b) == lcs_length(b, a)


def test_jaccard_hand_values():
    """3-grams of "a b c d" are {abc, bcd}, of "a b c e" {abc, bce}: 1 shared of 3, J = 1/3.
    Unigrams: {a,b,c,d} vs {a,b,c,e}: 3 of 5."""
    assert jaccard("a b c d", "a b c e") == pytest.approx(1 / 3)
    assert jaccard("a b c d", "a b c e", n=1) == pytest.approx(3 / 5)
    assert word_ngrams("a b", 3) == {("a", "b")}
    assert jaccard("a b", "a b") == 1.0 and jaccard("", "") == 0.0


def _variants(rng, vocab, n_base, n_texts, max_len):
    base = [[rng.choice(vocab) for _ in range(rng.randint(1, max_len))] for _ in range(n_base)]
    texts = []
    for _ in range(n_texts):
        t = list(rng.choice(base))
        for _ in range(rng.randint(0, 4)):
            op = rng.random()
            if op < 0.3 and t:
                t.pop(rng.randrange(len(t)))
            elif op < 0.6:
                t.insert(rng.randrange(len(t) + 1), rng.choice(vocab))
            elif op < 0.8 and t:
                t[rng.randrange(len(t))] = rng.choice(vocab)
            else:
                rng.shuffle(t)  # same bag of words, different order: large overlap, small LCS
        texts.append(" ".join(t))
    return texts


THRESHOLDS = [0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]


@pytest.mark.parametrize("seed", range(6))
def test_rouge_l_dedup_equals_naive_scan_on_random_texts(seed):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(rng.choice([2, 4, 8, 30]))]
    texts = _variants(rng, vocab, n_base=12, n_texts=150, max_len=rng.choice([6, 20, 40]))
    for t in THRESHOLDS:
        expected = naive_dedup(texts, t, naive_rouge_l)
        assert dedup(texts, "rougeL", t) == expected, t
        assert dedup_exhaustive(texts, "rougeL", t) == expected, t


def test_rouge_l_dedup_on_adversarial_inputs():
    """Repeated tokens (multiset counts matter), permutations (bag equal, LCS small), empty
    texts, exact copies, and pairs sitting exactly on the threshold: LCS 7 of 10 + 10 tokens
    gives F = 0.7, LCS 3 of 4 + 4 gives 0.75."""
    texts = [
        "a a a a b", "a b b b b", "b a a a a", "a a a a", "a",
        "", "", "   ", "x y z", "z y x", "x y z",
        "1 2 3 4 5 6 7 8 9 10", "1 2 3 4 5 6 7 a b c", "10 9 8 7 6 5 4 3 2 1",
        "p q r s", "p q r t", "t p q r", "the the the the the the", "the",
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu",
        "alpha beta gamma delta epsilon zeta eta theta iota kappa",
    ]
    for t in THRESHOLDS + [0.7, 0.2, 0.1]:
        assert dedup(texts, "rougeL", t) == naive_dedup(texts, t, naive_rouge_l), t
    # on the threshold exactly: 0.7 keeps out the second text, 0.7000001 keeps it
    pair = ["1 2 3 4 5 6 7 8 9 10", "1 2 3 4 5 6 7 a b c"]
    assert naive_rouge_l(*pair) == pytest.approx(0.7)
    assert dedup(pair, "rougeL", naive_rouge_l(*pair)) == [0]
    assert dedup(pair, "rougeL", 0.7000001) == [0, 1]


def test_incremental_index_with_any_element_order_is_exact():
    """The global order only changes speed: reference frequencies from unrelated text, or
    none at all, give the same decisions."""
    rng = random.Random(3)
    texts = _variants(rng, [f"w{i}" for i in range(6)], 10, 120, 25)
    expected = naive_dedup(texts, 0.7, naive_rouge_l)
    for reference in ([], texts[::-1], ["w1 w1 w1 w2", "w5 w4"]):
        index = NearDuplicateIndex("rougeL", 0.7)
        index.frequencies = index.count_elements(reference)
        kept = [i for i, t in enumerate(texts) if index.add_if_new(t, key=i)]
        assert kept == expected


@pytest.mark.parametrize("n", [1, 2, 3])
def test_jaccard_dedup_equals_naive_scan(n):
    rng = random.Random(n)
    texts = _variants(rng, [f"w{i}" for i in range(8)], 10, 150, 20) + ["", "w1", "w1 w2"]
    for t in THRESHOLDS:
        assert dedup(texts, "jaccard", t, n=n) == naive_dedup(texts, t, lambda a, b: jaccard(a, b, n)), (n, t)


def test_minhash_dedup_is_precise_and_mostly_agrees():
    """MinHash only proposes candidates; the decision is exact Jaccard, so every dropped text
    really has J >= t with a kept one. Recall is probabilistic: compare with the exact scan."""
    rng = random.Random(7)
    texts = _variants(rng, [f"w{i}" for i in range(40)], 30, 300, 30)
    kept = dedup(texts, "minhash", 0.7)
    for i in set(range(len(texts))) - set(kept):
        assert any(jaccard(texts[i], texts[j]) >= 0.7 for j in kept if j < i)
    exact = dedup(texts, "jaccard", 0.7)
    assert len(set(kept) ^ set(exact)) <= 0.05 * len(texts)


def test_minhash_estimates_jaccard():
    lsh = MinHashLSH(num_perm=256, bands=64)
    a = " ".join(f"w{i}" for i in range(60))
    b = " ".join(f"w{i}" for i in range(30)) + " " + " ".join(f"v{i}" for i in range(30))
    sa, sb = lsh.signature(a), lsh.signature(b)
    assert abs(MinHashLSH.estimate(sa, sb) - jaccard(a, b)) < 0.12
    assert MinHashLSH.estimate(sa, sa) == 1.0
    lsh.add("a", signature=sa)
    assert lsh.query(a) == ["a"]
    with pytest.raises(ValueError, match=r"num_perm \(100\) must be divisible by bands \(32\)"):
        MinHashLSH(num_perm=100, bands=32)


def test_dedup_on_generated_questions_matches_exhaustive():
    from mathlm.data import DOMAINS

    rng = random.Random(0)
    names = list(DOMAINS)
    texts = [DOMAINS[names[i % len(names)]](rng, 1 + i % 3).question for i in range(600)]
    assert dedup(texts, "rougeL", 0.7) == dedup_exhaustive(texts, "rougeL", 0.7)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"method \('bleu'\) must be one of"):
        dedup(["a"], method="bleu")
    with pytest.raises(ValueError, match=r"threshold \(1.5\) must be in \(0, 1\]"):
        dedup(["a"], threshold=1.5)
    with pytest.raises(ValueError, match=r"threshold \(0\) must be in \(0, 1\]"):
        NearDuplicateIndex("rougeL", 0)


def test_filter_by_score():
    records = [{"id": str(i), "q": i} for i in range(6)]
    kept = filter_by_score(records, lambda r: r["q"] / 5, 0.6)
    assert [r["id"] for r in kept] == ["3", "4", "5"]
    scored = filter_by_score(records, lambda r: r["q"], 4, score_field="score")
    assert [(r["id"], r["score"]) for r in scored] == [("4", 4.0), ("5", 5.0)]
    assert "score" not in records[4]


@pytest.mark.parametrize("method", ["rougeL", "jaccard", "minhash"])
def test_always_keep_protects_an_existing_pool(method):
    """Texts 0..P-1 are an existing pool (kept even when they are near-copies of each other); a new
    text is dropped when it is close to any pool text or to a new text kept before it."""
    pool = ["what is 2 plus 3", "what is 2 plus 4", "what is 2 plus 5"]  # pairwise close
    new = ["what is 2 plus 3 today", "find the gcd of 12 and 18", "find the gcd of 12 and 18 now", "compute x"]
    kept = dedup(pool + new, method, 0.7, always_keep=len(pool))
    assert kept[:3] == [0, 1, 2]
    assert 3 not in kept  # close to "what is 2 plus 3"
    assert 4 in kept and 6 in kept
    if method != "minhash":  # the exact paths agree with the exhaustive reference
        assert kept == dedup_exhaustive(pool + new, method, 0.7, always_keep=len(pool))
        assert 5 not in kept  # close to text 4, kept before it
    with pytest.raises(ValueError, match=r"always_keep \(9\) must lie in \[0, 7\]"):
        dedup(pool + new, method, 0.7, always_keep=9)
