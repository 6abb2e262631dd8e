"""Chat templates rendered exactly as Hugging Face transformers renders them.

A chat template is a Jinja program shipped with a checkpoint (`chat_template.jinja`, or
`chat_template` in `tokenizer_config.json`). Rendering it the way transformers does means the same
Jinja environment: `trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension, a `tojson`
filter that does not escape HTML (json.dumps, `ensure_ascii=False`), and the globals
`raise_exception(message)` and `strftime_now(format)`. The template sees `messages`,
`add_generation_prompt`, `tools=None`, `documents=None` and the tokenizer's named special tokens
(`bos_token`, `eos_token`, `pad_token`, `unk_token`, ... as strings). Keys whose value is None are
dropped from each message first, as transformers does.

Templates come from the internet: they run in Jinja's ImmutableSandboxedEnvironment (no attribute
access to Python internals, no mutation of the inputs), never as Python code. The `{% generation %}`
tag some templates use to mark assistant tokens renders its body unchanged.

Also here: the system prompts the recipes use by default for chat checkpoints
(Qwen2.5-Math's chain-of-thought and tool-integrated instructions).
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Sequence

# Qwen2.5-Math's model card: the system turn for chain-of-thought (CoT) and tool-integrated reasoning (TIR).
COT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TIR_INSTRUCTION = ("Please integrate natural language reasoning with programs to solve the problem above, "
                   "and put your final answer within \\boxed{}.")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_chat_template(source: str):
    """The jinja2 Template for `source`, in transformers' environment (cached per source text)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """`{% generation %}...{% endgeneration %}` (assistant-mask markers): renders the body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"the chat template does not parse (line {e.lineno}): {e.message}") from e


def check_messages(messages: Sequence[dict]) -> list[dict]:
    """Validate a conversation; returns copies of the messages without their None-valued keys."""
    if isinstance(messages, (str, dict)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.80}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f"message {i} must be a dict with a string 'role', got {m!r:.80}")
        out.append({k: v for k, v in m.items() if v is not None})
    return out


def render_chat_template(source: str, messages: Sequence[dict], add_generation_prompt: bool = False,
                         special_tokens: dict[str, str] | None = None, **kwargs: Any) -> str:
    """Render `messages` with the template `source`; `special_tokens` maps bos_token/eos_token/... to
    their strings; `kwargs` are further template variables (they override the special tokens)."""
    import jinja2

    template = compile_chat_template(source)
    variables = {**(special_tokens or {}), **kwargs}
    try:
        return template.render(messages=check_messages(messages), tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"the chat template failed on these messages: {e}") from e
