"""RFT: distinct-path signatures on hand-written paths, selection and statistics worked out by hand on
scripted samplers, and one real ModelSampler run checked against a direct `generate` call and
against statistics recounted in the test."""
import pytest
import torch

from mathlm.config import ModelConfig
from mathlm.grading import extract_answer, math_equal
from mathlm.model import Transformer
from mathlm.rft import (ModelSampler, code_signature, path_format, path_signature,
                        prose_equations, rejection_sample)
from mathlm.sampling import generate
from mathlm.tokenizer import Tokenizer

# ------------------------------------------------------------------------------------------- signatures

PROGRAM = '''from fractions import Fraction
a, b, c = 5, 2, 27
# a * x + b = c
x = Fraction(c - b, a)
print(x)'''

PROGRAM_RENAMED = '''"""Solve the equation."""
from fractions import Fraction
slope, offset, rhs = 5, 2.0, 27   # the coefficients
solution = Fraction(rhs - offset, slope)  # isolate x

print(solution)'''


def test_same_program_with_renamed_variables_comments_and_float_constants_has_the_same_signature():
    assert code_signature(PROGRAM) == code_signature(PROGRAM_RENAMED)


def test_renaming_covers_functions_parameters_keywords_loops_and_import_aliases():
    a = '''import numpy as np
def area(w, h=1):
    return w * h
total = 0
for side in [1, 2]:
    total += area(side, h=side)
print(np.sqrt(total), f"{total} units")'''
    b = '''import numpy as npy
def f(u, v=1):
    """docstring"""
    return u * v
s = 0
for t in [1, 2]:
    s += f(t, v=t)
print(npy.sqrt(s), f"{s} items")'''
    assert code_signature(a) == code_signature(b)


def test_different_arithmetic_functions_or_constants_give_different_code_signatures():
    base = code_signature("x = 27 - 2\nprint(x // 5)")
    assert code_signature("x = 27 - 2\nprint(x / 5)") != base      # another operator
    assert code_signature("x = 27 - 3\nprint(x // 5)") != base      # another constant
    assert code_signature("import math\nprint(math.sqrt(4))") != code_signature("import math\nprint(math.floor(4))")
    assert code_signature("print(len([1]))") != code_signature("print(sum([1]))")  # unbound names are kept


def test_reordered_independent_steps_are_a_different_path():
    """Decided (module docstring): order counts, in code and in the equation list, as in Yuan et al."""
    assert code_signature("a = 3 * 4\nb = 5 * 6\nprint(a + b)") != code_signature("b = 5 * 6\na = 3 * 4\nprint(a + b)")
    assert path_signature("3 * 4 = 12 and 5 * 6 = 30, so 12 + 30 = 42.") != \
        path_signature("5 * 6 = 30 and 3 * 4 = 12, so 12 + 30 = 42.")


def test_unparsable_code_keeps_its_text_without_comments_and_spacing():
    a = code_signature("x = (3 +\n  print(x)  # cut off")
    assert a == "unparsed: x = (3 + / print(x)"
    assert code_signature("x = (3 +   \n\n print(x)") == a
    assert code_signature("x = (4 +\nprint(x)") != a


def test_degenerate_samples_keep_a_signature_instead_of_crashing():
    """A model stuck in a loop writes 6000-digit numbers (int() refuses > 4300 digits) or a sum
    nested deeper than the recursive AST visitors go: the signature falls back to text."""
    assert prose_equations("x = " + "1" * 6000 + " + 00.500")[0] == "x=" + "1" * 6000 + "+0.5"
    deep = "print(" + "+".join(["1"] * 5000) + ")"
    assert code_signature(deep) == "unparsed: " + deep
    assert code_signature(deep + "+1") != code_signature(deep)


@pytest.mark.parametrize("text,expected", [
    ("Add the 8 new pencils: 11 + 8 = 19.\nThe answer is \\boxed{19}.", ["11+8=19"]),
    ("Subtract 2 from both sides: 5x = 27 - 2 = 25.\nDivide by 5: x = 25 / 5 = 5.", ["5 x=27-2=25", "x=25/5=5"]),
    ("Each box holds 1,200 pens, so 3 boxes hold 3 × 1,200 = 3,600 pens.", ["3*1200=3600"]),
    ("It costs $2.50 each: 4 * $2.50 = $10.00 in total.", ["4*2.5=10"]),
    (r"We get $\frac{3}{4} \times 8 = 6$ and then \dfrac{6}{2} = 3.", ["(3)/(4)*8=6", "(6)/(2)=3"]),
    ("gcd(5, 4) = 1 (5 = 1 * 4 + 1; 4 = 4 * 1 + 0).", ["gcd(5,4)=1", "5=1*4+1", "4=4*1+0"]),
    ("F(1) = 4 * 1**2 + 2 = 6, so x^2 − 1 = 0.", ["F(1)=4*1^2+2=6", "x^2-1=0"]),
    ("The total is 30, and the answer is \\boxed{x = 3}.", []),
])
def test_prose_equations_on_hand_written_sentences(text, expected):
    assert prose_equations(text) == expected


