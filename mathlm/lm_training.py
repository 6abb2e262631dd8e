"""Next-token training with the one Trainer, as pretraining and SFT recipes run it.

- `lm_examples`: records (loss on the response only) or raw texts (every token a target) -> examples.
- `lm_batches`: examples packed into rows of `seq_len` tokens (documents never attend across each
  other), resumable micro-batches.
- `train_lm(...)`: pretraining or SFT; optionally evaluates greedy accuracy on a validation split every
  `eval_every` steps and restores the best weights at the end (`BestWeights`: starting checkpoints
  are chosen on validation data, never on the test split).
"""
from __future__ import annotations

import copy
from functools import partial
from typing import Sequence

import torch

from . import distributed as D
from .batching import BatchIterator, SFTExample, collate_packed, encode_sft_records, pack_examples
from .model import Transformer
from .train import Trainer, TrainConfig, causal_lm_loss


def lm_examples(tokenizer, records: Sequence[dict] | None = None, texts: Sequence[str] | None = None, *,
                response_key: str = "mixed", max_len: int = 512) -> list[SFTExample]:
    """SFT examples from records (loss on the response only) or pretraining examples from raw
    texts (every token a target, BOS ... EOS, cut at max_len)."""
    if (records is None) == (texts is None):
        raise ValueError("pass exactly one of records= (SFT) or texts= (pretraining)")
    if records is not None:
        return encode_sft_records(records, tokenizer, max_len, response_key=response_key)
    out = []
    for text in texts:
        ids = tokenizer.encode(text, bos=True, eos=True)[:max_len + 1]
        if len(ids) >= 2:
            out.append(SFTExample(ids, 1))
    return out


def lm_batches(examples: Sequence[SFTExample], tokenizer, batch_size: int, seq_len: int, seed: int = 0) -> BatchIterator:
    """Pack examples into rows of `seq_len` tokens (document_ids keep them apart) and iterate.

    A dataset too small for one batch of `batch_size` rows gets smaller batches (a notice says so)."""
    rows = pack_examples(examples, seq_len)
    world = D.get_world_size()
    if len(rows) < batch_size:
        smaller = len(rows) // world * world
        if smaller < world:
            raise ValueError(f"{len(examples)} examples pack into {len(rows)} rows of {seq_len} tokens: too few "
                             f"for {world} ranks")
        if D.is_main_process():
            print(f"note: {len(examples)} examples pack into {len(rows)} rows of {seq_len} tokens; batch_size "
                  f"{batch_size} -> {smaller}", flush=True)
        batch_size = smaller
    return BatchIterator(rows, batch_size, partial(collate_packed, seq_len=seq_len, pad_id=tokenizer.pad_id), seed=seed)


class BestWeights:
    """Keeps a copy of the weights with the best validation score seen so far."""

    def __init__(self, metric: str = "accuracy"):
        self.metric, self.best, self.step, self.state = metric, float("-inf"), -1, None
        self.history: list[dict] = []

    def update(self, model: torch.nn.Module, step: int, results: dict) -> None:
        self.history.append({"step": step, **results})
        if results[self.metric] > self.best:
            self.best, self.step = results[self.metric], step
            self.state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def train_lm(model: Transformer, tokenizer, examples: Sequence[SFTExample], train: TrainConfig, *,
             batch_size: int, seq_len: int, val_problems: Sequence[dict] | None = None, eval_every: int = 0,
             eval_kwargs: dict | None = None, loss_fn=causal_lm_loss) -> tuple[Trainer, BestWeights | None]:
    """Train on `examples` for `train.max_steps`; with `val_problems`, evaluate greedy accuracy every
    `eval_every` steps (and at the end) and leave the model at its best validation weights."""
    from .evaluation import evaluate_model

    batches = lm_batches(examples, tokenizer, batch_size, seq_len, seed=train.seed)
    best = BestWeights() if val_problems else None

    def eval_fn(m):
        summary = evaluate_model(m, tokenizer, val_problems, **(eval_kwargs or {}))["summary"]
        best.update(m, trainer.global_step, {"accuracy": summary["accuracy"]})
        return {"val_accuracy": summary["accuracy"]}

    if best is not None and eval_every:
        train = copy.copy(train)
        train.eval_every = eval_every
    trainer = Trainer(model, train, loss_fn, batches, eval_fn if best is not None else None, tokenizer=tokenizer)
    trainer.train()
    if best is not None:
        best.restore(model)
    return trainer, best
