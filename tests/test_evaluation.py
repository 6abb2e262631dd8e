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
