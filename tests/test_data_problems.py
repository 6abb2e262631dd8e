"""mathlm.data.load_problems: small files in each public layout, against values written by hand.

Each record below is shaped like a row of the public dataset (field names and conventions as
published); the expected question/answer/solution/domain were written by reading the record.
"""
import json

import pytest

from mathlm.data import LAYOUTS, JsonlError, load_problems
from mathlm.data.generate import generate_dataset

GSM8K = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
GSM8K_THOUSANDS = {"question": "How much in total?", "answer": "It is 1000+250 = <<1000+250=1250>>1,250.\n#### 1,250"}
MATH = {
    "problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?",
    "solution": "We have $\\frac{1}{2} + \\frac{1}{3} = \\frac{3}{6} + \\frac{2}{6} = \\boxed{\\frac{5}{6}}$.",
    "level": "Level 1", "type": "Prealgebra",
}
MATH_TWO_BOXES = {  # the last box counts; nested braces; \fbox as in a few MATH solutions
    "problem": "Find the vector.", "level": "Level 3", "type": "Precalculus",
    "solution": "First \\boxed{1}, then the answer is $\\fbox{\\begin{pmatrix} \\frac{1}{2} \\\\ 3 \\end{pmatrix}}$.",
}
MATH500 = {
    "problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
    "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ ... \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
    "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
    "unique_id": "test/precalculus/807.json",
}
NUMINA = {
    "source": "olympiads", "problem": "Compute $2^{10}$.",
    "solution": "Squaring repeatedly, $2^{10} = 1024$, so the answer is $\\boxed{1024}$.",
    "messages": [{"role": "user", "content": "Compute $2^{10}$."},
                 {"role": "assistant", "content": "... $\\boxed{1024}$."}],
}
NUMINA_PROOF = {"source": "olympiads", "problem": "Prove that 2 is prime.", "solution": "It has no divisor. QED",
                "messages": []}
