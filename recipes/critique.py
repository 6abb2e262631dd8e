"""Critique model: one scalar head that judges a question (well-posed and solvable?) and a
question with a solution (correct?); agreement and F1 of both classes on held-out questions.

    python recipes/critique.py                                      # tiny, generated data, CPU, ~2 min
    python recipes/critique.py --checkpoint runs/sft/final --data data/labelled.jsonl --graded runs/graded.jsonl
    python recipes/critique.py --checkpoint runs/sft/final --data data/labelled.jsonl --k 4   # sample + grade
    torchrun --standalone --nproc_per_node=8 recipes/critique.py --checkpoint path/to/sft-7b \\
        --data labelled.jsonl --graded graded.jsonl --distributed fsdp --lr 1e-5 --batch_size 64

Training data (mathlm.critique_data.build_critique_dataset):
  question task  the questions of --data (good) and the same questions corrupted on purpose: a
                 dropped quantity, a contradiction, an unanswerable ask, a swapped entity (bad);
  solution task  graded solutions, from the first source that applies:
                   --graded  JSONL with `question`, `solution`, `correct` (e.g. RFT samples);
                   --k > 0   the --checkpoint policy samples k solutions per problem, graded here;
                   neither   the records' reference solutions (good) and corrupted copies of them
                             (a wrong final answer, a miscopied number; bad).
Examples are balanced per task and split by question (no held-out question, corruption or solution
of it is trained on). The backbone starts from --checkpoint (best: the SFT model, which knows the
solution format). Writes <out>/final (load with mathlm.critique.CritiqueScorer.load), held_out.jsonl,
and summary.json with agreement, F1 of both classes and the majority baseline per task.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mathlm.cli import parse_config
from mathlm.critique import (QUESTION_HEADER, QUESTION_TRAILER, SOLUTION_HEADER, SOLUTION_TRAILER,
                             CritiqueScorer, build_critique_dataset, critique_batches, critique_eval_fn,
                             critique_loss_fn, evaluate_critique)
from mathlm.critique_data import synthetic_graded_samples
from mathlm.data import read_jsonl, write_jsonl
from mathlm.distributed import broadcast_object, is_main_process
from mathlm.rft import ModelSampler, rejection_sample
from mathlm.sandbox import Session
from mathlm.scalar_head import ScalarHeadModel
from mathlm.recipe_run import RunConfig, prepare_run, finish_run
from mathlm.train import Trainer

METRICS = ("agreement", "f1_pos", "f1_neg", "macro_f1", "majority_baseline", "n")


@dataclass
class CritiqueConfig(RunConfig):
    out: str = "runs/critique"           # output folder
    graded: str = ""                     # JSONL graded solutions (question, solution, correct); empty: see --k
    k: int = 0                           # > 0: sample k solutions per problem with the policy and grade them
    temperature: float = 0.7             # sampling temperature for --k
    max_new_tokens: int = 320            # tokens per sampled solution
    question_task: bool = True           # train the question task on --data's questions and their corruptions
    negatives_per_question: int = 1      # corruptions per question
    held_out: float = 0.2                # share of the questions held out for agreement / F1
    by_group: bool = True                # batches of whole groups (a question with its bad twins)
    pair_weight: float = 0.0             # weight of the Bradley-Terry term over good/bad twins
    threshold: float = 0.5               # P(good) at or above which an input is judged good
    batch_size: int = 8                  # examples (groups with --by_group) per micro-batch
    lr: float = 1e-3
    warmup_steps: int = 10
    max_steps: int = 150


def graded_samples(cfg: CritiqueConfig, run) -> list[dict]:
    if cfg.graded:
        return read_jsonl(cfg.graded, required_fields=("question", "solution", "correct"))
    if cfg.k > 0:
        if not is_main_process():
            return broadcast_object(None)
        sampler = ModelSampler(run.model, run.tokenizer, cfg.max_new_tokens, tools=lambda: Session(timeout=2.0),
                               name="policy")
        result = rejection_sample([sampler], run.records, cfg.k, cfg.temperature, seed=cfg.seed)
        return broadcast_object([{"question": s["question"], "solution": s["response"], "correct": s["correct"]}
                                 for s in result.samples])
    return synthetic_graded_samples(run.records, seed=cfg.seed)


def main(argv=None) -> dict:
    cfg = parse_config(CritiqueConfig, argv, description=__doc__)
    run = prepare_run(cfg)
    graded = graded_samples(cfg, run)
    split = build_critique_dataset(run.records if cfg.question_task else (), graded,
                                   negatives_per_question=cfg.negatives_per_question, held_out=cfg.held_out,
                                   seed=cfg.seed)
    if not split["train"] or not split["held_out"]:
        raise SystemExit(f"too few critique examples to hold out {cfg.held_out:.0%} of the questions "
                         f"({len(split['train'])} train, {len(split['held_out'])} held out): give more --data")
    if is_main_process():
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(cfg.out) / "held_out.jsonl", split["held_out"])

    # ---- train: the backbone from --checkpoint, a fresh head
    critic = ScalarHeadModel(run.model)
    before = evaluate_critique(critic, split["held_out"], run.tokenizer, threshold=cfg.threshold)
    batches = critique_batches(split["train"], run.tokenizer, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                               by_group=cfg.by_group)
    trainer = Trainer(critic, cfg, partial(critique_loss_fn, pair_weight=cfg.pair_weight), batches,
                      eval_fn=critique_eval_fn(split["held_out"], run.tokenizer, threshold=cfg.threshold))
    trainer.train()
    scorer = CritiqueScorer(critic.eval(), run.tokenizer, max_len=cfg.seq_len)
    after = evaluate_critique(scorer, split["held_out"], threshold=cfg.threshold, by_source=True)

    # ---- save
    summary = {"steps": trainer.global_step, "train_examples": len(split["train"]),
               "held_out_examples": len(split["held_out"]),
               "agreement_before": before["overall"]["agreement"],
               **{part: {m: after[part][m] for m in METRICS} for part in ("overall", "question", "solution")
                  if part in after},
               "by_source": {k.split("/", 1)[1]: v for k, v in after.items() if k.startswith("source/")}}
    o = summary["overall"]
    if is_main_process():
        print(f"held-out agreement {o['agreement']:.3f} (majority {o['majority_baseline']:.3f}), "
              f"F1 good {o['f1_pos']:.3f} / bad {o['f1_neg']:.3f}")
    return finish_run(cfg.out, critic, run.tokenizer, summary,
                      head_meta=dict(kind="critique", question_header=QUESTION_HEADER, question_trailer=QUESTION_TRAILER,
                                     solution_header=SOLUTION_HEADER, solution_trailer=SOLUTION_TRAILER))


if __name__ == "__main__":
    main()