def test_cot_paths_with_the_same_equations_in_other_words_and_formats_are_one_path():
    a = "First, 1,200 + 300 = 1,500 pens.\nThen 1500 / 3 = 500.\nThe answer is \\boxed{500}."
    b = "Together they have 1200+300=1500.00 pens; shared by 3 that is 1500 ÷ 3 = 500 each.\nThe answer is \\boxed{500}."
    c = "First, 1,200 + 300 = 1,500 pens.\nThen 1500 / 5 * 5 / 3 = 500.\nThe answer is \\boxed{500}."
    assert path_signature(a) == path_signature(b)
    assert path_signature(a) != path_signature(c)


def test_mixed_signature_is_the_code_plus_the_prose_equations():
    code = "```python\nprint(27 - 2)\n```\n```output\n25\n```\n"
    renamed = "```python\nv = 27 - 2  # move b\nprint(v)\n```\n```output\n25\n```\n"
    a = "Subtract 2 from both sides.\n" + code + "So 5x = 25 and x = 5.\nThe answer is \\boxed{5}."
    b = "Move the 2 over.\n" + code + "That leaves 5x = 25 so x = 5.\nThe answer is \\boxed{5}."
    c = "Subtract 2 from both sides.\n" + code + "So 5x = 25 and x = 25/5 = 5.\nThe answer is \\boxed{5}."
    d = "Subtract 2 from both sides.\n" + renamed + "So 5x = 25 and x = 5.\nThe answer is \\boxed{5}."
    assert path_signature(a) == path_signature(b)   # prose wording differs, equations and code agree
    assert path_signature(a) != path_signature(c)   # one more calculation in the prose
    assert path_signature(a) != path_signature(d)   # another program (an assignment more)
    assert path_signature(a).splitlines() == ["equations: 5 x=25 ; x=5", "code: " + code_signature("print(27 - 2)")]


def test_paths_without_equations_or_code_compare_their_normalized_text():
    assert path_signature("The answer is \\boxed{7}.") == path_signature("the  answer is\n\\boxed{7}.")
    assert path_signature("Count them: seven.\nThe answer is \\boxed{7}.") != path_signature("The answer is \\boxed{7}.")


def test_path_format():
    block = "```python\nprint(11 + 8)\n```\n```output\n19\n```\n"
    assert path_format("11 + 8 = 19.\nThe answer is \\boxed{19}.") == "cot"
    assert path_format(block + "The answer is \\boxed{19}.") == "pot"
    assert path_format("Add them.\n" + block + "The answer is \\boxed{19}.") == "mixed"


# ------------------------------------------------------------------------------------------- scripted samplers


class ScriptedSampler:
    """Returns the texts scripted per question (sample j of question q = script[q][j]) and records calls."""

    def __init__(self, script, name):
        self.script, self.name, self.calls = script, name, []

    def sample(self, questions, n, temperature, seed):
        self.calls.append({"questions": list(questions), "n": n, "temperature": temperature, "seed": seed})
        return [list(self.script[q][:n]) for q in questions]


BOX = "\nThe answer is \\boxed{{{}}}."
PROBLEMS = [
    {"id": "p0", "domain": "arithmetic", "difficulty": 1, "question": "What is 2 + 3?", "answer": "5",
     "mixed": "Add them: 2 + 3 = 5." + BOX.format(5)},
    {"id": "p1", "domain": "arithmetic", "difficulty": 2, "question": "What is 4 * 6?", "answer": "24", "mixed": ""},
    {"id": "p2", "domain": "arithmetic", "difficulty": 1, "question": "What is 10 - 7?", "answer": "3",
     "mixed": "```python\nprint(10 - 7)\n```\n```output\n3\n```" + BOX.format(3)},
]
A_P0 = ["2 + 3 = 5." + BOX.format(5),                       # A0 correct, equations [2+3=5]
        "Adding gives 2+3 = 5." + BOX.format(5),           # A1 correct, same signature as A0
        "2 + 3 = 6." + BOX.format(6)]                      # A2 wrong
A_P1 = ["4 * 6 = 20." + BOX.format(20), "4 * 6 = 46." + BOX.format(46),
        "4 * 6 = 24. The answer is 24."]                   # right answer, stated without \boxed