CHAT = {"messages": [
    {"role": "system", "content": "Reason step by step."},
    {"role": "user", "content": "What is 6 times 7?"},
    {"role": "assistant", "content": "Maybe \\boxed{41}?"},
    {"role": "user", "content": "Check again."},
    {"role": "assistant", "content": "6 * 7 = 42, so \\boxed{42}."},
]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_answer_and_calculator_notes(tmp_path):
    p = load_problems(write_jsonl(tmp_path / "gsm8k.jsonl", [GSM8K, GSM8K_THOUSANDS]))
    assert p[0]["question"] == GSM8K["question"]
    assert p[0]["answer"] == "72" and p[1]["answer"] == "1250"  # "#### 1,250" -> "1250"
    assert p[0]["solution"] == ("Natalia sold 48/2 = 24 clips in May.\n"
                                "Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72")
    assert p[0]["domain"] == "gsm8k" and p[0]["layout"] == "gsm8k"


def test_math_last_box_nested_braces_and_fbox(tmp_path):
    p = load_problems(write_jsonl(tmp_path / "math.jsonl", [MATH, MATH_TWO_BOXES]))
    assert p[0]["answer"] == "\\frac{5}{6}" and p[0]["domain"] == "Prealgebra" and p[0]["level"] == "Level 1"
    assert p[0]["solution"] == MATH["solution"] and p[0]["question"] == MATH["problem"]
    assert p[1]["answer"] == "\\begin{pmatrix} \\frac{1}{2} \\\\ 3 \\end{pmatrix}"
    assert p[0]["layout"] == "math"


def test_math500_uses_its_answer_field(tmp_path):
    (p,) = load_problems(write_jsonl(tmp_path / "m500.jsonl", [MATH500]))
    assert p["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert (p["domain"], p["level"], p["id"], p["layout"]) == ("Precalculus", 2, "test/precalculus/807.json", "math500")


def test_numinamath_and_missing_answers(tmp_path):
    path = write_jsonl(tmp_path / "numina.jsonl", [NUMINA, NUMINA_PROOF])
    with pytest.raises(JsonlError, match=r"numina\.jsonl:2: no \\boxed\{\.\.\.\} answer"):
        load_problems(path)
    (p,) = load_problems(path, missing_answer="skip")
    assert (p["question"], p["answer"], p["domain"], p["layout"]) == ("Compute $2^{10}$.", "1024", "olympiads",
                                                                      "numinamath")


def test_chat_first_user_turn_last_assistant_turn(tmp_path):
    (p,) = load_problems(write_jsonl(tmp_path / "chat.jsonl", [CHAT]))
    assert p["question"] == "What is 6 times 7?"
    assert p["solution"] == "6 * 7 = 42, so \\boxed{42}." and p["answer"] == "42"
    assert p["domain"] == "chat" and p["layout"] == "chat"


def test_mathlm_records_keep_their_fields(tmp_path):
    records = generate_dataset(n_per_domain=1, seed=0, domains=["arithmetic"], verify=False)
    (p,) = load_problems(write_jsonl(tmp_path / "ours.jsonl", records))
    assert p["answer"] == records[0]["answer"] and p["question"] == records[0]["question"]
    assert p["solution"] == records[0]["cot"] and p["domain"] == "arithmetic" and p["layout"] == "mathlm"
    assert p["pot"] == records[0]["pot"]


def test_json_list_and_json_lines_under_a_json_name(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([GSM8K, GSM8K_THOUSANDS], indent=1))
    assert [p["answer"] for p in load_problems(listed)] == ["72", "1250"]
    lines = write_jsonl(tmp_path / "lines.json", [MATH, MATH])  # what datasets' to_json writes
    assert [p["answer"] for p in load_problems(lines)] == ["\\frac{5}{6}"] * 2


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "math500.parquet"
    pq.write_table(pa.Table.from_pylist([MATH500, {**MATH500, "answer": "7", "unique_id": "b"}]), path)
    assert [(p["answer"], p["id"]) for p in load_problems(path)] == [(MATH500["answer"], MATH500["unique_id"]),
                                                                     ("7", "b")]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([MATH500, {**MATH500, "answer": ""}]), bad)
    with pytest.raises(JsonlError, match=r"bad\.parquet:row 2: field 'answer' must be a non-empty str"):
        load_problems(bad)


def test_unknown_layout_names_fields_and_layouts(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "1+1?", "target": "2"}])
    with pytest.raises(ValueError, match=r"odd\.jsonl:1: unknown layout: fields found \['prompt', 'target'\]") as e:
        load_problems(path)
    for name in LAYOUTS:
        assert name in str(e.value)
    assert "question, answer" in str(e.value)  # the fields of gsm8k are listed


def test_broken_lines_name_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GSM8K) + "\n\n" + '{"question": "x", "answer": \n')
    with pytest.raises(JsonlError, match=r"broken\.jsonl:3: invalid JSON"):
        load_problems(path)
    path.write_text(json.dumps(GSM8K) + "\n" + json.dumps({"question": "no answer field"}) + "\n")
    with pytest.raises(JsonlError, match=r"broken\.jsonl:2: not a gsm8k record .*fields found \['question'\]"):
        load_problems(path)
    path.write_text(json.dumps({"question": "q", "answer": "no hashes"}) + "\n")
    with pytest.raises(JsonlError, match=r"broken\.jsonl:1: no '#### <answer>' line"):
        load_problems(path)
    listed = tmp_path / "broken.json"
    listed.write_text('[\n' + json.dumps(GSM8K) + ',\n{"question": 5, "answer": "#### 1"}\n]')
    with pytest.raises(JsonlError, match=r"broken\.json:3: field 'question' must be str, got int"):
        load_problems(listed)
    listed.write_text('[\n' + json.dumps(GSM8K) + ',\n{"question": \n')
    with pytest.raises(JsonlError, match=r"broken\.json:4: invalid JSON"):
        load_problems(listed)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported file type '\.csv'"):
        load_problems(tmp_path / "x.csv")
    with pytest.raises(ValueError, match=r"missing_answer \('drop'\) must be"):
        load_problems(tmp_path / "x.jsonl", missing_answer="drop")
