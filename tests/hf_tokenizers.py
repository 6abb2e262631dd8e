"""Tokenizer folders in the styles of real checkpoints, built locally with `tokenizers` (nothing is
downloaded): byte-level BPE trained on a small math corpus, with the published pre-tokenizer split
regexes, special tokens, tokenizer_config.json, generation_config.json and chat templates of
Qwen2.5 (Qwen2.5-Math) and Llama-3.1. The templates follow the published ones' structure: a
default system turn, tool calls with `tojson`, `raise_exception`, `strftime_now`, `bos_token`.
`write_tiny_qwen2_checkpoint` adds random Qwen2 weights (transformers' own save_pretrained)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import BPE

QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

QWEN_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'Please reason step by step, and put your final answer within \\\\boxed{}.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}{{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within \\\\boxed{}.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.function.name }}{{- '", "arguments": ' }}
            {{- tool_call.function.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
    {%- elif not (message.role == "system" and loop.first) %}
        {{- raise_exception('unknown role ' + message.role) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception('Only user and assistant roles are supported after the system turn') }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""


def math_corpus() -> list[str]:
    out = []
    for a in range(1, 120):
        b = (a * 37) % 101 + 1
        out.append(f"Question: Natalia sold {a} clips in April and {b} in May. How many in total?\n"
                   f"Answer: She sold {a} + {b} = {a + b} clips. The answer is \\boxed{{{a + b}}}.\n"
                   f"```python\nprint({a} + {b})\n```\n```output\n{a + b}\n```\n"
                   f"Let's compute $\\frac{{{a}}}{{{b}}}$ and isn't it ≥ √{a}? Ça va, 数学 🙂")
    return out


def _train_bpe(regex: str, vocab_size: int, nfc: bool, trim_offsets: bool) -> Tokenizer:
    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=trim_offsets, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator(math_corpus(), trainer=trainer)
    return tok


def _added_tokens_decoder(tok: Tokenizer, names: dict[str, bool]) -> dict[str, dict]:
    return {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": special} for t, special in names.items()}


def write_qwen2_folder(folder: Path, extra_in_config_only: bool = True) -> Path:
    """Qwen2.5-Math style: NFC, the Qwen2 regex (single digits), ByteLevel post-processor (no BOS),
    eos <|endoftext|>, the template inside tokenizer_config.json, generation eos [<|im_end|>, <|endoftext|>].
    With `extra_in_config_only`, one added token is declared in the config but not in tokenizer.json
    (transformers adds it at its declared id)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = _train_bpe(QWEN2_REGEX, 700, nfc=True, trim_offsets=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                    AddedToken("</tool_call>", special=False, normalized=False)])
    names = {**{t: True for t in specials}, "<tool_call>": False, "</tool_call>": False}
    decoder = _added_tokens_decoder(tok, names)
    if extra_in_config_only:
        n = tok.get_vocab_size(with_added_tokens=True)
        decoder[str(n)] = {"content": "<|box_start|>", "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
    tok.save(str(folder / "tokenizer.json"))
    im_end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    config = {"add_prefix_space": False, "added_tokens_decoder": decoder,
              "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
              "chat_template": QWEN_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
              "errors": "replace", "model_max_length": 4096, "pad_token": "<|endoftext|>",
              "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot}))
    return folder


def write_llama3_folder(folder: Path) -> Path:
    """Llama-3.1 style: no normalizer, digits in runs of up to 3, BOS added by a TemplateProcessing
    post-processor, clean_up_tokenization_spaces true (transformers 5 ignores it for BPE),
    chat_template.jinja with strftime_now, generation eos [<|end_of_text|>, <|eom_id|>, <|eot_id|>]."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = _train_bpe(LLAMA3_REGEX, 700, nfc=False, trim_offsets=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    tok.save(str(folder / "tokenizer.json"))
    config = {"added_tokens_decoder": _added_tokens_decoder(tok, {t: True for t in specials}),
              "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
              "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "chat_template.jinja").write_text(LLAMA3_TEMPLATE)
    ids = [tok.token_to_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": ids}))
    return folder


def write_tiny_qwen2_checkpoint(folder: Path, seed: int = 0) -> Path:
    """The Qwen2 tokenizer folder plus a tiny random Qwen2ForCausalLM (q/k/v biases, GQA, tied
    embeddings) written by transformers; weights larger than HF's init so that greedy choices are
    confident and varied (not one token repeated)."""
    import torch
    import transformers

    write_qwen2_folder(folder)
    n_tokens = len(transformers.AutoTokenizer.from_pretrained(folder))
    gen = json.loads((folder / "generation_config.json").read_text())
    cfg = transformers.Qwen2Config(vocab_size=n_tokens + 4, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=gen["bos_token_id"],
                                   eos_token_id=gen["eos_token_id"], attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 0.1 if "bias" in name or "embed" in name else 0.3)
            if "norm" in name:
                p.add_(1.0)
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(gen))  # save_pretrained rewrote it
    return folder
