"""Math data: generators with CoT, PoT and mixed solutions, self-instruct, filtering, splits,
and a loader for public datasets (GSM8K, MATH, MATH-500, NuminaMath, chat messages).

    from mathlm.data import generate_dataset, split_dataset, save_dataset
    records = generate_dataset(n_per_domain=200, seed=0)          # verified in the sandbox
    parts = split_dataset(records, {"labelled": 0.1, "answer_only_pool": 0.7, "val": 0.1, "test": 0.1})
    save_dataset("data/labelled.jsonl", parts["labelled"])         # + labelled.card.{json,md}

The record format, the solution format and the filters are described in docs/data.md.
"""
from .card import data_card, render_card, save_dataset
from .dedup import METHODS, dedup, dedup_exhaustive, filter_by_score
from .format import (CODE_CLOSE, CODE_OPEN, FINAL_ANSWER_PREFIX, FINAL_ANSWER_TEMPLATE, OUTPUT_CLOSE, OUTPUT_OPEN,
                     canonical_answer, code_block, final_answer_line, output_block, parse_blocks, python_block)
from .generate import DOMAINS, generate_dataset, generate_problem, problem_signature
from .jsonl import JsonlError, read_jsonl, read_records, write_jsonl
from .minhash import MinHashLSH
from .mutate import MUTATIONS, mutate, mutate_records
from .prefix_index import NearDuplicateIndex
from .problems import LAYOUTS, detect_layout, load_problems
from .records import FIELD_TYPES, OPTIONAL_FIELDS, RECORD_FIELDS, make_record, record_id, validate_record
from .self_instruct import self_instruct
from .similarity import jaccard, lcs_length, normalize_question, rouge_l, tokenize, word_ngrams
from .split import split_dataset, train_test_split
from .verify import verify_records

__all__ = [
    "data_card", "render_card", "save_dataset", "METHODS", "dedup", "dedup_exhaustive", "filter_by_score",
    "CODE_CLOSE", "CODE_OPEN", "FINAL_ANSWER_PREFIX", "FINAL_ANSWER_TEMPLATE", "OUTPUT_CLOSE", "OUTPUT_OPEN",
    "canonical_answer", "code_block", "final_answer_line", "output_block", "parse_blocks", "python_block",
    "DOMAINS", "generate_dataset", "generate_problem", "problem_signature", "JsonlError", "read_jsonl",
    "read_records", "write_jsonl", "MinHashLSH", "MUTATIONS", "mutate", "mutate_records", "NearDuplicateIndex",
    "LAYOUTS", "detect_layout", "load_problems",
    "FIELD_TYPES", "OPTIONAL_FIELDS", "RECORD_FIELDS", "make_record", "record_id", "validate_record",
    "self_instruct", "jaccard", "lcs_length", "normalize_question", "rouge_l", "tokenize", "word_ngrams",
    "split_dataset", "train_test_split", "verify_records",
]
