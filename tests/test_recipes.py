"""Every recipe runs end to end at a minimal size, in-process, on the CPU: the outputs it promises
exist, load back, and its summary is consistent with what it was asked to do."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from mathlm import load_hf_checkpoint
from mathlm.data import generate_dataset, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n_per_domain", "2", "--batch_size", "2", "--seq_len", "256", "--log_every", "1", "--keep_last", "1",
        "--vocab_size", "400"]


def recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records():
    return generate_dataset(n_per_domain=2, seed=0)


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    summary = recipe("sft").main([*TINY, "--max_steps", "3", "--out", str(out)])
    assert summary["steps"] == 3 and summary["format"] == "mixed"
    return out / "final"


def test_sft_writes_a_loadable_model(sft_folder):
    model = load_hf_checkpoint(sft_folder)
    assert model.config.vocab_size <= 1024
    assert (sft_folder / "tokenizer.model").is_file()
    transformers = pytest.importorskip("transformers")  # mathlm's own tokenizer loads there too (tokenizer.json)
    from mathlm import Tokenizer
    text = "Question: What is 12 + 30?\nAnswer:\n```python\nprint(12 + 30)\n```"
    assert transformers.AutoTokenizer.from_pretrained(sft_folder).encode(text) == Tokenizer.from_pretrained(sft_folder).encode(text)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 5, 9]]))).all()


def test_sft_with_validation_keeps_the_best_step(tmp_path):
    summary = recipe("sft").main([*TINY, "--n_per_domain", "4", "--max_steps", "2", "--val_fraction", "0.25",
                                  "--eval_every", "1", "--format", "pot", "--out", str(tmp_path)])
    assert summary["best_step"] in (1, 2) and 0.0 <= summary["best_val_accuracy"] <= 1.0


def test_pretrain_counts_every_token(tmp_path):
    summary = recipe("pretrain").main([*TINY, "--max_steps", "2", "--out", str(tmp_path)])
    assert summary["steps"] == 2 and summary["tokens_seen"] == 2 * 2 * 256
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_rft_from_a_checkpoint_with_gold(sft_folder, records, tmp_path):
    write_jsonl(tmp_path / "pool.jsonl", [{"question": r["question"], "answer": r["answer"]} for r in records[:6]])
    write_jsonl(tmp_path / "gold.jsonl", records[6:12])
    summary = recipe("rft").main(["--checkpoint", str(sft_folder), "--data", str(tmp_path / "pool.jsonl"),
                                  "--gold", str(tmp_path / "gold.jsonl"), "--k", "2", "--max_new_tokens", "24",
                                  "--max_steps", "2", "--batch_size", "2", "--seq_len", "256",
                                  "--out", str(tmp_path / "rft")])
    stats = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
    kept = [json.loads(line) for line in (tmp_path / "rft" / "rft_records.jsonl").read_text().splitlines()]
    assert summary["records"] == len(kept) + 6  # the RFT paths plus the six gold solutions
    assert stats["coverage"] == len({r["id"] for r in kept}) / 6
    assert (tmp_path / "rft" / "final" / "config.json").is_file()


def test_dpo_on_given_pairs(sft_folder, records, tmp_path):
    pairs = [{"question": a["question"], "chosen": a["mixed"], "rejected": b["mixed"]}
             for a, b in zip(records[:8], records[8:16])]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    summary = recipe("dpo").main(["--checkpoint", str(sft_folder), "--pairs", str(tmp_path / "pairs.jsonl"),
                                  "--max_steps", "3", "--batch_size", "4", "--lr", "1e-3", "--out", str(tmp_path / "dpo")])
    assert summary["pairs"] == 8 and summary["steps"] == 3
    assert summary["reward_margin_first"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert summary["reward_margin_last"] > summary["reward_margin_first"]


def test_reward_model_synthetic_pairs_are_reference_vs_corrupted(records):
    pairs = recipe("reward_model").synthetic_pairs(records, "mixed", seed=0)
    by_question = {r["question"]: r for r in records}
    assert len(pairs) >= len(records) // 2
    for p in pairs:
        assert p["chosen"] == by_question[p["question"]]["mixed"] and p["rejected"] != p["chosen"]
        assert p["corruption"] in ("final_answer", "copied_number")


def test_reward_model_learns_given_pairs_and_loads_back(records, tmp_path):
    from mathlm import RewardModel
    # Learnable pairs: a worked solution against a bare guess of another problem's answer.
    pairs = [{"question": a["question"], "chosen": a["mixed"], "rejected": f"The answer is \\boxed{{{b['answer']}}}."}
             for a, b in zip(records, records[1:] + records[:1])]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    summary = recipe("reward_model").main([*TINY, "--pairs", str(tmp_path / "pairs.jsonl"), "--max_steps", "40",
                                           "--batch_size", "8", "--lr", "3e-3", "--held_out", "0.3",
                                           "--out", str(tmp_path)])
    held = [json.loads(line) for line in (tmp_path / "pairs_held_out.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (tmp_path / "pairs_train.jsonl").read_text().splitlines()]
    assert summary["pairs_held_out"] == len(held) > 0 and summary["steps"] == 40
    assert len(held) + len(train) == len(pairs)
    assert not {p["question"] for p in held} & {p["question"] for p in train}  # split by question
    # The saved model reproduces the summary's accuracy on the held-out pairs, scored independently.
    rm = RewardModel.load(tmp_path / "final")
    max_len = int(TINY[TINY.index("--seq_len") + 1])  # the recipe scores at its --seq_len
    chosen = rm.score([(p["question"], p["chosen"]) for p in held], max_len=max_len)
    rejected = rm.score([(p["question"], p["rejected"]) for p in held], max_len=max_len)
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)) / len(held)
    assert wins == pytest.approx(summary["held_out_accuracy"])
    assert summary["held_out_margin"] > 0


def test_critique_beats_the_majority_baseline_on_held_out_questions(tmp_path):
    from mathlm.critique import CritiqueScorer
    summary = recipe("critique").main([*TINY, "--n_per_domain", "8", "--max_steps", "60", "--lr", "3e-3",
                                       "--out", str(tmp_path)])
    held = [json.loads(line) for line in (tmp_path / "held_out.jsonl").read_text().splitlines()]
    assert summary["held_out_examples"] == len(held) and {e["task"] for e in held} == {"question", "solution"}
    # Agreement recomputed from the saved model against the labels.
    scorer = CritiqueScorer.load(tmp_path / "final", max_len=256)
    questions = [e for e in held if e["task"] == "question"]
    probs = scorer.score_questions([e["question"] for e in questions])
    agreement = sum((p >= 0.5) == bool(e["label"]) for p, e in zip(probs, questions)) / len(questions)
    assert agreement == pytest.approx(summary["question"]["agreement"])
    assert summary["question"]["agreement"] > summary["question"]["majority_baseline"] + 0.1


def test_pipeline_smoke_writes_every_stage_and_the_report(tmp_path):
    results = recipe("pipeline").main(["--smoke", "--no-docs", "--threads", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["stages"].keys() >= {"cot_only", "pot_only", "sft", "sft_continued", "rft", "dpo", "grpo"}
    for name, stage in saved["stages"].items():
        assert 0.0 <= stage["accuracy"] <= 1.0 and stage["by_domain"], name
    rft = saved["stages"]["rft"]
    assert 0.0 <= rft["coverage"] <= 1.0 and rft["distinct_paths_per_problem"] >= 0
    assert {"reward_first", "reward_last"} <= saved["stages"]["grpo"].keys()
    w = saved["stages"]["dpo"]["win_rate_vs_rft"]
    assert w["win"] + w["tie"] + w["loss"] == pytest.approx(1.0) and w["n"] == saved["runs"][0]["data"]["test"]
    assert {"agreement", "f1"} <= saved["critique"].keys() and saved["seeds"] == [0]
    assert results["seconds"] > 0 and (tmp_path / "results.md").is_file()
    assert list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_rl_recipes_run_and_report_rewards(algo, sft_folder, tmp_path):
    summary = recipe("rl").main(["--rl.algorithm", algo, "--checkpoint", str(sft_folder), "--n_per_domain", "1",
                                 "--rl_steps", "2",
                                 "--rl.prompts_per_step", "2", "--rl.group_size", "2", "--rl.max_new_tokens", "16",
                                 "--rl.minibatch_size", "4", "--out", str(tmp_path)])
    history = json.loads((tmp_path / "rl_history.json").read_text())
    assert summary["rl_steps"] == len(history) == 2
    assert all(("value_loss" in step) == (algo == "ppo") for step in history)  # only PPO trains a value model
    assert (tmp_path / "value" / "metrics.jsonl").is_file() == (algo == "ppo")  # its own out_dir, under --out
    assert summary["reward_first"] == history[0]["reward_mean"] and 0.0 <= summary["reward_last"] <= 1.0


def test_dpo_7b_dry_run_plan():
    result = recipe("dpo_7b").main(["--dry-run", "--gpus", "8"])
    assert result["params"] == 6_738_415_616
    assert result["tokens_per_step"] == 2 * 1024 * 8 * 8  # 2 sides x max_len x accumulation x GPUs
    mem = result["memory_gib"]
    # 16 bytes per parameter (fp32 weights, grads, two Adam moments) sharded over 8 GPUs.
    sharded = sum(v for k, v in mem.items() if "sharded" in k)
    assert sharded == pytest.approx(16 * 6_738_415_616 / 8 / 1024 ** 3)
    assert mem["total"] < 80


def test_dpo_7b_says_what_it_needs_without_gpus():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="on GPUs: launch it with torchrun"):
        recipe("dpo_7b").main([])


def test_dpo_7b_tiny_runs_the_same_code_path(tmp_path):
    summary = recipe("dpo_7b").main(["--preset", "tiny", "--max_steps", "2", "--grad_accum", "1", "--max_len", "256",
                                     "--save_every", "0", "--out", str(tmp_path)])
    assert summary["steps"] == 2 and summary["world_size"] == 1 and summary["pairs"] > 0
    assert load_hf_checkpoint(tmp_path / "final").embed_tokens.weight.dtype == torch.bfloat16


def test_recipes_have_docstrings_with_both_launch_commands():
    for path in sorted((ROOT / "recipes").glob("*.py")):
        text = path.read_text()
        doc = text.split('"""')[1]
        assert f"python recipes/{path.name}" in doc, path.name
        if path.name != "pipeline.py":
            assert "torchrun" in doc, path.name
        assert "def main(" in text, path.name


