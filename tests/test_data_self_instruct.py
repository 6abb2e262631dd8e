"""Self-instruct with a scripted "model", and the programmatic mutator."""
import random
import re

import pytest

from mathlm.data import (CODE_OPEN, generate_dataset, mutate, mutate_records, normalize_question, parse_blocks,
                         rouge_l, self_instruct, verify_records)
from mathlm.data.self_instruct import extract_program, solve_prompt, task_prompt

pytest.importorskip("mathlm.sandbox")


class ScriptedModel:
    """Proposes the listed problems in turn; solves "a op b" problems with programs, lying or
    crashing on the problems marked so."""

    def __init__(self, problems, lies=(), crashes=()):
        self.problems, self.lies, self.crashes = list(problems), set(lies), set(crashes)
        self.task_prompts, self.solve_prompts = [], []
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        if prompt.endswith("\nProblem:"):
            self.task_prompts.append(prompt)
            return " " + self.problems.pop(0) + "\nProblem: something else"
        assert prompt.endswith(CODE_OPEN)
        self.solve_prompts.append(prompt)
        self.calls += 1
        question = prompt.rsplit("Question: ", 1)[1]
        a, op, b = re.search(r"(\d+) (plus|times) (\d+)", question).groups()
        expr = f"{a} {'+' if op == 'plus' else '*'} {b}"
        if question.split("\n")[0] in self.crashes:
            return "print(1 / 0)\n```"
        if question.split("\n")[0] in self.lies and self.calls % 2 == 0:
            expr += " + 1"
        return f"print({expr})\n```\nmore text"


def test_self_instruct_keeps_consistent_new_problems():
    seeds = generate_dataset(["arithmetic"], n_per_domain=6, seed=0, verify=False)
    near_copy = seeds[0]["question"].replace("?", "!")
    problems = ["What is 12 plus 30?", near_copy, "Compute 7 times 8 for the shop.", "What is 5 plus 9 in the box?",
                "Find 3 times 4 again, please.", "What is 12 plus 30?"]
    model = ScriptedModel(problems, lies={"What is 5 plus 9 in the box?"}, crashes={"Find 3 times 4 again, please."})
    kept = self_instruct(seeds, model, rounds=2, per_round=3, k=3, n_solutions=3, seed=0)
    assert [r["question"] for r in kept] == ["What is 12 plus 30?", "Compute 7 times 8 for the shop."]
    assert [r["answer"] for r in kept] == ["42", "56"]
    assert all(r["source"] == "self_instruct" and r["domain"] == "arithmetic" and r["cot"] == "" for r in kept)
    assert verify_records(kept) == [None, None]
    # every task prompt shows k = 3 examples; solve prompts are few-shot with seed programs
    assert all(p.count("Problem: ") == 3 for p in model.task_prompts)
    assert all(p.count("```python") == 3 + 1 for p in model.solve_prompts)
    # the near copy never reached the solver
    assert not any(near_copy in p for p in model.solve_prompts)


def test_self_instruct_batches_a_round_through_a_batch_method():
    """A callable with .batch gets each round's prompts in two calls (tasks, then solutions) and
    the result equals the prompt-by-prompt run."""
    seeds = generate_dataset(["arithmetic"], n_per_domain=6, seed=0, verify=False)
    problems = ["What is 12 plus 30?", "Compute 7 times 8 for the shop.", "What is 5 plus 9 in the box?"]

    class Batched(ScriptedModel):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.batch_sizes = []

        def batch(self, prompts):
            self.batch_sizes.append(len(prompts))
            return [self(p) for p in prompts]

    batched = Batched(list(problems))
    kept = self_instruct(seeds, batched, rounds=1, per_round=3, k=3, n_solutions=2, seed=0)
    plain = self_instruct(seeds, ScriptedModel(list(problems)), rounds=1, per_round=3, k=3, n_solutions=2, seed=0)
    assert [r["question"] for r in kept] == [r["question"] for r in plain] == problems
    assert batched.batch_sizes == [3, 3 * 2]  # one call for the tasks, one for every solution


