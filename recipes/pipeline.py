"""The whole method at tiny scale on a CPU, end to end, with its results table.

    python recipes/pipeline.py                    # the default run: about 20 minutes on a 2-core CPU (make demo)
    python recipes/pipeline.py --seeds 3          # three seeds, mean +- std in the table (--seed: the first)
    python recipes/pipeline.py --scale 4          # 4x the data and the training steps
    python recipes/pipeline.py --smoke            # a couple of minutes, every stage at a toy size (the tests)

Stages (one training process at a time; progress lines throughout):
 1. data      all sub-domains (mathlm.data), verified in the sandbox, in the realistic shape: a small
              labelled set with gold solutions, a larger answer-only pool (questions + final answers),
              disjoint validation and test splits; the pool grows by the programmatic mutator and by
              self-instruct, deduplicated with ROUGE-L; a separate pretraining corpus of questions with
              worked CoT text, checked against the evaluation splits
 2. tokenizer BPE, every digit its own token
 3. pretrain  the base model (next-token prediction on the corpus) and a smaller base for the samplers
 4. sft       mixed CoT+PoT on the labelled set, checkpoint chosen on validation; CoT-only and PoT-only
              baselines with the same budget; two small samplers (mixed) from the small base
 5. critique  trained on the samplers' graded samples and on corrupted questions; agreement and F1 on
              held-out examples; then filters the pool's questions and the RFT paths and weights hard samples
 6. rft       k samples per pool problem from the two small samplers and the SFT model itself (pooled,
              as Yuan et al. 2023 pool several models' samples), correct + distinct paths kept,
              the larger model fine-tuned on them plus the gold set; `sft_continued` gets the same steps
              on the labelled set only (equal compute)
 7. dpo       on top of RFT, pairs of correct/incorrect samples; win rate against RFT
 8. grpo      on top of RFT, on the answer-only pool (reward: correct final answer)
 9. eval      every stage on the held-out test split (greedy, python blocks executed), by domain
Writes <out>/results.json, <out>/results.md and plots, and (unless --no-docs) docs/results.md.
"""
from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from mathlm import Tokenizer
from mathlm.batching import BatchIterator
from mathlm.cli import parse_config
from mathlm.critique import (CritiqueScorer, build_critique_dataset, critique_batches, critique_loss_fn,
                             evaluate_critique)
from mathlm.data import (dedup, generate_dataset, mutate_records, normalize_question, save_dataset,
                         self_instruct, split_dataset)
from mathlm.evaluation import evaluate_model, win_rate
from mathlm.losses import hard_sample_weights
from mathlm.preference import (DPOLoss, build_preference_pairs, collate_preference,
                               encode_preference_pairs, precompute_reference_logps)
from mathlm.report import mean_over_seeds, write_report
from mathlm.rft import ModelSampler, rejection_sample
from mathlm.rl import RLConfig, RLTrainer
from mathlm.sampling import TextCompleter
from mathlm.sandbox import Session
from mathlm.scalar_head import ScalarHeadModel
from mathlm.lm_training import lm_examples, train_lm
from mathlm.recipe_run import load_model
from mathlm.train import Trainer, TrainConfig


