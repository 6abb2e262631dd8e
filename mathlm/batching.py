"""From SFT records to training tensors, and the batch iterator every recipe trains from.

record -> example    `encode_sft_records`: the one prompt template (`Tokenizer.encode_example`),
                     truncation to `max_len` inputs, the optional per-sample `weight` kept.
example -> batch     `collate_padded`: one example per row, right padding.
                     `pack_examples` + `collate_packed`: several examples per row of `seq_len`
                     tokens with `document_ids`, so attention and positions restart per example.
batch -> training    `BatchIterator`: deterministic epochs (seeded shuffle), each rank its slice
                     of every global micro-batch, a position that is saved and restored exactly.

Batch layout (dicts of tensors, all (B, T) unless noted):

    tokens       int64   model inputs: ids[:-1] of each example
    labels       int64   next tokens: labels[b, t] = ids[t + 1] (-100 on padding)
    loss_mask    bool    True where labels[b, t] is a response token (the prompt is never a target)
    weights      float32 (B,) per-sample loss weights (padded batches; 1.0 when the record has none)
    document_ids int64   packed batches: which example each position belongs to
    token_weights float32 packed batches whose examples carry weights != 1: each example's weight
                 on its positions (sft_loss takes per-row weights, a packed row holds several)

Labels are already shifted, so `sft_loss(model(tokens), labels, loss_mask)` needs no slicing.
Right padding needs no attention mask: under causal attention real tokens never see the padding
that follows them, and their positions are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as dist

IGNORE_INDEX = -100
OVERFLOW_POLICIES = ("truncate", "drop", "error")


@dataclass
class SFTExample:
    ids: list[int]          # BOS + templated question + response + EOS
    response_start: int     # ids[response_start:] are the targets; 1 makes every token a target (pretraining)
    weight: float = 1.0     # per-sample loss weight (e.g. hard_sample_weights); 1 = plain SFT

    def __post_init__(self):
        if len(self.ids) < 2:
            raise ValueError(f"an example needs at least 2 tokens (an input and a target), got {len(self.ids)}")
        if not 1 <= self.response_start < len(self.ids):
            raise ValueError(f"response_start ({self.response_start}) must lie in [1, {len(self.ids) - 1}] "
                             f"for {len(self.ids)} ids: at least one target token")

    @property
    def num_inputs(self) -> int:
        """Positions this example occupies in a batch row (ids[:-1])."""
        return len(self.ids) - 1


# ------------------------------------------------------------------------------------------- records


def encode_sft_records(records: Iterable[dict], tokenizer, max_len: int, *, question_key: str = "question",
                       response_key: str = "response", weight_key: str | None = "weight",
                       overflow: str = "truncate") -> list[SFTExample]:
    """Tokenize `{question, response[, weight]}` records with the prompt template.

    max_len: model inputs per example (an example keeps at most max_len + 1 ids: inputs and the
        last target). Longer examples are cut at the end (`overflow="truncate"`: the response
        loses its tail and its EOS), skipped (`"drop"`) or refused (`"error"`). A record whose
        prompt alone leaves no response token within max_len is an error under every policy.
    response_key: which field holds the target text, e.g. "mixed", "cot" or "pot" for the
        records of mathlm.data.
    """
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow ({overflow!r}) must be one of {OVERFLOW_POLICIES}")
    if max_len < 1:
        raise ValueError(f"max_len ({max_len}) must be >= 1")
    examples = []
    for i, record in enumerate(records):
        where = record.get("_source", f"record {i}") if isinstance(record, dict) else f"record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a dict with {question_key!r} and {response_key!r}, "
                             f"got {type(record).__name__}")
        for key in (question_key, response_key):
            if not isinstance(record.get(key), str):
                raise ValueError(f"{where}: field {key!r} must be a string, got {record.get(key)!r:.60}")
        weight = record.get(weight_key, 1.0) if weight_key else 1.0
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
            raise ValueError(f"{where}: field {weight_key!r} must be a number >= 0, got {weight!r}")
        ids, start = tokenizer.encode_example(record[question_key], record[response_key])
        if start >= max_len + 1:
            raise ValueError(f"{where}: the prompt has {start} tokens, so max_len ({max_len}) leaves "
                             f"no response token to train on")
        if len(ids) > max_len + 1:
            if overflow == "error":
                raise ValueError(f"{where}: {len(ids) - 1} input tokens exceed max_len ({max_len})")
            if overflow == "drop":
                continue
            ids = ids[:max_len + 1]
        examples.append(SFTExample(ids, start, float(weight)))
    return examples


# ------------------------------------------------------------------------------------------- collate


def _check_examples(examples: Sequence[SFTExample], what: str) -> None:
    if not examples:
        raise ValueError(f"{what} needs at least one example")


def _fill_row(example: SFTExample, tokens, labels, loss_mask, row: int, offset: int) -> slice:
    """Write one example's shifted inputs/labels/mask at tokens[row, offset:]; return its slice."""
    n = example.num_inputs
    span = slice(offset, offset + n)
    ids = torch.tensor(example.ids, dtype=torch.long)
    tokens[row, span] = ids[:-1]
    labels[row, span] = ids[1:]
    # Input position t predicts ids[t + 1]: a target when t + 1 >= response_start.
    loss_mask[row, offset + example.response_start - 1:offset + n] = True
    return span


