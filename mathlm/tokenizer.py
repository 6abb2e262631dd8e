"""Tokenizers of real checkpoints and of our own data, and the prompt/response template every recipe uses.

Two backends behind one `Tokenizer`:
- `tokenizer.json` (byte-level BPE of Qwen2, Llama-3, DeepSeek-Math, ...) runs on Hugging Face's
  `tokenizers` library, so encoding equals `transformers.AutoTokenizer` on the same folder token for
  token: special-token strings inside the text become their ids, `encode(text, bos=b)` is
  `encode(text, add_special_tokens=b)` (the folder's post-processor adds BOS where the model wants
  one), `decode` is HF's (`skip_special_tokens=False`; transformers 5 skips
  `clean_up_tokenization_spaces` for BPE models and so do we), `len` counts the added tokens.
  `tokenizer_config.json` is applied as transformers applies it: added tokens missing from the file
  are added at their ids, an explicit `add_bos_token`/`add_eos_token` rebuilds the post-processor.
- `tokenizer.model` (sentencepiece) as before; the folders mathlm writes for these also hold an
  equivalent tokenizer.json (mathlm.tokenizer_json) so that transformers loads them. `Tokenizer.train` builds one for our own data: BPE
  with byte fallback (no unknown characters, ever), every digit its own token (a small model then
  does arithmetic digit by digit), text kept verbatim (identity normalization, no dummy prefix)
  because indentation and newlines matter in python blocks, and newlines and code fences as atomic
  tokens (`ATOMIC_SYMBOLS`), so no piece spans the boundary of a python block.

`Tokenizer.from_pretrained(folder)` also reads the chat template (`chat_template.jinja`, or
`chat_template` in the config), `generation_config.json` (its `eos_token_id`, an int or a list,
joins the config's EOS in `eos_ids`) and mathlm's `prompt_format.json`.

The template (`PromptFormat`): "plain" is `PROMPT_TEMPLATE.format(question=...)` encoded with BOS;
"chat" renders [system, user question] through the checkpoint's chat template with the generation
prompt, and the response ends with the template's end-of-turn token (`<|im_end|>`, `<|eot_id|>`)
instead of EOS. The loss covers the response only, so `encode_example` returns the ids and the index
where the response starts. A folder with a chat template defaults to "chat" with Qwen2.5-Math's
instruction as the system turn; the format a run used is saved beside the tokenizer.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

from .chat_template import COT_INSTRUCTION, render_chat_template

PROMPT_TEMPLATE = "Question: {question}\nAnswer:\n"
TOKENIZER_FILE = "tokenizer.model"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG = "generation_config.json"
PROMPT_FORMAT_FILE = "prompt_format.json"
# The special tokens transformers names (and hands to chat templates as strings).
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Pieces that no learnt piece may span. The sampling engine pauses when a python block's closing
# fence appears and appends the output block itself; a piece like ")\n```\n```" (close this block
# and open the next fence) would make the model write half of the next fence on its own.
ATOMIC_SYMBOLS = ("\n", "```python", "```output", "```")
PROMPT_STYLES = ("plain", "chat")
_MARK = "\u2063MATHLM\u2063"  # an assistant turn no template rewrites: finds where a turn ends


@dataclass
class PromptFormat:
    style: str = "plain"                 # "plain": PROMPT_TEMPLATE; "chat": the checkpoint's chat template
    system: str | None = None            # chat: the system turn (None: none; the template's default, if any)

    def __post_init__(self):
        if self.style not in PROMPT_STYLES:
            raise ValueError(f"prompt style ({self.style!r}) must be one of {PROMPT_STYLES}")


def has_tokenizer(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a tokenizer (tokenizer.json or a sentencepiece tokenizer.model)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / TOKENIZER_JSON).is_file() or (folder / TOKENIZER_FILE).is_file())


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _eos_list(value, source: str) -> list[int]:
    if value is None:
        return []
    ids = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{source}: eos_token_id ({value!r}) must be an int or a list of ints")
    return ids


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (WordPiece-era spaces before punctuation)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


class Tokenizer:
    def __init__(self, model_proto: bytes | None = None, *, hf_json: str | None = None, config: dict | None = None,
                 chat_template: str | None = None, generation_config: dict | None = None,
                 prompt_format: PromptFormat | None = None):
        """A sentencepiece model (`model_proto`) or a `tokenizers` JSON (`hf_json`), with the folder's
        tokenizer_config (`config`), chat template and generation_config."""
        if (model_proto is None) == (hf_json is None):
            raise ValueError("give exactly one of model_proto (sentencepiece) or hf_json (tokenizer.json text)")
        self._proto, self.config = model_proto, dict(config or {})
        self.generation_config = dict(generation_config or {})
        self.chat_template = chat_template
        self.sp = self.hf = None
        if model_proto is not None:
            self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
            self._special = {name: self.sp.id_to_piece(i) for name, i in
                             (("bos_token", self.sp.bos_id()), ("eos_token", self.sp.eos_id()),
                              ("unk_token", self.sp.unk_id()), ("pad_token", self.sp.pad_id())) if i >= 0}
        else:
            self._load_hf(hf_json)
        self._eos_ids = self._collect_eos_ids()
        self._turn_end_known, self._turn_end = False, None  # computed on first use
        if prompt_format is None:
            prompt_format = PromptFormat("chat", COT_INSTRUCTION) if chat_template else PromptFormat()
        self.set_prompt_format(prompt_format.style, prompt_format.system)

    def _load_hf(self, hf_json: str) -> None:
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as HFTokenizer

        self.hf = hf = HFTokenizer.from_str(hf_json)
        cfg = self.config
        named = {name: _token_text(cfg.get(name)) for name in NAMED_SPECIAL_TOKENS}
        self._special = {name: token for name, token in named.items() if token}
        # Added tokens the config declares and the file lacks, at the ids the config gives them.
        for key, tok in sorted((cfg.get("added_tokens_decoder") or {}).items(), key=lambda kv: int(kv[0])):
            content = _token_text(tok)
            if content is None or hf.token_to_id(content) is not None:
                continue
            props = {k: tok[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in tok}
            hf.add_tokens([AddedToken(content, **props)])
            if hf.token_to_id(content) != int(key):
                raise ValueError(f"{TOKENIZER_CONFIG}: added token {content!r} is declared at id {key} but the "
                                 f"vocabulary places it at {hf.token_to_id(content)}")
        extra = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []
        extra = list(extra.values()) if isinstance(extra, dict) else list(extra)
        missing = [t for t in [*self._special.values(), *map(_token_text, extra)] if t and hf.token_to_id(t) is None]
        if missing:
            hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(missing)])
        if "add_bos_token" in cfg or "add_eos_token" in cfg or hf.post_processor is None:
            self._rebuild_post_processor()
        hf.encode_special_tokens = bool(cfg.get("split_special_tokens", False))
        hf.no_truncation()
        hf.no_padding()

    def _rebuild_post_processor(self) -> None:
        """What transformers does when the config sets add_bos_token/add_eos_token (or there is no
        post-processor): `[BOS] $A [EOS]`, each special only when asked for and defined."""
        from tokenizers import processors

        bos = self._special.get("bos_token") if self.config.get("add_bos_token") else None
        eos = self._special.get("eos_token") if self.config.get("add_eos_token") else None

        def seq(name: str, type_id: int) -> str:
            parts = [f"{bos}:{type_id}"] if bos else []
            return " ".join([*parts, f"${name}:{type_id}", *([f"{eos}:{type_id}"] if eos else [])])

        specials = [(t, self.hf.token_to_id(t)) for t in dict.fromkeys(t for t in (bos, eos) if t)]
        self.hf.post_processor = processors.TemplateProcessing(single=seq("A", 0), pair=f"{seq('A', 0)} {seq('B', 1)}",
                                                               special_tokens=specials)

    def _collect_eos_ids(self) -> tuple[int, ...]:
        ids = [] if self.eos_id is None else [self.eos_id]
        ids += _eos_list(self.generation_config.get("eos_token_id"), GENERATION_CONFIG)
        return tuple(dict.fromkeys(ids))

    # ---- construction

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "Tokenizer":
        """A checkpoint folder: tokenizer.json (preferred, as transformers does; except in the folders
        mathlm writes for its own sentencepiece models, where tokenizer.json is a conversion) or tokenizer.model,
        with tokenizer_config.json, the chat template, generation_config.json and prompt_format.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        config = _read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: transformers uses "default"
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if (folder / CHAT_TEMPLATE_FILE).is_file():
            template = (folder / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
        generation = _read_json(folder / GENERATION_CONFIG) if (folder / GENERATION_CONFIG).is_file() else {}
        prompt = None
        if (folder / PROMPT_FORMAT_FILE).is_file():
            saved = _read_json(folder / PROMPT_FORMAT_FILE)
            unknown = set(saved) - {f.name for f in dataclasses.fields(PromptFormat)}
            if unknown:
                raise ValueError(f"{folder / PROMPT_FORMAT_FILE}: unknown field(s) {sorted(unknown)}; "
                                 f"expected style, system")
            prompt = PromptFormat(**saved)
        kw = dict(config=config, chat_template=template or None, generation_config=generation, prompt_format=prompt)
        own = config.get("mathlm_backend") == "sentencepiece"  # mathlm's model, tokenizer.json its conversion
        if (folder / TOKENIZER_JSON).is_file() and not (own and (folder / TOKENIZER_FILE).is_file()):
            return cls(hf_json=(folder / TOKENIZER_JSON).read_text(encoding="utf-8"), **kw)
        if (folder / TOKENIZER_FILE).is_file():
            return cls(cls._read_proto(folder / TOKENIZER_FILE), **kw)
        raise FileNotFoundError(f"{folder} holds neither {TOKENIZER_JSON} nor {TOKENIZER_FILE}")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """A sentencepiece `.model` file, a `tokenizer.json`, or a checkpoint folder (`from_pretrained`)."""
        path = Path(path)
        if path.is_dir():
            if not has_tokenizer(path):
                raise FileNotFoundError(f"no sentencepiece model or {TOKENIZER_JSON} in {path}")
            return cls.from_pretrained(path)
        if path.suffix == ".json" and path.is_file():
            return cls(hf_json=path.read_text(encoding="utf-8"))
        return cls(cls._read_proto(path))

    @staticmethod
    def _read_proto(path: Path) -> bytes:
        if not path.is_file():
            raise FileNotFoundError(f"no sentencepiece model at {path}")
        proto = path.read_bytes()
        try:
            spm.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as e:
            raise ValueError(f"{path} is not a sentencepiece model: {e}") from e
        return proto

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

    # ---- saving

    def save(self, path: str | os.PathLike) -> None:
        """The sentencepiece model to the file `path` (see `save_pretrained` for a whole folder)."""
        if self.sp is None:
            raise ValueError(f"save({str(path)!r}) writes a sentencepiece model; this tokenizer is a "
                             f"{TOKENIZER_JSON} one: use save_pretrained(folder)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self._proto)
        os.replace(tmp, path)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """The tokenizer files of a Hugging Face folder: tokenizer.json or tokenizer.model,
        tokenizer_config.json, chat_template.jinja and generation_config.json (when there are ones) and
        prompt_format.json. `save_hf_checkpoint` completes generation_config.json from the model's config."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in self.config.items() if k != "chat_template"}
        if self.sp is not None:
            from .tokenizer_json import sentencepiece_to_json

            self.save(folder / TOKENIZER_FILE)
            hf_json = sentencepiece_to_json(self.sp, ATOMIC_SYMBOLS)  # None unless it reproduces sp exactly
            if hf_json is not None:
                (folder / TOKENIZER_JSON).write_text(hf_json, encoding="utf-8")
            # No add_bos_token/add_eos_token: the post-processor of tokenizer.json adds the BOS.
            config = {**self._special, "legacy": False, "add_prefix_space": False,
                      "clean_up_tokenization_spaces": False, **config,
                      "tokenizer_class": "PreTrainedTokenizerFast" if hf_json else "LlamaTokenizer",
                      "mathlm_backend": "sentencepiece"}
        else:
            (folder / TOKENIZER_JSON).write_text(self.hf.to_str(pretty=True), encoding="utf-8")
            config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        if self.chat_template:
            (folder / CHAT_TEMPLATE_FILE).write_text(self.chat_template, encoding="utf-8")
        if self.generation_config:  # where eos_ids beyond the EOS come from
            (folder / GENERATION_CONFIG).write_text(json.dumps(self.generation_config, indent=2))
        (folder / PROMPT_FORMAT_FILE).write_text(json.dumps(dataclasses.asdict(self.prompt_format), indent=2))

    def __getstate__(self):  # picklable for DataLoader workers and multiprocessing
        return {"proto": self._proto, "hf_json": self.hf.to_str() if self.hf is not None else None,
                "config": self.config, "chat_template": self.chat_template,
                "generation_config": self.generation_config, "prompt_format": self.prompt_format}

    def __setstate__(self, state):  # tokens added at load time are in the JSON already: nothing is added twice
        self.__init__(state["proto"], hf_json=state.get("hf_json"), config=state.get("config"),
                      chat_template=state.get("chat_template"), generation_config=state.get("generation_config"),
                      prompt_format=state.get("prompt_format"))

    # ---- ids

    def __len__(self) -> int:
        return self.sp.get_piece_size() if self.sp is not None else self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return len(self)

    def token_to_id(self, token: str) -> int | None:
        if self.sp is not None:
            i = self.sp.piece_to_id(token)
            return None if i == self.sp.unk_id() and token != self.sp.id_to_piece(i) else i
        return self.hf.token_to_id(token)

    def _special_id(self, name: str) -> int | None:
        token = self._special.get(name)
        return None if token is None else self.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        """BOS; None when the model has none (Qwen2)."""
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        """The tokenizer's own EOS (sentencepiece's, or tokenizer_config's eos_token)."""
        eos = self._special_id("eos_token")
        if eos is None and self.hf is not None:
            eos = next(iter(_eos_list(self.generation_config.get("eos_token_id"), GENERATION_CONFIG)), None)
        return eos

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every id generation stops on: the EOS, then generation_config's eos_token_id(s)."""
        return self._eos_ids

    @property
    def pad_id(self) -> int:
        """The model's pad id; without one (LLaMA), EOS pads."""
        pad = self._special_id("pad_token")
        return pad if pad is not None else self.eos_id

    @property
    def special_tokens(self) -> dict[str, str]:
        """bos_token, eos_token, ... -> their strings (what chat templates see)."""
        return dict(self._special)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(i) if self.sp is not None else self.hf.id_to_token(i)

    # ---- text

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of `text`; `bos` adds the model's special tokens (HF `add_special_tokens`; for
        sentencepiece, BOS), `eos` appends EOS."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if self.sp is not None:
            ids = ([self.bos_id] if bos else []) + self.sp.encode(text)
        else:
            ids = self.hf.encode(text, add_special_tokens=bos).ids
        return ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`. A tokenizer.json tokenizer skips ids beyond its vocabulary, as transformers
        does (checkpoints pad the embedding matrix: Qwen2.5 has 151,936 rows for 151,665 tokens);
        sentencepiece refuses them."""
        ids = [int(i) for i in ids]
        n = len(self)
        bad = [i for i in ids if not 0 <= i < n and (i < 0 or self.sp is not None)]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {n})")
        if self.sp is not None:
            return self.sp.decode(ids)
        text = self.hf.decode(ids, skip_special_tokens=False)
        is_bpe = type(self.hf.model).__name__ == "BPE"
        force = self.config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
        if self.config.get("clean_up_tokenization_spaces", False) and (not is_bpe or force):
            text = _clean_up_tokenization(text)
        return text

    # ---- chat

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = False,
                            tokenize: bool = False, **kwargs) -> str | list[int]:
        """The conversation rendered by the checkpoint's chat template, exactly as transformers renders
        it; `tokenize=True` returns `encode(rendered, bos=False)`. kwargs are template variables."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template (no chat_template.jinja and no chat_template "
                             "in tokenizer_config.json); use the plain prompt format")
        text = render_chat_template(self.chat_template, messages, add_generation_prompt, self._special, **kwargs)
        return self.encode(text, bos=False) if tokenize else text

    def set_prompt_format(self, style: str, system: str | None = None) -> None:
        """The template `encode_prompt`/`encode_example` use: "plain" or "chat" (needs a chat template)."""
        fmt = PromptFormat(style, system)
        if style == "chat" and not self.chat_template:
            raise ValueError("prompt style 'chat' needs a chat template; this tokenizer has none")
        self.prompt_format = fmt

    def _messages(self, question: str) -> list[dict]:
        system = self.prompt_format.system
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]

    @property
    def turn_end_id(self) -> int | None:
        """The token the chat template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`, EOS);
        None without a template or when the turn ends in plain text."""
        if not self._turn_end_known:
            self._turn_end = self._find_turn_end() if self.chat_template else None
            self._turn_end_known = True
        return self._turn_end

    def _find_turn_end(self) -> int | None:
        msgs = [{"role": "user", "content": "1 + 1?"}]
        prompt = self.apply_chat_template(msgs, add_generation_prompt=True)
        full = self.apply_chat_template(msgs + [{"role": "assistant", "content": _MARK}])
        at = full.find(_MARK, len(prompt) if full.startswith(prompt) else 0)
        if at < 0:
            return None
        ids = self.encode(full[at + len(_MARK):], bos=False)
        added = set(self.hf.get_added_tokens_decoder()) if self.hf is not None else set()
        special = added | set(self.eos_ids)
        return next((i for i in ids if i in special), None)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """What generation stops on by default: `eos_ids`, plus the end-of-turn token in chat style."""
        if self.prompt_format.style == "chat" and self.turn_end_id is not None:
            return tuple(dict.fromkeys([*self.eos_ids, self.turn_end_id]))
        return self.eos_ids

    # ---- the prompt/response template

    @staticmethod
    def format_prompt(question: str) -> str:
        """The plain template's prompt text (a static method: `Tokenizer.format_prompt(q)`)."""
        return PROMPT_TEMPLATE.format(question=question.strip())

    def prompt_text(self, question: str) -> str:
        """The prompt text of this tokenizer's format: the plain template, or the rendered chat turns."""
        if self.prompt_format.style == "chat":
            return self.apply_chat_template(self._messages(question.strip()), add_generation_prompt=True)
        return self.format_prompt(question)

    def encode_prompt(self, question: str) -> list[int]:
        """The prompt ids: BOS + the templated question (plain), or the chat template's tokens (chat)."""
        return self.encode(self.prompt_text(question), bos=self.prompt_format.style == "plain")

    def response_end_id(self) -> int:
        """The last token of a training response: the end of turn in chat style, else EOS."""
        if self.prompt_format.style == "chat" and self.turn_end_id is not None:
            return self.turn_end_id
        return self.eos_id

    def encode_example(self, question: str, response: str) -> tuple[list[int], int]:
        """(ids, response_start): prompt ids followed by the response ids and its end token.

        The loss covers ids[response_start:], i.e. with next-token labels `labels = ids[1:]`, the
        positions t >= response_start - 1 of the inputs `ids[:-1]`.
        """
        prompt = self.encode_prompt(question)
        return prompt + self.encode(response, bos=False) + [self.response_end_id()], len(prompt)