@dataclass
class PipelineConfig:
    out: str = "runs/pipeline"           # output folder (data, models, metrics, results)
    docs: bool = True                    # also write docs/results.md (+ PNG plots) from this run
    seeds: int = 1                       # seeds run one after the other; the table shows mean +- std
    seed: int = 0                        # the first seed (data, initialization, sampling): seed .. seed + seeds - 1
    scale: float = 1.0                   # multiplies data sizes and training steps
    smoke: bool = False                  # toy sizes: every stage runs, numbers mean nothing
    threads: int = 0                     # torch CPU threads (0: torch's default, all cores); 1 on a shared machine
    # ---- data (per domain, 9 domains)
    difficulty: tuple[int, ...] = (1, 2)  # difficulty levels of every split
    labelled: int = 100                  # labelled problems (gold solutions) per domain
    pool: int = 120                      # answer-only problems per domain
    val: int = 12                        # validation problems per domain
    test: int = 30                       # test problems per domain
    corpus: int = 500                    # pretraining documents per domain (question + worked CoT)
    mutations: int = 200                 # programmatic mutations added to the pool
    self_instruct: int = 64              # self-instruct candidates (one round)
    # ---- models
    vocab_size: int = 1024
    seq_len: int = 384
    sampler_dim: int = 96                # the two small samplers: width and depth
    sampler_layers: int = 3
    # ---- steps and rates
    pretrain_steps: int = 600            # the base model (the number-copying it learns here is what SFT builds on)
    sampler_pretrain_steps: int = 300    # the samplers' smaller base
    sft_steps: int = 300                 # also the budget of the CoT-only and PoT-only baselines
    sampler_steps: int = 250
    critique_steps: int = 150
    rft_steps: int = 150                 # extra steps on top of SFT; sft_continued gets as many
    dpo_steps: int = 40
    rl_steps: int = 30
    batch_size: int = 16
    pretrain_lr: float = 3e-3            # the base model's pretraining
    sampler_pretrain_lr: float = 2e-3    # the samplers' smaller base
    sft_lr: float = 2e-3                 # SFT and the CoT-only / PoT-only baselines (docs/calibration.md)
    sampler_lr: float = 2e-3             # the two small samplers' SFT
    critique_lr: float = 2e-3            # the critique model
    rft_lr: float = 1e-3                 # RFT and sft_continued
    dpo_lr: float = 2e-5
    rl_lr: float = 3e-5                  # about 10x below SFT's (docs/calibration.md)
    eval_every: int = 100                # validation checks during SFT (checkpoint choice)
    # ---- RFT / DPO / RL
    k: int = 4                           # samples per problem per sampler
    temperature: float = 0.7
    max_paths: int = 4                   # distinct correct paths kept per problem
    rft_pool: int = 600                  # pool problems sampled for RFT (the rest of the pool serves RL)
    critique_threshold: float = 0.5      # RFT paths and pool questions below this critique score are dropped
    dpo_beta: float = 0.1
    rl_group: int = 8
    rl_prompts: int = 8
    max_new_tokens: int = 256

    def __post_init__(self):
        self.difficulty = tuple(self.difficulty)
        if self.smoke:
            for name, value in dict(labelled=3, pool=6, val=2, test=2, corpus=8, mutations=4, self_instruct=4,
                                    pretrain_steps=3, sampler_pretrain_steps=3, sft_steps=3, sampler_steps=2,
                                    critique_steps=2, rft_steps=2,
                                    dpo_steps=2, rl_steps=2, rft_pool=12, eval_every=2, batch_size=4, rl_group=2,
                                    rl_prompts=2, max_new_tokens=48, k=2).items():
                setattr(self, name, value)
        elif self.scale != 1.0:
            for name in ("labelled", "pool", "val", "test", "corpus", "mutations", "self_instruct", "pretrain_steps",
                         "sampler_pretrain_steps", "sft_steps", "sampler_steps", "critique_steps", "rft_steps",
                         "dpo_steps", "rl_steps", "rft_pool"):
                setattr(self, name, max(1, round(getattr(self, name) * self.scale)))


class Progress:
    """Stage lines with elapsed time: `[ 4/12 sft] ... (3m12s)`."""

    STAGES = ("data", "tokenizer", "pretrain", "sft", "baselines", "samplers", "rft sampling", "critique",
              "rft", "dpo", "grpo", "eval")

    def __init__(self, seed: int, seeds: int):
        self.t0, self.seed, self.seeds, self.times = time.perf_counter(), seed, seeds, {}
        self._stage, self._start = None, None

    def stage(self, name: str, note: str = ""):
        now = time.perf_counter()
        if self._stage:
            self.times[self._stage] = now - self._start
        self._stage, self._start = name, now
        i = self.STAGES.index(name) + 1
        print(f"\n[seed {self.seed + 1}/{self.seeds} | {i:2d}/{len(self.STAGES)} {name}] {note} "
              f"({_clock(now - self.t0)} elapsed)", flush=True)

    def done(self) -> dict:
        self.times[self._stage] = time.perf_counter() - self._start
        return {k: round(v, 1) for k, v in self.times.items()}


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


