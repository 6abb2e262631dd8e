"""What RFT and DPO add on top of what they are built on, each against a baseline in the same process.

    python benchmarks/rft.py                          # CPU defaults (~1 min)
    python benchmarks/rft.py --device cuda --questions 256 --pairs 64

Rows (best of --repeats; ratio = time / baseline time):
- per path: the grader (`extract_answer` + `math_equal`, baseline), `path_signature` with a cold
  cache, and `rejection_sample`'s whole per-sample bookkeeping (grading, signatures, selection,
  statistics) with a scripted sampler that returns the data set's own cot/pot/mixed solutions.
  Texts: `generate_dataset(all domains, verify=False)`.
- sampling: `ModelSampler.sample` against a direct `generate` call on the same encoded prompts
  (baseline): the wrapper should cost nothing. Model: the "tiny" preset with random weights,
  --questions x --samples completions of --max-new-tokens tokens, temperature 0.7.
- DPO step: `DPOLoss` forward + backward on --pairs pairs (2 x pairs rows) against
  `causal_lm_loss` on the same 2 x pairs rows (baseline: SFT on the same tokens), and the
  weighted variant (one small dpo_loss call per pair on top); `precompute_reference_logps` over
  the pairs (forward only).
Writes JSON (default benchmarks/results/rft.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--per-domain", type=int, default=20, help="problems per domain for the per-path rows")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/rft.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mathlm.config import ModelConfig
    from mathlm.data import generate_dataset
    from mathlm.grading import extract_answer, math_equal
    from mathlm.model import Transformer
    from mathlm.preference import DPOLoss, collate_preference, encode_preference_pairs, precompute_reference_logps
    from mathlm.rft import ModelSampler, path_signature, rejection_sample
    from mathlm.sampling import generate
    from mathlm.tokenizer import Tokenizer
    from mathlm.train import causal_lm_loss

    rows = []

    def row(group: str, name: str, seconds: float, baseline: float, unit: str, count: int) -> None:
        rows.append({"group": group, "name": name, "seconds": seconds, "per_item_us": seconds / count * 1e6,
                     "unit": unit, "count": count, "ratio": seconds / baseline})

    # ---- per path
    records = generate_dataset(None, args.per_domain, seed=0, verify=False)
    paths = [(r[k], r["answer"]) for r in records for k in ("cot", "pot", "mixed") if r[k]]

    def grade():
        for text, answer in paths:
            math_equal(extract_answer(text), answer)

    def signatures():
        path_signature.cache_clear()
        for text, _ in paths:
            path_signature(text)

    class Scripted:
        name = "scripted"

        def sample(self, questions, n, temperature, seed):
            by_q = {r["question"]: [r[k] for k in ("cot", "pot", "mixed")] for r in records}
            return [(by_q[q] * n)[:n] for q in questions]

    def bookkeeping():
        path_signature.cache_clear()
        rejection_sample(Scripted(), records, k=3, progress=False)

    t_grade = best_of(grade, args.repeats)
    row("per path", "grade (baseline)", t_grade, t_grade, "path", len(paths))
    row("per path", "path_signature (cold cache)", best_of(signatures, args.repeats), t_grade, "path", len(paths))
    row("per path", "rejection_sample bookkeeping", best_of(bookkeeping, args.repeats), t_grade, "path", len(records) * 3)

    # ---- sampling
    texts = [Tokenizer.format_prompt(r["question"]) + r["mixed"] for r in records]
    tok = Tokenizer.train(texts, vocab_size=512)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = Transformer(ModelConfig.from_preset("tiny", vocab_size=len(tok))).to(device).eval()
    questions = [r["question"] for r in records[:args.questions]]
    prompts = [tok.encode_prompt(q) for q in questions]
    sampler = ModelSampler(model, tok, max_new_tokens=args.max_new_tokens, batch_size=len(questions))
    t_gen = best_of(lambda: generate(model, prompts, args.max_new_tokens, temperature=0.7, n=args.samples, seed=0,
                                     tokenizer=tok), args.repeats)
    n_completions = len(questions) * args.samples
    row("sampling", "generate (baseline)", t_gen, t_gen, "completion", n_completions)
    row("sampling", "ModelSampler.sample", best_of(lambda: sampler.sample(questions, args.samples, 0.7, 0),
                                                   args.repeats), t_gen, "completion", n_completions)

    # ---- DPO step
    pairs = [{"question": r["question"], "chosen": r["mixed"], "rejected": r["cot"]} for r in records[:args.pairs]]
    examples = encode_preference_pairs(pairs, tok, max_len=256)
    for i, e in enumerate(examples):
        e.weight = 0.5 + (i % 3) * 0.5
    batch = {k: v.to(device) for k, v in collate_preference(examples, tok.pad_id).items()}
    sft_batch = {k: batch[k] for k in ("tokens", "labels", "loss_mask")}
    model.train()

    def step(loss_fn, b):
        def run():
            loss = loss_fn(model, b)[0]
            loss.backward()
            model.zero_grad(set_to_none=True)
        return run

    t_sft = best_of(step(causal_lm_loss, sft_batch), args.repeats)
    row("DPO step", "causal_lm_loss, same rows (baseline)", t_sft, t_sft, "pair", len(examples))
    reference = lambda: precompute_reference_logps(model, examples, tok.pad_id, batch_size=len(examples),  # noqa: E731
                                                    progress=False)
    row("DPO step", "precompute_reference_logps (forward only)", best_of(reference, args.repeats), t_sft, "pair",
        len(examples))
    batch = {k: v.to(device) for k, v in collate_preference(examples, tok.pad_id).items()}
    row("DPO step", "DPOLoss", best_of(step(DPOLoss(), batch), args.repeats), t_sft, "pair", len(examples))
    row("DPO step", "DPOLoss(weighted=True)", best_of(step(DPOLoss(weighted=True), batch), args.repeats), t_sft,
        "pair", len(examples))

    print(f"{'group':<10} {'what':<44} {'total s':>9} {'us/item':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['group']:<10} {r['name']:<44} {r['seconds']:>9.4f} {r['per_item_us']:>10.1f} {r['ratio']:>7.2f}")
    info = {"device": args.device, "threads": torch.get_num_threads(), "platform": platform.platform(),
            "torch": torch.__version__, "args": vars(args), "paths": len(paths), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
