"""Preference data and DPO training: pairs from graded samples, encoding, reference log-probs, the loss.

    result = rejection_sample(samplers, problems, k=8)                   # mathlm.rft
    pairs = build_preference_pairs(result.samples, max_pairs_per_prompt=4)
    weights = hard_sample_weights(scores=[p["correct_fraction"] for p in pairs])   # optional
    pairs = [{**p, "weight": w} for p, w in zip(pairs, weights.tolist())]
    examples = encode_preference_pairs(pairs, tok, max_len=512)
    precompute_reference_logps(policy, examples, pad_id=tok.pad_id)      # the SFT model, before training
    batches = BatchIterator(examples, 16, partial(collate_preference, pad_id=tok.pad_id))
    Trainer(policy, cfg, DPOLoss(beta=0.1, weighted=True), batches).train()

Pairs: for each prompt, chosen = a correct sample, rejected = a wrong one (correctness by the
grader, so the pairs need no human or model judge). Every prompt contributes at most
`max_pairs_per_prompt` pairs, drawn without replacement from its (correct x wrong) grid with a
generator seeded by (seed, question), so no prompt with many samples dominates and the pairs of a
prompt do not depend on the other prompts.

Reference log-probs: DPO compares the policy with the frozen reference (the model DPO starts
from) through log ref(y|x) only, so `precompute_reference_logps` computes them once and stores
them on the examples; the reference model can then be freed (at 7B, one copy of the weights fewer
on every GPU for the whole run). They are computed exactly as the loss computes the policy's
(same forward, same `sequence_logprobs`), so at step 0 the policy's implicit rewards are 0.

The loss (`DPOLoss`) runs one forward over chosen and rejected concatenated along the batch
(rows 0..B-1 chosen, B..2B-1 rejected, right-padded to one length), sums the response-token
log-probs with `mathlm.losses.sequence_logprobs` and hands them to `mathlm.losses.dpo_loss`.
"""
from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn as nn

from .batching import SFTExample, collate_padded, encode_sft_records
from .losses import DPO_LOSS_TYPES, dpo_loss, sequence_logprobs

__all__ = ["build_preference_pairs", "PreferenceExample", "encode_preference_pairs", "collate_preference",
           "precompute_reference_logps", "sample_preference_pairs", "DPOLoss"]


# ---------------------------------------------------------------------------------------------
# Pairs