# ---------------------------------------------------------------------------- data


def build_data(cfg: PipelineConfig, seed: int, out: Path) -> dict[str, list[dict]]:
    n = cfg.labelled + cfg.pool + cfg.val + cfg.test
    records = generate_dataset(n_per_domain=n, seed=seed, difficulty=list(cfg.difficulty), progress=True)
    per = {"labelled": cfg.labelled, "pool": cfg.pool, "val": cfg.val, "test": cfg.test}
    parts = split_dataset(records, {k: v / n for k, v in per.items()}, seed=seed, stratify="domain")
    held = {normalize_question(r["question"]) for r in parts["val"] + parts["test"]}
    # Pool growth without a model: mutations of pool problems (new numbers, contexts, composed steps),
    # each kept only if it is not a near-duplicate (ROUGE-L >= 0.7) of the pool or of an earlier one.
    # (The generated problems are distinct by construction; templated questions that differ only in
    # their numbers are different problems, so the filter applies to the additions.)
    grown = [r for r in mutate_records(parts["pool"], cfg.mutations, seed=seed)
             if normalize_question(r["question"]) not in held]
    new = add_diverse(parts["pool"], grown)
    print(f"pool: {len(parts['pool'])} problems + {len(new)} of {len(grown)} mutations (ROUGE-L < 0.7)", flush=True)
    parts["pool"] += new
    # The pretraining corpus: other problems with worked CoT text, never an evaluation question.
    corpus = generate_dataset(n_per_domain=cfg.corpus, seed=seed + 10_000, difficulty=list(cfg.difficulty), verify=False)
    parts["corpus"] = [r for r in corpus if normalize_question(r["question"]) not in held]
    for name, part in parts.items():
        save_dataset(out / "data" / f"{name}.jsonl", part)
    return parts


def add_diverse(existing: list[dict], candidates: list[dict], threshold: float = 0.7) -> list[dict]:
    """The candidates whose question is not a near-duplicate (ROUGE-L >= threshold) of an existing
    question or of a candidate kept before it (self-instruct's filter)."""
    texts = [r["question"] for r in existing + candidates]
    kept = set(dedup(texts, method="rougeL", threshold=threshold, always_keep=len(existing)))
    return [r for i, r in enumerate(candidates) if len(existing) + i in kept]


def answer_only(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("id", "domain", "difficulty", "question", "answer") if k in r} for r in records]


# ---------------------------------------------------------------------------- training helpers