A_P2 = ["```python\na = 10\nb = 7\nprint(a - b)\n```\n```output\n3\n```" + BOX.format(3),   # A0 pot
        "```python\nx = 10  # start\ny = 7\nprint(x - y)\n```\n```output\n3\n```" + BOX.format(3),  # A1 = A0 renamed
        "10 - 7 = 3." + BOX.format(3)]                     # A2 cot
B_P0 = ["```python\nprint(2 + 3)\n```\n```output\n5\n```" + BOX.format(5),   # B0 pot
        "Add.\n```python\nprint(3 + 2)\n```\n```output\n5\n```" + BOX.format(5),  # B1 mixed
        "2 + 3 = 23." + BOX.format(23)]                    # B2 wrong
B_P1 = ["24 / 6 = 4." + BOX.format(4)] * 3
B_P2 = ["7 + 3 = 10, so 10 - 7 = 3." + BOX.format(3),      # B0 correct, new equations
        "We compute 10 - 7 = 3." + BOX.format(3),          # B1 correct, same equations as A2
        "10 - 7 = 17." + BOX.format(17)]                   # B2 wrong


def samplers():
    a = ScriptedSampler({p["question"]: s for p, s in zip(PROBLEMS, (A_P0, A_P1, A_P2))}, "A")
    b = ScriptedSampler({p["question"]: s for p, s in zip(PROBLEMS, (B_P0, B_P1, B_P2))}, "B")
    return a, b


def test_selection_keeps_correct_distinct_paths_interleaving_samplers():
    """By hand. Visit order per problem: A0, B0, A1, B1, A2, B2.
    p0: A0 keep, B0 keep (pot), A1 dup of A0, B1 keep (mixed), A2 and B2 wrong -> 3 kept, 1 dup.
    p1: nothing correct (A2 states its answer without \\boxed).
    p2: A0 keep (pot), B0 keep, A1 dup (renamed A0), B1 keep (10-7=3), A2 dup of B1, B2 wrong -> 3 kept, 2 dups."""
    a, b = samplers()
    result = rejection_sample([a, b], PROBLEMS, k=3, temperature=0.7, max_paths_per_problem=None, seed=5,
                              progress=False)
    assert [(r["id"], r["response"]) for r in result.records] == [
        ("p0", A_P0[0]), ("p0", B_P0[0]), ("p0", B_P0[1]), ("p2", A_P2[0]), ("p2", B_P2[0]), ("p2", B_P2[1])]
    assert [r["sampler"] for r in result.records] == ["A", "B", "B", "A", "B", "B"]
    assert [r["format"] for r in result.records] == ["cot", "pot", "mixed", "pot", "cot", "cot"]
    first = result.records[0]
    assert {k: first[k] for k in ("id", "domain", "difficulty", "question", "answer", "source")} == {
        "id": "p0", "domain": "arithmetic", "difficulty": 1, "question": "What is 2 + 3?", "answer": "5",
        "source": "rft"}
    assert first["correct_fraction"] == pytest.approx(4 / 6)
    # the samplers were called once each, with all questions, n=k, the temperature and their seeds
    assert a.calls == [{"questions": [p["question"] for p in PROBLEMS], "n": 3, "temperature": 0.7, "seed": 5}]
    assert b.calls[0]["seed"] == 5 + 1_000_003


def test_statistics_by_hand():
    """Correct: A 2+0+3 = 5, B 2+0+2 = 4 -> 9 of 18. Pooled n = 6 per problem with c = 4, 0, 5:
    pass@1 = (4/6 + 0 + 5/6) / 3 = 0.5; pass@3 = (1 + 0 + 1) / 3 (fewer than 3 wrong in p0 and p2);
    per sampler A (n = 3, c = 2, 0, 3): pass@1 = (2/3 + 1) / 3 = 5/9, pass@3 = 2/3."""
    result = rejection_sample(list(samplers()), PROBLEMS, k=3, max_paths_per_problem=None, progress=False)
    s = result.stats
    assert (s["problems"], s["samples"], s["correct"], s["correct_fraction"]) == (3, 18, 9, 0.5)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert (s["distinct_paths"], s["duplicates_dropped"], s["capped"], s["gold_paths"]) == (6, 3, 0, 0)
    assert s["distinct_paths_per_problem"] == pytest.approx(2.0)
    assert s["distinct_paths_per_covered_problem"] == pytest.approx(3.0)
    assert s["pass@1"] == pytest.approx(0.5)
    assert s["pass@3"] == pytest.approx(2 / 3) and s["pass@6"] == pytest.approx(2 / 3)
    assert s["correct_fraction_per_problem"] == pytest.approx([4 / 6, 0.0, 5 / 6])
    assert s["samplers"] == ["A", "B"]
    pa, pb = s["per_sampler"]["A"], s["per_sampler"]["B"]
    assert (pa["samples"], pa["correct"], pa["kept"], pa["distinct_correct"]) == (9, 5, 2, 3)
    assert (pb["samples"], pb["correct"], pb["kept"], pb["distinct_correct"]) == (9, 4, 4, 4)
    assert pa["pass@1"] == pytest.approx(5 / 9) and pa["pass@3"] == pytest.approx(2 / 3)
    assert pa["coverage"] == pytest.approx(2 / 3) and pb["correct_fraction"] == pytest.approx(4 / 9)