# ---------------------------------------------------------------- real checkpoints and dataset layouts

GSM8K = [("Natalia sold clips to {a} of her friends in April, and then she sold half as many clips in May. "
          "How many clips did Natalia sell altogether?", "Natalia sold {a}/2 = <<{a}/2={h}>>{h} clips in May.\n"
          "Natalia sold {a}+{h} = <<{a}+{h}={t}>>{t} clips altogether.\n#### {t}")]


def gsm8k_rows(n):
    rows = []
    for i in range(n):
        a = 2 * (i + 20)
        q, s = GSM8K[0]
        rows.append({"question": q.format(a=a), "answer": s.format(a=a, h=a // 2, t=a + a // 2)})
    return rows


def math_rows(n):
    return [{"problem": f"What is ${i} + {i}$?", "solution": f"We add: ${i} + {i} = \\boxed{{{2 * i}}}$.",
             "level": f"Level {1 + i % 3}", "type": ["Algebra", "Prealgebra"][i % 2]} for i in range(n)]


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    from hf_tokenizers import write_tiny_qwen2_checkpoint
    return write_tiny_qwen2_checkpoint(tmp_path_factory.mktemp("qwen"))


def assert_complete_hf_folder(folder, tokenizer_from):
    """config, safetensors, tokenizer files and generation_config: transformers loads each, and the
    tokenizer and generation settings are the starting checkpoint's."""
    import transformers
    from mathlm import Tokenizer

    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    gen = transformers.GenerationConfig.from_pretrained(folder)
    start = Tokenizer.from_pretrained(tokenizer_from)
    text = "<|im_start|>user\nWhat is 2+2?<|im_end|>"
    assert hf_tok.encode(text) == start.encode(text) and len(hf_tok) == len(start)
    assert gen.eos_token_id == list(start.eos_ids) and model.config.vocab_size >= len(hf_tok)


def test_sft_on_gsm8k_layout_with_the_chat_template(qwen_folder, tmp_path):
    """GSM8K records train on their own solution (calculator notes removed), prompted through the
    checkpoint's chat template; <out>/final is a complete HF folder."""
    write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(6))
    summary = recipe("sft").main(["--checkpoint", str(qwen_folder), "--data", str(tmp_path / "train.jsonl"),
                                  "--max_steps", "2", "--batch_size", "2", "--seq_len", "256", "--lr", "1e-4",
                                  "--log_every", "1", "--out", str(tmp_path / "sft")])
    assert summary["format"] == "solution" and summary["prompt_format"] == "chat" and summary["examples"] == 6
    assert_complete_hf_folder(tmp_path / "sft" / "final", qwen_folder)


def test_sft_format_and_prompt_errors(qwen_folder, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(2))
    with pytest.raises(ValueError, match=r"train.jsonl: problem 0 \(gsm8k layout\) has no field\(s\) \['mixed'\]"):
        recipe("sft").main(["--checkpoint", str(qwen_folder), "--data", str(tmp_path / "train.jsonl"),
                            "--format", "mixed", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        recipe("sft").main(["--prompt_format", "chatml"])


def test_eval_on_math_layout_writes_consistent_reports(qwen_folder, tmp_path):
    """eval.json's figures recomputed from samples.jsonl: pass@1 = mean verdict over all samples,
    pass@n / maj@n from each problem's samples, by_level / by_domain from MATH's fields."""
    from mathlm.grading import extract_answer, math_equal
    from mathlm.evaluation import majority_answer

    write_jsonl(tmp_path / "math.jsonl", math_rows(5))
    report = recipe("eval").main(["--checkpoint", str(qwen_folder), "--data", str(tmp_path / "math.jsonl"), "--n", "3",
                                  "--temperature", "1.0", "--max_new_tokens", "12", "--batch_size", "2",
                                  "--out", str(tmp_path / "eval")])
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert saved["problems"] == 5 and saved["n"] == 3 and len(rows) == 15
    assert saved["settings"]["prompt_format"] == "chat" and saved["settings"]["system"].startswith("Please reason")
    for r in rows:
        assert r["extracted"] == extract_answer(r["completion"])
        assert r["correct"] == bool(math_equal(r["extracted"], r["answer"]))
    assert saved["pass@1"] == pytest.approx(sum(r["correct"] for r in rows) / 15)
    per = [[r for r in rows if r["problem"] == i] for i in range(5)]
    assert saved["pass@3"] == pytest.approx(sum(any(r["correct"] for r in p) for p in per) / 5)
    assert saved["maj@3"] == pytest.approx(sum(bool(math_equal(majority_answer([r["extracted"] for r in p]),
                                                               p[0]["answer"])) for p in per) / 5)
    assert set(saved["by_level"]) == {"Level 1", "Level 2", "Level 3"}
    assert set(saved["by_domain"]) == {"Algebra", "Prealgebra"} and saved["by_domain"]["Algebra"]["problems"] == 3
    assert report["pass@1"] == saved["pass@1"]


def test_eval_greedy_equals_transformers_generate(qwen_folder, tmp_path):
    """The eval recipe's greedy completions are HF generate's from the chat prompt (float32)."""
    import transformers

    write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k_rows(2))
    recipe("eval").main(["--checkpoint", str(qwen_folder), "--data", str(tmp_path / "gsm8k.jsonl"),
                         "--max_new_tokens", "10", "--out", str(tmp_path / "eval")])
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    hf_tok = transformers.AutoTokenizer.from_pretrained(qwen_folder)
    hf = transformers.AutoModelForCausalLM.from_pretrained(qwen_folder, attn_implementation="eager").eval()
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    for row, problem in zip(rows, gsm8k_rows(2)):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": problem["question"]}]
        ids = torch.tensor([hf_tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)])
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
        assert row["completion"] == hf_tok.decode(out[0, ids.shape[1]:])


def test_rft_and_grpo_on_gsm8k_pools(qwen_folder, tmp_path):
    """Answer pools in GSM8K layout (the gold answer from '#### N') drive RFT's rejection sampling and
    GRPO's reward; both final folders are complete HF folders."""
    write_jsonl(tmp_path / "pool.jsonl", gsm8k_rows(4))
    rft = recipe("rft").main(["--checkpoint", str(qwen_folder), "--data", str(tmp_path / "pool.jsonl"),
                              "--gold", str(tmp_path / "pool.jsonl"), "--k", "2", "--max_new_tokens", "8",
                              "--max_steps", "1", "--batch_size", "2", "--seq_len", "256", "--no-tools",
                              "--out", str(tmp_path / "rft")])
    assert rft["records"] >= 4  # the four gold solutions at least
    assert_complete_hf_folder(tmp_path / "rft" / "final", qwen_folder)
    grpo = recipe("rl").main(["--checkpoint", str(tmp_path / "rft" / "final"), "--data", str(tmp_path / "pool.jsonl"),
                                "--rl_steps", "1", "--rl.prompts_per_step", "2", "--rl.group_size", "2",
                                "--rl.max_new_tokens", "8", "--rl.minibatch_size", "4", "--no-rl.tools",
                                "--out", str(tmp_path / "grpo")])
    assert grpo["rl_steps"] == 1 and 0.0 <= grpo["reward_last"] <= 1.0
    assert_complete_hf_folder(tmp_path / "grpo" / "final", qwen_folder)


def test_seq_len_reaches_the_models_context(tmp_path):
    """--seq_len is the training row length: a preset's max_seq_len (tiny: 512) is raised to it when
    shorter and kept when longer; a saved folder with a shorter context is refused, naming both."""
    from mathlm import save_hf_checkpoint
    from mathlm.recipe_run import load_model
    assert load_model("tiny", seq_len=1024).config.max_seq_len == 1024
    assert load_model("tiny", seq_len=256).config.max_seq_len == 512
    save_hf_checkpoint(load_model("tiny"), tmp_path / "tiny")
    assert load_model(str(tmp_path / "tiny"), seq_len=512).config.max_seq_len == 512
    with pytest.raises(ValueError, match=r"seq_len \(1024\) exceeds the max_seq_len \(512\) of"):
        load_model(str(tmp_path / "tiny"), seq_len=1024)


def test_dpo_on_a_chat_checkpoint(qwen_folder, tmp_path):
    """DPO from a Qwen2-style chat checkpoint (byte-level BPE, no BOS token, chat template): the pairs are
    prompted through the template, the policy starts as its own reference (margin 0) and moves, and
    the final folder is a complete HF folder."""
    pairs = [{"question": q["question"], "chosen": "We add. \\boxed{60}", "rejected": "We guess. \\boxed{7}"}
             for q in gsm8k_rows(4)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    summary = recipe("dpo").main(["--checkpoint", str(qwen_folder), "--pairs", str(tmp_path / "pairs.jsonl"),
                                  "--max_steps", "3", "--batch_size", "4", "--lr", "1e-3", "--out", str(tmp_path / "dpo")])
    assert summary["pairs"] == 4 and summary["steps"] == 3
    assert summary["reward_margin_first"] == pytest.approx(0.0, abs=1e-4)
    assert summary["reward_margin_last"] > summary["reward_margin_first"]
    assert_complete_hf_folder(tmp_path / "dpo" / "final", qwen_folder)
    assert json.loads((tmp_path / "dpo" / "final" / "prompt_format.json").read_text())["style"] == "chat"