def collate_padded(examples: Sequence[SFTExample], pad_id: int, seq_len: int | None = None) -> dict[str, torch.Tensor]:
    """One example per row, right-padded to the longest (or to `seq_len`, for static shapes)."""
    _check_examples(examples, "collate_padded")
    longest = max(e.num_inputs for e in examples)
    T = longest if seq_len is None else seq_len
    if longest > T:
        raise ValueError(f"an example has {longest} inputs, more than seq_len ({seq_len})")
    B = len(examples)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    loss_mask = torch.zeros(B, T, dtype=torch.bool)
    for b, e in enumerate(examples):
        _fill_row(e, tokens, labels, loss_mask, b, 0)
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "weights": weights}


def pack_examples(examples: Sequence[SFTExample], seq_len: int) -> list[list[SFTExample]]:
    """Group examples, in order, into rows of at most `seq_len` inputs (next-fit: a row is closed
    when the next example does not fit). Deterministic; shuffle the examples first if wanted."""
    rows: list[list[SFTExample]] = []
    used = seq_len + 1  # forces a first row
    for i, e in enumerate(examples):
        if e.num_inputs > seq_len:
            raise ValueError(f"example {i} has {e.num_inputs} inputs, more than seq_len ({seq_len}); "
                             f"encode with max_len <= seq_len")
        if used + e.num_inputs > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(e)
        used += e.num_inputs
    return rows


def collate_packed(rows: Sequence[Sequence[SFTExample]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Packed rows (from `pack_examples`) as (R, seq_len) tensors with `document_ids`.

    Each example keeps its own next-token labels (the last input of one example never predicts
    the first token of the next); the padding tail of a row is one more document with no targets.
    """
    _check_examples(rows, "collate_packed")
    R = len(rows)
    tokens = torch.full((R, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((R, seq_len), IGNORE_INDEX, dtype=torch.long)
    loss_mask = torch.zeros(R, seq_len, dtype=torch.bool)
    document_ids = torch.zeros(R, seq_len, dtype=torch.long)
    token_weights = torch.ones(R, seq_len, dtype=torch.float32)
    for r, row in enumerate(rows):
        _check_examples(row, f"row {r} of collate_packed")
        offset = 0
        for d, e in enumerate(row):
            if offset + e.num_inputs > seq_len:
                raise ValueError(f"row {r} holds {sum(x.num_inputs for x in row)} inputs, more than "
                                 f"seq_len ({seq_len}); build rows with pack_examples(examples, seq_len)")
            span = _fill_row(e, tokens, labels, loss_mask, r, offset)
            document_ids[r, span] = d
            token_weights[r, span] = e.weight
            offset += e.num_inputs
        document_ids[r, offset:] = len(row)  # the padding tail: its own document
    batch = {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "document_ids": document_ids}
    if any(e.weight != 1.0 for row in rows for e in row):
        batch["token_weights"] = token_weights
    return batch


# ------------------------------------------------------------------------------------------- iteration


def _default_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BatchIterator:
    """Endless, deterministic, resumable, rank-aware micro-batches over `items`.

    items: examples for `collate_padded`, or packed rows for `collate_packed`.
    batch_size: items per global micro-batch, all ranks together; each rank collates its
        contiguous slice of batch_size // world_size items. An optimizer step of a Trainer with
        grad_accum = A consumes A micro-batches, i.e. batch_size * A items.

    Epoch e visits the items in the order `torch.randperm(n, generator seeded with seed + e)` (or
    in order when shuffle=False), cut into batches_per_epoch = n // batch_size global batches; the
    last incomplete batch is dropped (a different remainder each epoch when shuffling), so every
    step has the same shape. After the last batch the next epoch starts. The position depends only
    on (seed, epoch, batch), never on the world size, so `state_dict()` saved by K ranks resumes
    the same global batches on any number of ranks.
    """

    def __init__(self, items: Sequence[Any], batch_size: int, collate_fn: Callable[[list], Any], *,
                 shuffle: bool = True, seed: int = 0, rank: int | None = None, world_size: int | None = None):
        default_rank, default_world = _default_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank ({self.rank}) must lie in [0, world_size={self.world_size})")
        if batch_size < 1 or batch_size % self.world_size:
            raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of world_size ({self.world_size})")
        if len(items) < batch_size:
            raise ValueError(f"{len(items)} items cannot fill one batch of batch_size ({batch_size})")
        self.items, self.batch_size, self.collate_fn = items, batch_size, collate_fn
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.batch = 0, 0  # the next global batch to yield
        self._order: list[int] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.items) // self.batch_size

    def _epoch_order(self) -> list[int]:
        if self._order is None:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + self.epoch)
                self._order = torch.randperm(len(self.items), generator=g).tolist()
            else:
                self._order = list(range(len(self.items)))
        return self._order

    def global_indices(self) -> list[int]:
        """Item indices of the next global micro-batch (all ranks), without advancing."""
        start = self.batch * self.batch_size
        return self._epoch_order()[start:start + self.batch_size]

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self):
        per_rank = self.batch_size // self.world_size
        mine = self.global_indices()[self.rank * per_rank:(self.rank + 1) * per_rank]
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch, self._order = self.epoch + 1, 0, None
        return self.collate_fn([self.items[i] for i in mine])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "shuffle": self.shuffle,
                "num_items": len(self.items), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        mine = {"seed": self.seed, "shuffle": self.shuffle, "num_items": len(self.items), "batch_size": self.batch_size}
        saved = {k: state.get(k) for k in mine}
        if saved != mine:
            raise ValueError(f"the saved data position belongs to another iterator: saved {saved}, "
                             f"this iterator has {mine}")
        if not 0 <= state["batch"] < self.batches_per_epoch or state["epoch"] < 0:
            raise ValueError(f"saved position epoch {state['epoch']}, batch {state['batch']} is outside "
                             f"[0, {self.batches_per_epoch}) batches per epoch")
        self.epoch, self.batch, self._order = int(state["epoch"]), int(state["batch"]), None