def test_cap_limits_kept_paths_and_capped_signatures_still_count_as_seen():
    """Cap 2. p0: A0, B0 kept; A1 dup; B1 capped. p2: A0, B0 kept; A1 dup; B1 capped; A2 has B1's
    signature -> dup (not capped twice)."""
    result = rejection_sample(list(samplers()), PROBLEMS, k=3, max_paths_per_problem=2, progress=False)
    assert [(r["id"], r["response"]) for r in result.records] == [
        ("p0", A_P0[0]), ("p0", B_P0[0]), ("p2", A_P2[0]), ("p2", B_P2[0])]
    s = result.stats
    assert (s["distinct_paths"], s["duplicates_dropped"], s["capped"]) == (4, 3, 2)


def test_every_sample_is_kept_graded_with_its_flags():
    result = rejection_sample(list(samplers()), PROBLEMS, k=3, max_paths_per_problem=None, progress=False)
    samples = result.samples
    assert len(samples) == 18
    # problem order, then sampler order, then sample order
    assert [(x["id"], x["sampler"], x["sample_index"]) for x in samples[:6]] == \
        [("p0", "A", 0), ("p0", "A", 1), ("p0", "A", 2), ("p0", "B", 0), ("p0", "B", 1), ("p0", "B", 2)]
    assert [x["correct"] for x in samples[:6]] == [True, True, False, True, True, False]
    assert [x["predicted"] for x in samples[:6]] == ["5", "5", "6", "5", "5", "23"]
    assert sum(x["kept"] for x in samples) == len(result.records)
    assert {x["response"] for x in samples if x["kept"]} == {r["response"] for r in result.records}
    assert all(x["correct"] for x in samples if x["kept"])
    p1 = [x for x in samples if x["id"] == "p1"]
    assert not any(x["correct"] for x in p1) and all(x["correct_fraction"] == 0 for x in p1)


def test_without_require_final_answer_grading_is_the_plain_grader():
    result = rejection_sample(list(samplers()), PROBLEMS, k=3, max_paths_per_problem=None,
                              require_final_answer=False, progress=False)
    assert result.stats["coverage"] == 1.0 and result.stats["correct"] == 10
    assert [r["response"] for r in result.records if r["id"] == "p1"] == [A_P1[2]]


def test_gold_paths_come_first_and_make_equal_samples_duplicates():
    """Gold p0 has A0's equations (2+3=5) -> A0 and A1 are duplicates: p0 keeps B0, B1 only.
    Gold p2 is B0-like pot code print(10 - 7), a signature no sample has. p1 has no gold ("")."""
    result = rejection_sample(list(samplers()), PROBLEMS, k=3, max_paths_per_problem=None, include_gold=True,
                              progress=False)
    got = [(r["id"], r["sampler"], r["source"]) for r in result.records]
    assert got == [("p0", "gold", "gold"), ("p0", "B", "rft"), ("p0", "B", "rft"),
                   ("p2", "gold", "gold"), ("p2", "A", "rft"), ("p2", "B", "rft"), ("p2", "B", "rft")]
    assert result.records[0]["response"] == PROBLEMS[0]["mixed"]
    assert (result.stats["gold_paths"], result.stats["distinct_paths"], result.stats["duplicates_dropped"]) == (2, 5, 4)
    with pytest.raises(ValueError, match=r"problem 0 \('q'\) has no string field 'pot'"):
        rejection_sample(list(samplers())[:1], [{"id": "q", "question": "What is 2 + 3?", "answer": "5"}], k=1,
                         include_gold=True, gold_key="pot", progress=False)


def test_a_single_sampler_object_is_accepted():
    a, _ = samplers()
    result = rejection_sample(a, PROBLEMS, k=2, progress=False)
    assert result.stats["samplers"] == ["A"] and result.stats["samples"] == 6


