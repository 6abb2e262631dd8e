"""Evaluation metrics against values worked out by hand."""
import itertools
import math

import pytest

from mathlm.evaluation import grade_completions, majority_answer, pass_at_k, summarize, win_rate


def test_pass_at_k_hand_values():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct: 2/5
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(4, 0, 3) == 0.0
    assert pass_at_k(4, 2, 3) == 1.0  # any 3 of 4 include a correct one


def test_pass_at_k_equals_enumeration_over_subsets():
    """The estimator is the probability that a random k-subset holds a correct sample."""
    for n, c, k in [(6, 2, 3), (7, 3, 2), (5, 1, 4)]:
        samples = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        expected = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_errors():
    with pytest.raises(ValueError, match=r"k \(6\) must be within \[1, n=5\]"):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError, match=r"correct count c \(7\)"):
        pass_at_k(5, 7, 1)


def test_majority_clusters_equal_answers_and_breaks_ties_by_first_seen():
    assert majority_answer(["3", "1/2", "0.5", None, "3", "0.50"]) == "1/2"  # {1/2, 0.5, 0.50} = 3 > {3, 3} = 2
    assert majority_answer(["7", "8", "8", "7"]) == "7"  # 2-2 tie: first seen
    assert majority_answer([None, None]) is None


def test_summarize_by_domain_and_k():
    problems = [{"id": "a", "domain": "x", "answer": "4"}, {"id": "b", "domain": "y", "answer": "1/2"},
                {"id": "c", "domain": "y", "answer": "10"}]
    completions = [
        ["The answer is \\boxed{4}.", "The answer is \\boxed{5}.", "The answer is \\boxed{4}."],
        ["The answer is \\boxed{0.3}.", "The answer is \\boxed{0.5}.", "The answer is \\boxed{\\frac{1}{2}}."],
        ["no idea", "The answer is \\boxed{11}.", "The answer is \\boxed{12}."],
    ]
    graded = grade_completions(problems, completions)
    assert graded[1]["correct"] == [False, True, True]
    s = summarize(problems, graded, ks=(1, 3))
    assert s["accuracy"] == pytest.approx(1 / 3)  # only problem a's first sample is right
    assert s["pass@3"] == pytest.approx(2 / 3)
    assert s["maj@3"] == pytest.approx(2 / 3)  # a: 4 (2 votes); b: 1/2 (2 votes); c: none right
    assert s["by_domain"]["y"]["n"] == 2 and s["by_domain"]["y"]["accuracy"] == 0.0
    assert s["by_domain"]["y"]["pass@3"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"k \(4\) exceeds the samples of problem 'a' \(3\)"):
        summarize(problems, graded, ks=(4,))


def test_win_rate_correctness_first_then_judge():
    a = [True, True, False, False, True]
    b = [False, True, True, False, True]
    # problem 0: A wins; 1: both right, judge says A; 2: B wins; 3: both wrong, judge 0 -> tie;
    # 4: both right, judge says B.
    judge = {1: 0.3, 3: 0.0, 4: -0.2}.get
    r = win_rate(a, b, judge=lambda i: judge(i, 0.0))
    assert (r["win"], r["tie"], r["loss"]) == (2 / 5, 1 / 5, 2 / 5)
    assert r["win_rate"] == 2 / 5 and r["net"] == 0.0
    r = win_rate(a, b)  # no judge: same-correctness pairs are ties
    assert (r["win"], r["tie"], r["loss"]) == (1 / 5, 3 / 5, 1 / 5)
    with pytest.raises(ValueError, match="A has 2 results but B has 1"):
        win_rate([True, False], [True])


def test_summarize_samples_by_hand():
    """3 problems x 4 samples. p1 (A, level 1) gold 2: answers 2, 2, 3, none -> c=2, majority 2 (right);
    p2 (A, level 2) gold 5: 5, 6, 6, 6 -> c=1, majority 6 (wrong); p3 (B, no level) gold 7: four 7s -> c=4.
    pass@1 = mean(c/4) = (1/2 + 1/4 + 1)/3 = 7/12. pass@2 = 1 - C(4-c, 2)/C(4, 2): p1 1 - 1/6 = 5/6,
    p2 1 - 3/6 = 1/2, p3 1 -> (5/6 + 1/2 + 1)/3 = 7/9. pass@4 = 1 (each has a correct sample).
    maj@4 = 2/3. Domain A: pass@1 (1/2 + 1/4)/2 = 3/8, maj@4 1/2; B: 1, 1. Level "1": 1/2; "2": 1/4."""
    from mathlm.evaluation import summarize_samples

    boxed = "The answer is \\boxed{{{}}}.".format
    problems = [{"answer": "2", "domain": "A", "level": 1}, {"answer": "5", "domain": "A", "level": 2},
                {"answer": "7", "domain": "B"}]
    texts = [[boxed(2), boxed(2), boxed(3), "no idea"], [boxed(5), boxed(6), boxed(6), boxed(6)], [boxed(7)] * 4]
    report = summarize_samples(problems, grade_completions(problems, texts))
    assert report["problems"] == 3 and report["n"] == 4
    assert report["pass@1"] == pytest.approx(7 / 12) and report["pass@2"] == pytest.approx(7 / 9)
    assert report["pass@4"] == 1.0 and report["maj@4"] == pytest.approx(2 / 3)
    assert report["by_domain"]["A"]["pass@1"] == pytest.approx(3 / 8) and report["by_domain"]["A"]["maj@4"] == 0.5
    assert report["by_domain"]["B"]["pass@1"] == 1.0 and report["by_domain"]["B"]["problems"] == 1
    assert report["by_level"]["1"]["pass@1"] == 0.5 and report["by_level"]["2"]["pass@1"] == 0.25
    assert set(report["by_level"]) == {"1", "2"}
    with pytest.raises(ValueError, match=r"every problem needs the same number of samples, got \[1, 4\]"):
        summarize_samples(problems, grade_completions(problems, [texts[0], texts[1], texts[2][:1]]))


def test_pass_ks():
    from mathlm.evaluation import pass_ks
    assert pass_ks(1) == [1] and pass_ks(4) == [1, 2, 4] and pass_ks(6) == [1, 2, 4, 6] and pass_ks(8) == [1, 2, 4, 8]