def test_self_instruct_majority_agreement():
    seeds = ["What is 1 plus 1?", "What is 2 times 3?"]
    model = ScriptedModel(["What is 20 plus 22 here?"], lies={"What is 20 plus 22 here?"})
    # 4 programs, every second one lies: 2 of 4 agree, enough for 0.5 but not for 1.0
    kept = self_instruct(seeds, model, rounds=1, per_round=1, n_solutions=4, min_agreement=0.5, domain="toy")
    assert [(r["answer"], r["domain"]) for r in kept] == [("42", "toy")]
    model = ScriptedModel(["What is 20 plus 22 here?"], lies={"What is 20 plus 22 here?"})
    assert self_instruct(seeds, model, rounds=1, per_round=1, n_solutions=4) == []


def test_prompt_helpers():
    p = task_prompt(["A?", "B?"])
    assert p.endswith("Problem: A?\nProblem: B?\nProblem:")
    s = solve_prompt("Q?", [("E?", "print(1)")])
    assert s.endswith("Question: E?\n```python\nprint(1)\n```\n\nQuestion: Q?\n```python\n")
    assert extract_program("print(2)\n```\nThe answer") == "print(2)"
    assert extract_program("```python\nprint(3)\n```\n```output\n3\n```") == "print(3)"
    assert extract_program("```") is None


@pytest.fixture(scope="module")
def records():
    return generate_dataset(n_per_domain=12, seed=4, verify=False)


def test_mutations_are_verified_and_new(records):
    muts = mutate_records(records, 40, seed=0)
    assert len(muts) >= 30
    assert verify_records(muts) == [None] * len(muts)
    originals = {normalize_question(r["question"]) for r in records}
    assert not originals & {normalize_question(m["question"]) for m in muts}
    by_id = {r["id"]: r for r in records}
    for m in muts:
        assert m["source"] == "mutation" and m["parent"] in by_id


def test_number_mutation_changes_question_and_program_together(records):
    """For "have + new" the new answer is the sum of the new numbers in the question."""
    from mathlm.data import generate_problem

    rng = random.Random(0)
    rec = next(r for r in (generate_problem("arithmetic", random.Random(s), 1) for s in range(500))
               if "new = " in r["pot"])
    for _ in range(10):
        d = mutate(rec, rng, "numbers")
        a, b = map(int, re.findall(r"\d+", d["question"])[:2])
        assert d["question"] != rec["question"]
        assert f"have = {a}" in d["program"] and f"new = {b}" in d["program"]


def test_context_mutation_keeps_answer_and_solutions_consistent(records):
    rng = random.Random(1)
    rec = next(r for r in records if r["domain"] == "arithmetic")
    d = mutate(rec, rng, "context")
    assert d["answer"] == rec["answer"] and d["question"] != rec["question"]
    assert rouge_l(d["cot"], rec["cot"]) < 1.0  # the names moved into the solutions too
    assert parse_blocks(d["mixed"]) == parse_blocks(rec["mixed"])  # the code is untouched


def test_compose_mutation_adds_a_written_out_step(records):
    rng = random.Random(2)
    rec = next(r for r in records if r["domain"] == "number_theory")
    d = mutate(rec, rng, "compose")
    step = re.search(r"Then (add|multiply|subtract) .*?(\d+)", d["question"])
    k = int(step.group(2))
    old, new = int(rec["answer"]), int(d["answer"])
    assert new == {"add": old + k, "multiply": old * k, "subtract": old - k}[step.group(1)]
    assert d["cot"].endswith(f" = {new}.\nThe answer is \\boxed{{{new}}}.")
    assert len(parse_blocks(d["mixed"])) == len(parse_blocks(rec["mixed"])) + 1


def test_numbers_mutation_rejects_inexact_division():
    """An equal share: with new numbers 'total // friends' must still divide exactly."""
    rec = next(r for r in generate_dataset(["arithmetic"], n_per_domain=30, seed=9, verify=False)
               if "//" in parse_blocks(r["pot"])[0][0] and "friends = " in parse_blocks(r["pot"])[0][0])
    muts = mutate_records([rec], 10, seed=0, kinds=["numbers"])
    for m in muts:
        assert "." not in m["answer"]
        assert verify_records([m]) == [None]


def test_unknown_mutation_kind():
    with pytest.raises(ValueError, match=r"kind \('rhyme'\) must be one of"):
        mutate({}, random.Random(0), "rhyme")