def build_preference_pairs(samples: Sequence[dict], max_pairs_per_prompt: int = 4, seed: int = 0) -> list[dict]:
    """Chosen (correct) vs rejected (wrong) responses of the same prompt, balanced across prompts.

    samples: graded samples, e.g. `rejection_sample(...).samples`: dicts with `question`,
        `response` and `correct` (`id`, `domain`, `answer`, `sampler`, `predicted` are copied when
        present). Samples are grouped by question; identical response texts count once per side.
    Returns pairs in the order the prompts first appear: {id, domain, question, answer, chosen,
    rejected, chosen_sampler, rejected_sampler, rejected_predicted, correct_fraction}, where
    correct_fraction is the fraction of the prompt's samples that are correct (its hardness: low
    is hard; `mathlm.losses.hard_sample_weights(scores=...)` turns it into loss weights). Prompts whose
    samples are all correct or all wrong give no pair.
    """
    if max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt ({max_pairs_per_prompt}) must be >= 1")
    groups: dict[str, list[dict]] = defaultdict(list)
    for i, x in enumerate(samples):
        for key, kind in (("question", str), ("response", str), ("correct", bool)):
            if not isinstance(x.get(key), kind):
                raise ValueError(f"sample {i}: field {key!r} must be a {kind.__name__}, got {x.get(key)!r:.60}")
        groups[x["question"]].append(x)
    pairs = []
    for question, group in groups.items():
        sides = {True: {}, False: {}}  # response text -> its first sample, per side
        for x in group:
            sides[x["correct"]].setdefault(x["response"], x)
        chosen, rejected = list(sides[True].values()), list(sides[False].values())
        if not chosen or not rejected:
            continue
        fraction = sum(x["correct"] for x in group) / len(group)
        m = min(max_pairs_per_prompt, len(chosen) * len(rejected))
        rng = random.Random(f"{seed}:{question}")  # str seeds hash with sha512: stable across runs
        first = group[0]
        for cell in rng.sample(range(len(chosen) * len(rejected)), m):
            c, r = chosen[cell // len(rejected)], rejected[cell % len(rejected)]
            pairs.append({"id": first.get("id"), "domain": first.get("domain", "all"), "question": question,
                          "answer": first.get("answer"), "chosen": c["response"], "rejected": r["response"],
                          "chosen_sampler": c.get("sampler"), "rejected_sampler": r.get("sampler"),
                          "rejected_predicted": r.get("predicted"), "correct_fraction": fraction})
    return pairs


# ---------------------------------------------------------------------------------------------
# Encoding and collation


@dataclass
class PreferenceExample:
    """One pair as token ids; chosen and rejected share the prompt (ids[:response_start])."""

    chosen: SFTExample
    rejected: SFTExample
    weight: float = 1.0
    ref_chosen_logp: float | None = None    # log ref(chosen | prompt), summed over response tokens
    ref_rejected_logp: float | None = None

    def __post_init__(self):
        c, r = self.chosen, self.rejected
        if c.response_start != r.response_start or c.ids[:c.response_start] != r.ids[:r.response_start]:
            raise ValueError("chosen and rejected must share the prompt ids (the same ids[:response_start])")


def encode_preference_pairs(pairs: Sequence[dict], tokenizer, max_len: int, overflow: str = "truncate",
                            weight_key: str | None = "weight") -> list[PreferenceExample]:
    """Tokenize pairs with the prompt template (`Tokenizer.encode_example`): prompt + response + EOS.

    max_len: model inputs per side (at most max_len + 1 ids). A longer side loses its tail
    (`overflow="truncate"`; both responses of a truncated pair are still compared on what is
    left), drops the pair (`"drop"`) or raises (`"error"`). weight_key: the per-pair loss weight
    field (`DPOLoss(weighted=True)` uses it), 1.0 when absent.
    """
    examples = []
    for i, pair in enumerate(pairs):
        for key in ("question", "chosen", "rejected"):
            if not isinstance(pair.get(key), str):
                raise ValueError(f"pair {i}: field {key!r} must be a string, got {pair.get(key)!r:.60}")
        weight = {"weight": pair[weight_key]} if weight_key and weight_key in pair else {}
        # encode_sft_records checks max_len, overflow and the weight, naming the pair in its errors.
        sides = encode_sft_records([{"question": pair["question"], "response": pair[key], **weight,
                                     "_source": f"pair {i} ({key})"} for key in ("chosen", "rejected")],
                                   tokenizer, max_len, overflow=overflow)
        if len(sides) == 2:  # overflow="drop" drops the pair when either side is too long
            examples.append(PreferenceExample(sides[0], sides[1], sides[0].weight))
    return examples


def collate_preference(examples: Sequence[PreferenceExample], pad_id: int,
                       seq_len: int | None = None) -> dict[str, torch.Tensor]:
    """B pairs -> one batch of 2B rows: rows 0..B-1 the chosen, B..2B-1 the rejected responses.

    tokens, labels, loss_mask (2B, T) as `mathlm.batching.collate_padded` (right padding, labels
    shifted, loss on response tokens); weights (B,) per pair; ref_chosen_logps and
    ref_rejected_logps (B,) float32 when every example has its reference log-probs.
    """
    if not examples:
        raise ValueError("collate_preference needs at least one example")
    batch = collate_padded([e.chosen for e in examples] + [e.rejected for e in examples], pad_id, seq_len)
    batch["weights"] = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    have_ref = [e.ref_chosen_logp is not None and e.ref_rejected_logp is not None for e in examples]
    if all(have_ref):
        batch["ref_chosen_logps"] = torch.tensor([e.ref_chosen_logp for e in examples], dtype=torch.float32)
        batch["ref_rejected_logps"] = torch.tensor([e.ref_rejected_logp for e in examples], dtype=torch.float32)
    elif any(have_ref):
        raise ValueError(f"{have_ref.count(False)} of {len(examples)} examples lack reference log-probs: run "
                         f"precompute_reference_logps on all of them")
    return batch


def _pair_logps(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed response log-probs (B,) each and the response token counts (2B,)."""
    logits = model(batch["tokens"])  # (2B, T, V)
    total, _ = sequence_logprobs(logits, batch["labels"], batch["loss_mask"])  # (2B,)
    B = total.shape[0] // 2
    return total[:B], total[B:], batch["loss_mask"].sum(dim=1)


@torch.no_grad()
def precompute_reference_logps(ref_model: nn.Module, examples: Sequence[PreferenceExample], pad_id: int,
                               batch_size: int = 16, bf16: bool = True, progress: bool = True
                               ) -> Sequence[PreferenceExample]:
    """Store log ref(chosen|prompt) and log ref(rejected|prompt) on each example; returns `examples`.

    The pairs are visited longest first in batches of `batch_size` (little padding), with the
    forward and `sequence_logprobs` of `DPOLoss`, in eval mode, under bf16 autocast on a GPU when
    `bf16` (as the Trainer's default), float32 otherwise. Afterwards `ref_model` may be deleted.

    Under torchrun every rank must call it with the same examples: each rank computes an equal
    share of the batches (ranks run the same number of forwards, which a sharded FSDP2 model
    needs) and the results are all-gathered, so every rank ends with every pair's values.
    """
    import torch.distributed as dist

    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    if not examples:
        return examples
    device = next(ref_model.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    was_training = ref_model.training
    ref_model.eval()
    order = sorted(range(len(examples)), key=lambda i: -max(len(examples[i].chosen.ids), len(examples[i].rejected.ids)))
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    per_rank = -(-len(batches) // world)
    mine = batches[rank * per_rank:(rank + 1) * per_rank]
    mine += [batches[-1]] * (per_rank - len(mine))  # equal forward counts on every rank (results ignored)
    results: dict[int, tuple[float, float]] = {}
    t0 = time.perf_counter()
    try:
        for n_done, idx in enumerate(mine, 1):
            chunk = [examples[i] for i in idx]
            batch = collate_padded([e.chosen for e in chunk] + [e.rejected for e in chunk], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast:
                chosen, rejected, _ = _pair_logps(ref_model, batch)
            results.update(zip(idx, zip(chosen.tolist(), rejected.tolist())))
            if progress and rank == 0 and (time.perf_counter() - t0 > 10 or n_done == len(mine)):
                elapsed = time.perf_counter() - t0
                print(f"reference log-probs: {n_done}/{len(mine)} batches{' per rank' if world > 1 else ''}, "
                      f"{elapsed:.0f}s, eta {elapsed / n_done * (len(mine) - n_done):.0f}s", file=sys.stderr, flush=True)
    finally:
        ref_model.train(was_training)
    if distributed:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, results)
        for part in gathered:
            results.update(part)
    for i, (c, r) in results.items():
        examples[i].ref_chosen_logp, examples[i].ref_rejected_logp = c, r
    return examples


def sample_preference_pairs(model: nn.Module, tokenizer, problems: Sequence[dict], k: int = 4,
                            temperature: float = 0.7, max_new_tokens: int = 320, max_pairs_per_prompt: int = 2,
                            tools: bool = True, seed: int = 0) -> list[dict]:
    """On-policy pairs: k graded samples per problem from `model` (python blocks run when `tools`),
    paired by `build_preference_pairs` (correct = chosen, wrong = rejected)."""
    from .rft import ModelSampler, rejection_sample
    from .sandbox import Session

    sampler = ModelSampler(model, tokenizer, max_new_tokens, tools=(lambda: Session(timeout=2.0)) if tools else None,
                           name="policy")
    result = rejection_sample([sampler], problems, k, temperature, seed=seed, progress=False)
    return build_preference_pairs(result.samples, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)


# ---------------------------------------------------------------------------------------------
# The loss


@dataclass
class DPOLoss:
    """`loss_fn(model, batch) -> (loss, metrics)` for `mathlm.train.Trainer` on `collate_preference` batches.

    beta, loss_type (sigmoid = DPO, robust, ipo, hinge), label_smoothing, rpo_alpha: as in
    `mathlm.losses.dpo_loss`. reference_free: ignore the reference (h = log pi(y_w) - log pi(y_l));
    otherwise the batch must carry the precomputed reference log-probs.
    length_normalized: divide policy and reference log-probs by each response's token count
    (what TRL feeds IPO). rpo_alpha > 0 adds the length-normalised NLL of the chosen responses.
    weighted: multiply each pair's loss by batch["weights"] (e.g. `hard_sample_weights`):
    loss = mean_i w_i * l_i; the metrics stay unweighted batch means.
    """

    normalization: ClassVar[str] = "micro_batches"  # a mean over pairs (mathlm.train.LossFn)
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    rpo_alpha: float = 0.0
    reference_free: bool = False
    length_normalized: bool = False
    weighted: bool = False

    def __post_init__(self):
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not one of {DPO_LOSS_TYPES}")

    def _loss(self, chosen, rejected, ref_chosen, ref_rejected, nll):
        refs = ({"reference_free": True} if self.reference_free else
                {"ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected})
        return dpo_loss(chosen, rejected, **refs, beta=self.beta, loss_type=self.loss_type,
                        label_smoothing=self.label_smoothing, chosen_nll=nll, rpo_alpha=self.rpo_alpha)

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        chosen, rejected, counts = _pair_logps(model, batch)  # (B,), (B,), (2B,)
        B = chosen.shape[0]
        ref_chosen = ref_rejected = None
        if not self.reference_free:
            if "ref_chosen_logps" not in batch:
                raise ValueError("the batch has no ref_chosen_logps: run precompute_reference_logps(ref_model, "
                                 "examples, pad_id) before training, or use DPOLoss(reference_free=True)")
            ref_chosen, ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        counts = counts.clamp_min(1).to(chosen.dtype)
        nll = -chosen / counts[:B] if self.rpo_alpha > 0 else None
        if self.length_normalized:
            chosen, rejected = chosen / counts[:B], rejected / counts[B:]
            if not self.reference_free:
                ref_chosen, ref_rejected = ref_chosen / counts[:B], ref_rejected / counts[B:]
        parts = (chosen, rejected, ref_chosen, ref_rejected, nll)
        loss, metrics = self._loss(*parts)
        if not self.weighted:
            return loss, metrics
        weights = batch["weights"].to(loss.device, torch.float32)
        if weights.shape != (B,):
            raise ValueError(f"batch['weights'] has shape {tuple(weights.shape)}, expected ({B},) (one per pair)")
        # dpo_loss averages over the batch; each pair's own loss comes from a call on that pair alone.
        per_pair = torch.stack([self._loss(*(None if x is None else x[i:i + 1] for x in parts))[0]
                                for i in range(B)])  # (B,)
        return (weights * per_pair).mean(), metrics
