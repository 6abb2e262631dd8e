"""Sentencepiece tokenizer and the one prompt/response template every recipe uses.

`Tokenizer.from_file` reads LLaMA/Mistral-style sentencepiece models (BOS/EOS/pad ids come from the
model). `Tokenizer.train` builds a BPE model for our own data with byte fallback (no unknown
characters, ever) and every digit its own token, which is what lets a small model do arithmetic
digit by digit. Text is kept verbatim (identity normalization, no dummy prefix, whitespace kept),
because indentation and newlines matter in the Python blocks of mixed solutions. Newlines and the
code fences are atomic tokens (`ATOMIC_SYMBOLS`), so no piece spans the boundary of a python block.

The template: a prompt is `PROMPT_TEMPLATE.format(question=...)`, encoded with BOS; the response is
encoded on its own and ends with EOS. The loss covers the response tokens only, so
`encode_example` returns the ids and the index where the response starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

PROMPT_TEMPLATE = "Question: {question}\nAnswer:\n"
TOKENIZER_FILE = "tokenizer.model"
# Pieces that no learnt piece may span. The sampling engine pauses when a python block's closing
# fence appears and appends the output block itself; a piece like ")\n```\n```" (close this block
# and open the next fence) would make the model write half of the next fence on its own.
ATOMIC_SYMBOLS = ("\n", "```python", "```output", "```")


class Tokenizer:
    def __init__(self, model_proto: bytes):
        self._proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    # ---- construction

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """A sentencepiece `.model` file, or a checkpoint folder holding `tokenizer.model`."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no sentencepiece model at {path}")
        proto = path.read_bytes()
        try:
            return cls(proto)
        except RuntimeError as e:
            raise ValueError(f"{path} is not a sentencepiece model: {e}") from e

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, path: str | os.PathLike | None = None,
              max_sentence_length: int = 1 << 16) -> "Tokenizer":
        """Train a BPE model (byte fallback, digits split, text verbatim) and save it to `path`.

        ids: 0 pad, 1 bos, 2 eos, 3 unk (never produced: byte fallback covers every character), then
        the atomic symbols (newline, code fences), 256 byte pieces, then the learnt pieces. `vocab_size` is an upper bound: a small corpus may
        yield fewer merges, and `len(tokenizer)` is the real size.
        """
        if vocab_size < 300:
            raise ValueError(f"vocab_size ({vocab_size}) must be >= 300 (4 special + 256 byte pieces + characters)")
        import io

        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, split_digits=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, allow_whitespace_only_pieces=True,
            character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False,
            max_sentence_length=max_sentence_length, num_threads=os.cpu_count() or 1, minloglevel=2,
            user_defined_symbols=list(ATOMIC_SYMBOLS),
        )
        tok = cls(buf.getvalue())
        if path is not None:
            tok.save(path)
        return tok

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self._proto)
        os.replace(tmp, path)

    def __getstate__(self):  # picklable for DataLoader workers and multiprocessing
        return {"proto": self._proto}

    def __setstate__(self, state):
        self.__init__(state["proto"])

    # ---- ids

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        """The model's pad id; LLaMA's tokenizer has none (-1), then EOS pads."""
        pad = self.sp.pad_id()
        return pad if pad >= 0 else self.eos_id

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    # ---- text

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        n = len(self)
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {n})")
        return self.sp.decode(ids)

    # ---- the prompt/response template

    @staticmethod
    def format_prompt(question: str) -> str:
        return PROMPT_TEMPLATE.format(question=question.strip())

    def encode_prompt(self, question: str) -> list[int]:
        """BOS + the templated question: what generation starts from."""
        return self.encode(self.format_prompt(question), bos=True)

    def encode_example(self, question: str, response: str) -> tuple[list[int], int]:
        """(ids, response_start): prompt ids followed by the response ids and EOS.

        The loss covers ids[response_start:], i.e. with next-token labels `labels = ids[1:]`, the
        positions t >= response_start - 1 of the inputs `ids[:-1]`.
        """
        prompt = self.encode_prompt(question)
        return prompt + self.encode(response, bos=False, eos=True), len(prompt)
