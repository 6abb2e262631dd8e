"""JSONL I/O with validation, record validation, data cards, and the text-format helpers."""
import json

import pytest

from mathlm.data import (FINAL_ANSWER_TEMPLATE, JsonlError, canonical_answer, data_card, final_answer_line,
                         generate_dataset, output_block, parse_blocks, python_block, read_jsonl, read_records,
                         save_dataset, validate_record, write_jsonl)


@pytest.fixture(scope="module")
def records():
    return generate_dataset(["arithmetic", "matrices"], n_per_domain=6, seed=0, verify=False)


def test_round_trip(tmp_path, records):
    path = write_jsonl(tmp_path / "sub" / "d.jsonl", records)
    assert read_records(path) == records
    assert read_jsonl(path, required_fields=["id", "answer"]) == records
    assert path.read_text().count("\n") == len(records)


def _write(tmp_path, lines):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_errors_name_file_line_and_field(tmp_path, records):
    good = json.dumps(records[0])
    p = _write(tmp_path, [good, "", "{not json"])
    with pytest.raises(JsonlError, match=rf"^{p}:3: invalid JSON \(Expecting property name"):
        read_jsonl(p)
    p = _write(tmp_path, [good, "[1, 2]"])
    with pytest.raises(JsonlError, match=rf"^{p}:2: expected a JSON object, got list"):
        read_jsonl(p)
    missing = dict(records[1])
    del missing["answer"]
    p = _write(tmp_path, [good, good, json.dumps(missing)])
    with pytest.raises(JsonlError, match=rf"^{p}:3: missing field 'answer'"):
        read_jsonl(p, required_fields=["question", "answer"])
    p = _write(tmp_path, [json.dumps(dict(records[0], difficulty="2"))])
    with pytest.raises(JsonlError, match=rf"^{p}:1: field 'difficulty' must be int, got str \('2'\)"):
        read_records(p)
    p = _write(tmp_path, [json.dumps(dict(records[0], difficulty=True))])
    with pytest.raises(JsonlError, match=rf"^{p}:1: field 'difficulty' must be int, got bool"):
        read_records(p)
    p = _write(tmp_path, [good, json.dumps(dict(records[0], difficulty=7))])
    with pytest.raises(JsonlError, match=rf"^{p}:2: field 'difficulty' must be one of \(1, 2, 3\), got 7"):
        read_records(p)
    p = _write(tmp_path, [json.dumps(dict(records[0], colour="red"))])
    with pytest.raises(JsonlError, match=rf"^{p}:1: unknown field\(s\) \['colour'\]"):
        read_records(p)


def test_write_errors_name_the_record_and_field(tmp_path, records):
    with pytest.raises(ValueError, match=r"record 1 \(id='x'\): field 'answer' is not JSON-serializable \(set\)"):
        write_jsonl(tmp_path / "w.jsonl", [records[0], {"id": "x", "answer": {1}}])
    assert not (tmp_path / "w.jsonl").exists()  # nothing half-written
    with pytest.raises(ValueError, match="record 0 must be a dict, got list"):
        write_jsonl(tmp_path / "w.jsonl", [[1]])


def test_validate_record(records):
    validate_record(records[0])
    with pytest.raises(ValueError, match="field 'question' must not be empty"):
        validate_record(dict(records[0], question="  "))
    with pytest.raises(ValueError, match="a record needs at least one of the solutions"):
        validate_record(dict(records[0], cot="", pot="", mixed=""))
    with pytest.raises(ValueError, match="field 'score' must be int or float, got str"):
        validate_record(dict(records[0], score="high"))


def test_data_card_counts_and_histograms(tmp_path, records):
    """6 records per domain dealt over difficulties 1, 2, 3: two of each per domain."""
    paths = save_dataset(tmp_path / "train.jsonl", records)
    assert paths["card_json"].name == "train.card.json" and paths["card_md"].name == "train.card.md"
    card = json.loads(paths["card_json"].read_text())
    assert card["records"] == 12
    assert card["by_domain"] == {"arithmetic": 6, "matrices": 6}
    assert card["by_domain_difficulty"]["matrices"] == {"1": 2, "2": 2, "3": 2}
    q = card["lengths_chars"]["question"]
    lengths = sorted(len(r["question"]) for r in records)
    assert (q["min"], q["max"], sum(q["counts"])) == (lengths[0], lengths[-1], 12)
    # each length falls in the bin whose left edge is the largest not above it
    for length in lengths:
        k = max(i for i, e in enumerate(q["bins"]) if length >= e)
        assert q["counts"][k] >= 1
    md = paths["card_md"].read_text()
    assert "| matrices | 2 | 2 | 2 | 6 |" in md and "| total | 4 | 4 | 4 | 12 |" in md
    assert data_card(records) == card


def test_text_format_helpers():
    assert final_answer_line("3/4") == "The answer is \\boxed{3/4}." == FINAL_ANSWER_TEMPLATE.format("3/4")
    block = python_block("print(6 * 7)", "42\n")
    assert block == "```python\nprint(6 * 7)\n```\n```output\n42\n```\n"
    assert output_block("42\n") == "\n```output\n42\n```\n"
    text = "Multiply.\n" + block + "Then add.\n" + python_block("x = 1\nprint(x + 1)", "2") + final_answer_line("2")
    assert parse_blocks(text) == [("print(6 * 7)", "42"), ("x = 1\nprint(x + 1)", "2")]
    assert parse_blocks("```python\nprint(1)\n```") == [("print(1)", None)]  # no output yet
    from fractions import Fraction

    assert canonical_answer(Fraction(-6, 8)) == "-3/4"
    assert canonical_answer((2, Fraction(1, 2))) == "(2, 1/2)"
    assert canonical_answer([[1, Fraction(-1, 2)], [0, 1]]) == "[[1, -1/2], [0, 1]]"
    with pytest.raises(TypeError, match=r"answer value 0.5 must be an int, Fraction, tuple or list"):
        canonical_answer(0.5)