def test_bad_input_is_named():
    a, b = samplers()
    with pytest.raises(ValueError, match=r"k \(0\) must be an integer >= 1"):
        rejection_sample([a], PROBLEMS, k=0)
    with pytest.raises(ValueError, match=r"max_paths_per_problem \(0\) must be None or >= 1"):
        rejection_sample([a], PROBLEMS, k=1, max_paths_per_problem=0)
    with pytest.raises(ValueError, match=r"sampler names must be unique .* repeated: \['A'\]"):
        rejection_sample([a, a], PROBLEMS, k=1)
    with pytest.raises(ValueError, match=r"sampler 1 \(int\) has no sample"):
        rejection_sample([a, 3], PROBLEMS, k=1)
    with pytest.raises(ValueError, match=r"problem 1 \('x'\): field 'answer' must be a non-empty string"):
        rejection_sample([a], [PROBLEMS[0], {"id": "x", "question": "q?"}], k=1)
    with pytest.raises(ValueError, match="problem 0 must be a dict with 'question' and 'answer', got str"):
        rejection_sample([a], ["What is 2 + 3?"], k=1)
    with pytest.raises(ValueError, match="at least one problem"):
        rejection_sample([a], [], k=1)

    class Short:
        name = "short"

        def sample(self, questions, n, temperature, seed):
            return [["x"] * (n - 1) for _ in questions]

    with pytest.raises(ValueError, match=r"sampler 'short' returned .* for question 0: expected a list of k=2 strings"):
        rejection_sample([Short()], PROBLEMS, k=2, progress=False)


# ------------------------------------------------------------------------------------------- a real model


def test_model_sampler_end_to_end_returns_generate_samples_and_consistent_stats():
    problems = [{"id": f"q{i}", "domain": "arithmetic", "question": f"What is {a} + {b}?", "answer": str(a + b)}
                for i, (a, b) in enumerate([(2, 3), (4, 4), (10, 7), (1, 9), (6, 5)])]
    texts = [Tokenizer.format_prompt(p["question"]) + f"{p['question'][8:-1]} = {p['answer']}." + BOX.format(p["answer"])
             for p in problems] * 20
    tok = Tokenizer.train(texts, vocab_size=320)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                    hidden_dim=64, max_seq_len=96)).eval()
    tiny = ModelSampler(model, tok, max_new_tokens=12, name="tiny", batch_size=2)
    solutions = {p["question"]: [f"{p['question'][8:-1]} = {p['answer']}." + BOX.format(p["answer"]), "no idea"]
                 for p in problems[:2]}
    solutions.update({p["question"]: ["1 = 2." + BOX.format(-1)] * 2 for p in problems[2:]})
    scripted = ScriptedSampler(solutions, "scripted")
    result = rejection_sample([tiny, scripted], problems, k=2, temperature=1.0, seed=3, progress=False)

    # The ModelSampler's texts are generate's, batch by batch (2 questions each, seed + start).
    expected = []
    for start in range(0, len(problems), 2):
        prompts = [tok.encode_prompt(p["question"]) for p in problems[start:start + 2]]
        out = generate(model, prompts, 12, temperature=1.0, n=2, seed=3 + start, tokenizer=tok)
        expected += [[c.text for c in cs] for cs in out]
    got = [[x["response"] for x in result.samples if x["id"] == p["id"] and x["sampler"] == "tiny"] for p in problems]
    assert got == expected
    assert len({t for row in got for t in row}) > 1  # really sampled

    # Statistics recounted from the samples with the grader.
    samples, s = result.samples, result.stats
    correct = [x for x in samples if x["predicted"] is not None and math_equal(extract_answer(x["response"]), x["answer"])
               and "\\boxed{" in x["response"]]
    assert [x["correct"] for x in samples] == [x in correct for x in samples]
    assert s["correct"] == len(correct) and s["samples"] == len(samples) == 5 * 2 * 2
    kept_ids = {r["id"] for r in result.records}
    assert s["coverage"] == pytest.approx(len(kept_ids) / len(problems))
    assert s["coverage"] >= 0.4  # the scripted sampler solves q0 and q1
    assert s["distinct_paths_per_problem"] == pytest.approx(len(result.records) / len(problems))
    for p in problems:
        recs = [r for r in result.records if r["id"] == p["id"]]
        assert len({r["signature"] for r in recs}) == len(recs) <= 4
        mine = [x for x in samples if x["id"] == p["id"]]
        assert mine[0]["correct_fraction"] == pytest.approx(sum(x["correct"] for x in mine) / 4)
    for r in result.records:
        assert math_equal(extract_answer(r["response"]), r["answer"])