def train_config(cfg: PipelineConfig, out: Path, steps: int, lr: float, seed: int, log_every: int | None = None) -> TrainConfig:
    return TrainConfig(lr=lr, warmup_steps=min(30, max(1, steps // 10)), max_steps=steps, weight_decay=0.0,
                       out_dir=str(out), log_every=log_every or max(1, steps // 5), keep_last=1, seed=seed)


def sft(cfg, model, tok, records, key, steps, lr, out, seed, val=None):
    examples = lm_examples(tok, records, response_key=key, max_len=cfg.seq_len)
    _, best = train_lm(model, tok, examples, train_config(cfg, out, steps, lr, seed), batch_size=cfg.batch_size,
                       seq_len=cfg.seq_len, val_problems=val, eval_every=cfg.eval_every,
                       eval_kwargs={"max_new_tokens": cfg.max_new_tokens})
    if best is not None:
        print(f"  validation accuracy by step: {[(h['step'], round(h['accuracy'], 3)) for h in best.history]}; "
              f"kept step {best.step}", flush=True)
    return best


def evaluate(cfg, model, tok, problems) -> dict:
    result = evaluate_model(model, tok, problems, max_new_tokens=cfg.max_new_tokens)
    s = result["summary"]
    return {"accuracy": s["accuracy"], "by_domain": {d: v["accuracy"] for d, v in s["by_domain"].items()},
            "correct": [g["correct"][0] for g in result["graded"]], "completions": [c[0] for c in result["completions"]]}


class TemplateSolver:
    """self-instruct's solve_fn: answers the question of a few-shot PoT prompt with a model in its
    own prompt template (what it was fine-tuned on)."""

    def __init__(self, model, tok, cfg, seed):
        self.sampler = ModelSampler(model, tok, cfg.max_new_tokens, name="solver")
        self.temperature, self.seed = cfg.temperature, seed

    def __call__(self, prompt: str) -> str:
        return self.batch([prompt])[0]

    def batch(self, prompts: list[str]) -> list[str]:
        questions = [p.rsplit("Question: ", 1)[1].split("\n", 1)[0] for p in prompts]
        self.seed += 1
        return [t[0] for t in self.sampler.sample(questions, 1, self.temperature, self.seed)]


# ---------------------------------------------------------------------------- one seed, stage by stage


@dataclass
class SeedRun:
    """What the stages of one seed share: the settings, the data, the tokenizer, the models trained
    so far (by stage name) and each stage's figures for results.json."""

    cfg: PipelineConfig
    seed: int
    out: Path
    progress: Progress
    data: dict[str, list[dict]] = field(default_factory=dict)
    tok: Tokenizer | None = None
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)

    @staticmethod
    def tools() -> Session:
        return Session(timeout=2.0)

    def sft(self, model, records, key, steps, lr, name, seed=None, val=None):
        return sft(self.cfg, model, self.tok, records, key, steps, lr, self.out / name,
                   self.seed if seed is None else seed, val)

    def train_config(self, name: str, steps: int, lr: float, log_every: int | None = None) -> TrainConfig:
        return train_config(self.cfg, self.out / name, steps, lr, self.seed, log_every)


def corpus_texts(data: dict[str, list[dict]]) -> list[str]:
    return [r["question"] + "\n" + r["cot"] for r in data["corpus"]]


def train_tokenizer(run: SeedRun) -> None:
    texts = corpus_texts(run.data)
    texts += [r[k] for r in run.data["labelled"] for k in ("question", "mixed", "cot", "pot")]
    run.tok = Tokenizer.train(texts, vocab_size=run.cfg.vocab_size, path=run.out / "tokenizer.model")


def pretrain_bases(run: SeedRun):
    """The base model and the samplers' smaller base, next-token prediction on the corpus."""
    cfg, tok, seed = run.cfg, run.tok, run.seed
    docs = lm_examples(tok, texts=corpus_texts(run.data), max_len=cfg.seq_len)
    base = load_model("tiny", tok, seed=seed, seq_len=cfg.seq_len)
    train_lm(base, tok, docs, run.train_config("pretrain", cfg.pretrain_steps, cfg.pretrain_lr),
             batch_size=cfg.batch_size, seq_len=cfg.seq_len)
    small_base = load_model("tiny", tok, seed=seed + 1, seq_len=cfg.seq_len, dim=cfg.sampler_dim,
                            n_layers=cfg.sampler_layers, n_heads=4, n_kv_heads=2, hidden_dim=cfg.sampler_dim * 3)
    train_lm(small_base, tok, docs, run.train_config("pretrain_small", cfg.sampler_pretrain_steps,
                                                     cfg.sampler_pretrain_lr),
             batch_size=cfg.batch_size, seq_len=cfg.seq_len)
    return base, small_base


def train_sft_models(run: SeedRun, base) -> None:
    """SFT (mixed CoT+PoT) and the CoT-only and PoT-only baselines with the same budget, each
    checkpoint chosen on the validation split."""
    cfg, labelled = run.cfg, run.data["labelled"]
    for i, (name, key) in enumerate((("sft", "mixed"), ("cot_only", "cot"), ("pot_only", "pot"))):
        if i == 1:
            run.progress.stage("baselines", "CoT-only and PoT-only with the same budget")
        run.models[name] = copy.deepcopy(base)
        best = run.sft(run.models[name], labelled, key, cfg.sft_steps, cfg.sft_lr, name, val=run.data["val"])
        run.stages[name] = {"selected_step": best.step, "val_accuracy": best.best}


def train_samplers(run: SeedRun, small_base) -> list[ModelSampler]:
    """Two small models fine-tuned (mixed) from the small base, for rejection sampling."""
    cfg, samplers = run.cfg, []
    for j in range(2):
        small = copy.deepcopy(small_base)
        run.sft(small, run.data["labelled"], "mixed", cfg.sampler_steps, cfg.sampler_lr, f"sampler{j}",
                seed=run.seed + 100 + j)
        samplers.append(ModelSampler(small, run.tok, cfg.max_new_tokens, tools=run.tools, name=f"small{j}"))
    return samplers


def grow_pool(run: SeedRun, base) -> tuple[list[dict], list[dict], int]:
    """Self-instruct (the base model writes questions, the PoT baseline solves them several times),
    then the answer-only pool split into the RFT part and the RL part. Returns (rft_pool, rl_pool,
    the number of self-instruct questions kept)."""
    cfg, tok, seed, data = run.cfg, run.tok, run.seed, run.data
    writer = TextCompleter(base, tok, max_new_tokens=64, temperature=1.0, seed=seed, stop=["\nProblem:", "\n"])
    new = self_instruct(data["labelled"], writer, rounds=1, per_round=cfg.self_instruct, k=3, n_solutions=3,
                        solve_fn=TemplateSolver(run.models["pot_only"], tok, cfg, seed), seed=seed, progress=True)
    held = {normalize_question(r["question"]) for r in data["val"] + data["test"]}
    new = [r for r in new if normalize_question(r["question"]) not in held]
    print(f"  self-instruct kept {len(new)} of {cfg.self_instruct} candidates", flush=True)
    pool = answer_only(data["pool"]) + answer_only(new)
    random.Random(seed).shuffle(pool)
    return pool[:cfg.rft_pool], pool[cfg.rft_pool:] or pool, len(new)


def train_critique(run: SeedRun, samples: list[dict]):
    """The critique model, trained on the samplers' graded samples and on corrupted questions;
    returns its scorer and its agreement / F1 on held-out examples (the summary for results.json)."""
    cfg, tok, seed = run.cfg, run.tok, run.seed
    graded = [{"question": s["question"], "solution": s["response"], "correct": s["correct"]} for s in samples]
    labelled = run.data["labelled"]
    split = build_critique_dataset(labelled + run.data["pool"][:len(labelled)], graded, seed=seed)
    critic = ScalarHeadModel(copy.deepcopy(run.models["sft"]))  # starts from a model that knows the solution format
    Trainer(critic, run.train_config("critique", cfg.critique_steps, cfg.critique_lr), critique_loss_fn,
            critique_batches(split["train"], tok, cfg.batch_size, cfg.seq_len, seed=seed)).train()
    scorer = CritiqueScorer(critic.eval(), tok, max_len=cfg.seq_len)
    critique = evaluate_critique(scorer, split["held_out"])
    overall = critique["overall"]
    print(f"  critique on {len(split['held_out'])} held-out examples: agreement {overall['agreement']:.3f}, "
          f"F1 good {overall['f1_pos']:.3f} / bad {overall['f1_neg']:.3f}", flush=True)
    summary = {"agreement": overall["agreement"], "f1": overall["macro_f1"], "f1_good": overall["f1_pos"],
               "f1_bad": overall["f1_neg"], "majority_baseline": overall["majority_baseline"],
               "by_task": {t: {m: critique[t][m] for m in ("agreement", "f1_pos", "f1_neg", "n")}
                           for t in ("question", "solution") if t in critique},
               "held_out": len(split["held_out"])}
    return scorer, summary


def critique_filtered_rft_data(run: SeedRun, scorer, paths: list[dict]) -> tuple[list[dict], int, int]:
    """The RFT paths whose question and solution both pass the critique threshold, plus the gold
    set, each weighted by hardness (a low critique score weighs more). Returns (records, paths
    kept, gold records)."""
    threshold = run.cfg.critique_threshold
    q_scores = scorer.score_questions([r["question"] for r in paths])
    s_scores = scorer.score_solutions([r["question"] for r in paths], [r["response"] for r in paths])
    kept = [r for r, q, s in zip(paths, q_scores, s_scores) if q >= threshold and s >= threshold]
    gold = [{"question": r["question"], "response": r["mixed"], "score": 1.0} for r in run.data["labelled"]]
    rft_data = [{**r, "score": s} for r, s in zip(paths, s_scores) if r in kept] + gold
    weights = hard_sample_weights(scores=[r["score"] for r in rft_data]).tolist()
    print(f"  critique filter kept {len(kept)} of {len(paths)} paths; weights "
          f"{min(weights):.2f}..{max(weights):.2f}", flush=True)
    return [{**r, "weight": w} for r, w in zip(rft_data, weights)], len(kept), len(gold)


def train_rft(run: SeedRun, scorer, sampled, rft_pool: list[dict]) -> None:
    """RFT on the critique-filtered paths plus gold, and `sft_continued` with as many steps on the
    labelled set only (equal compute)."""
    cfg = run.cfg
    rft_data, n_kept, n_gold = critique_filtered_rft_data(run, scorer, sampled.records)
    run.models["rft"] = copy.deepcopy(run.models["sft"])
    run.sft(run.models["rft"], rft_data, "response", cfg.rft_steps, cfg.rft_lr, "rft")
    run.models["sft_continued"] = copy.deepcopy(run.models["sft"])
    run.sft(run.models["sft_continued"], run.data["labelled"], "mixed", cfg.rft_steps, cfg.rft_lr, "sft_continued")
    stats = sampled.stats
    run.stages["rft"] = {k: stats[k] for k in ("coverage", "distinct_paths_per_problem",
                                               "distinct_paths_per_covered_problem", "pass@1", "correct_fraction")}
    run.stages["rft"].update(paths_sampled=len(sampled.records), paths_after_critique=n_kept, gold=n_gold,
                             pool_problems=len(rft_pool),
                             per_sampler={k: {m: v[m] for m in ("pass@1", "coverage")}
                                          for k, v in stats["per_sampler"].items()})


def train_dpo(run: SeedRun, samples: list[dict]) -> None:
    """DPO on top of RFT, on pairs of correct / incorrect samples of the same problem."""
    cfg, tok = run.cfg, run.tok
    pairs = build_preference_pairs(samples, max_pairs_per_prompt=2, seed=run.seed)
    run.models["dpo"] = copy.deepcopy(run.models["rft"])
    if pairs:
        examples = encode_preference_pairs(pairs, tok, cfg.seq_len)
        precompute_reference_logps(run.models["dpo"], examples, tok.pad_id)
        batches = BatchIterator(examples, min(cfg.batch_size // 2, len(examples)),
                                partial(collate_preference, pad_id=tok.pad_id), seed=run.seed)
        Trainer(run.models["dpo"], run.train_config("dpo", cfg.dpo_steps, cfg.dpo_lr), DPOLoss(beta=cfg.dpo_beta),
                batches).train()
    else:
        print("  no problem had both a correct and a wrong sample: DPO has no pairs and stays at RFT", flush=True)
    run.stages["dpo"] = {"pairs": len(pairs)}


def train_grpo(run: SeedRun, rl_pool: list[dict]) -> None:
    """GRPO on top of RFT, on the answer-only problems RFT did not sample."""
    cfg = run.cfg
    run.models["grpo"] = copy.deepcopy(run.models["rft"])
    rl_cfg = RLConfig(algorithm="grpo", prompts_per_step=cfg.rl_prompts, group_size=cfg.rl_group,
                      temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, tools=True, seed=run.seed,
                      minibatch_size=cfg.rl_prompts * cfg.rl_group // 2)
    updates = rl_cfg.optimizer_steps(cfg.rl_steps)
    rl = RLTrainer(run.models["grpo"], run.tok, rl_pool, rl_cfg,
                   run.train_config("grpo", updates, cfg.rl_lr, log_every=10 * updates))
    history = rl.train(cfg.rl_steps)
    run.stages["grpo"] = {**rl.summary(), "reward_curve": [h["reward_mean"] for h in history]}


def evaluate_all(run: SeedRun, scorer) -> None:
    """Every model on the test split, and DPO's win rate against RFT (ties judged by the critique)."""
    test, stages = run.data["test"], run.stages
    for name in ("cot_only", "pot_only", "sft", "sft_continued", "rft", "dpo", "grpo"):
        stages.setdefault(name, {}).update(evaluate(run.cfg, run.models[name], run.tok, test))
        print(f"  {name:14s} test accuracy {stages[name]['accuracy']:.3f}", flush=True)
    rft_s, dpo_s = stages["rft"], stages["dpo"]
    judge_scores = [scorer.score_solutions([p["question"]] * 2, [d, r])
                    for p, d, r in zip(test, dpo_s["completions"], rft_s["completions"])]
    stages["dpo"]["win_rate_vs_rft"] = win_rate(dpo_s["correct"], rft_s["correct"],
                                                judge=lambda i: judge_scores[i][0] - judge_scores[i][1])
    for s in stages.values():  # keep results.json readable: per-problem lists live in the seed folder
        s.pop("completions", None)
        s.pop("correct", None)


def run_seed(cfg: PipelineConfig, seed: int) -> dict:
    """Every stage for one seed, in order; the figures of results.json's `runs` entry."""
    run = SeedRun(cfg, seed, Path(cfg.out) / f"seed{seed}", Progress(seed - cfg.seed, cfg.seeds))
    torch.manual_seed(seed)
    stage = run.progress.stage

    stage("data")
    run.data = data = build_data(cfg, seed, run.out)
    print("  " + ", ".join(f"{k} {len(v)}" for k, v in data.items()), flush=True)
    stage("tokenizer")
    train_tokenizer(run)
    stage("pretrain", f"{len(data['corpus'])} documents")
    base, small_base = pretrain_bases(run)
    stage("sft", f"mixed CoT+PoT on {len(data['labelled'])} labelled problems")
    train_sft_models(run, base)
    stage("samplers", "two small models (mixed) for rejection sampling")
    samplers = train_samplers(run, small_base)
    rft_pool, rl_pool, n_self_instruct = grow_pool(run, base)

    samplers.append(ModelSampler(run.models["sft"], run.tok, cfg.max_new_tokens, tools=run.tools, name="sft"))
    stage("rft sampling", f"{len(rft_pool)} pool problems x {cfg.k} samples x {len(samplers)} samplers "
                          f"(two small models and the SFT model)")
    sampled = rejection_sample(samplers, rft_pool, cfg.k, cfg.temperature, max_paths_per_problem=cfg.max_paths,
                               seed=seed)
    stage("critique", "graded samples + corrupted questions")
    scorer, critique = train_critique(run, sampled.samples)
    stage("rft", f"{len(sampled.records)} distinct correct paths")
    train_rft(run, scorer, sampled, rft_pool)
    stage("dpo", "pairs of correct / incorrect samples, on top of RFT")
    train_dpo(run, sampled.samples)
    stage("grpo", f"{cfg.rl_steps} steps on {len(rl_pool)} answer-only problems, on top of RFT")
    train_grpo(run, rl_pool)
    stage("eval", f"{len(run.models)} models on {len(data['test'])} test problems")
    evaluate_all(run, scorer)
    return {"seed": seed, "stages": run.stages, "critique": critique, "seconds": run.progress.done(),
            "data": {k: len(v) for k, v in data.items()} | {"self_instruct_kept": n_self_instruct}}


# ---------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    cfg = parse_config(PipelineConfig, argv, description=__doc__)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # on a machine shared with other jobs, 2 threads per process thrash
    t0 = time.perf_counter()
    runs = [run_seed(cfg, seed) for seed in range(cfg.seed, cfg.seed + cfg.seeds)]
    results = {"stages": {}, "critique": {}, "config": asdict(cfg), "seeds": [r["seed"] for r in runs],
               "seconds": round(time.perf_counter() - t0, 1), "runs": runs}
    for name in runs[0]["stages"]:
        results["stages"][name] = mean_over_seeds([r["stages"][name] for r in runs])
    results["critique"] = mean_over_seeds([r["critique"] for r in runs])
    out = Path(cfg.out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out, docs_page=Path(__file__).resolve().parents[1] / "docs" / "results.md" if cfg.docs else None)
    print(f"\nresults: {out / 'results.json'} ({_clock(results['seconds'])})")
    return results


if __name__ == "__main__":
    main()
