"""Chat templates render exactly what transformers renders (its own `apply_chat_template` on the same
folder is the reference): Qwen2.5- and Llama-3.1-style templates, several conversations, with and
without the generation prompt and a system turn, tool calls through `tojson`; the helpers
(`raise_exception`, `strftime_now`, loop controls, `{% generation %}`) and the sandbox."""
import json

import pytest

from mathlm import Tokenizer

transformers = pytest.importorskip("transformers")

CONVERSATIONS = {
    "user only": [{"role": "user", "content": "What is 2+2?"}],
    "system + user": [{"role": "system", "content": "Answer in one line."},
                      {"role": "user", "content": "  Solve $x^2 = 4$.  "}],
    "multi turn": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                   {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3·3 ≥ 数?"}],
    "None keys dropped": [{"role": "user", "content": "hi", "tool_calls": None},
                          {"role": "assistant", "content": "ok", "tool_calls": None}],
}
QWEN_TOOL_CALL = [{"role": "user", "content": "Compute <b>&</b>"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"function": {"name": "python", "arguments": {"code": "print('é' + \"<&>\")"}}}]},
                  {"role": "tool", "content": "é<&>"}]


@pytest.fixture(scope="module", params=["qwen2", "llama3"])
def pair(request, tmp_path_factory):
    from hf_tokenizers import write_llama3_folder, write_qwen2_folder

    write = write_qwen2_folder if request.param == "qwen2" else write_llama3_folder
    folder = write(tmp_path_factory.mktemp(request.param))
    return request.param, Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", list(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_equals_transformers(pair, name, add_generation_prompt):
    _, tok, hf = pair
    msgs = CONVERSATIONS[name]
    want = hf.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt, tokenize=False)
    assert tok.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt) == want
    want_ids = hf.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt, tokenize=True,
                                      return_dict=False)
    assert tok.apply_chat_template(msgs, add_generation_prompt=add_generation_prompt, tokenize=True) == want_ids
    assert want_ids == tok.encode(want, bos=False)


def test_tool_calls_use_tojson_without_html_escapes(tmp_path):
    """Qwen2.5's template writes tool-call arguments with tojson: non-ASCII kept, no HTML escapes."""
    from hf_tokenizers import write_qwen2_folder

    folder = write_qwen2_folder(tmp_path)
    tok, hf = Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    out = tok.apply_chat_template(QWEN_TOOL_CALL, add_generation_prompt=True)
    assert out == hf.apply_chat_template(QWEN_TOOL_CALL, add_generation_prompt=True, tokenize=False)
    assert json.dumps({"code": "print('é' + \"<&>\")"}, ensure_ascii=False) in out  # no \u00e9, no &lt;


def test_raise_exception_becomes_a_value_error(pair):
    style, tok, hf = pair
    msgs = [{"role": "system", "content": "s"}, {"role": "critic", "content": "x"}]
    want = "unknown role critic" if style == "qwen2" else "Only user and assistant roles are supported"
    with pytest.raises(Exception, match=want):
        hf.apply_chat_template(msgs, tokenize=False)
    with pytest.raises(ValueError, match=f"the chat template failed on these messages: {want}"):
        tok.apply_chat_template(msgs)


CUSTOM_TEMPLATES = {
    "loop controls": "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
                     "{% if m.role == 'system' %}{% continue %}{% endif %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    "generation tag": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
                      "{{ eos_token }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}",
    "whitespace control": "  {% for m in messages %}\n    {{ m.content }}\n  {% endfor %}\n{% if add_generation_prompt %}\n"
                          ">>{% endif %}",
    "date": "{{ strftime_now('%Y') }}|{{ messages | length }}|{{ bos_token is defined }}|{{ pad_token }}",
}


@pytest.mark.parametrize("name", list(CUSTOM_TEMPLATES))
def test_custom_templates_render_as_transformers(pair, name, tmp_path):
    """trim_blocks/lstrip_blocks, loopcontrols, the generation tag and strftime_now behave as in transformers."""
    _, tok, hf = pair
    template = CUSTOM_TEMPLATES[name]
    msgs = CONVERSATIONS["multi turn"]
    ours = Tokenizer(hf_json=tok.hf.to_str(), config=tok.config, chat_template=template)
    for gen in (False, True):
        assert ours.apply_chat_template(msgs, add_generation_prompt=gen) == \
            hf.apply_chat_template(msgs, chat_template=template, add_generation_prompt=gen, tokenize=False)


def test_template_from_config_list_and_file(tmp_path):
    """A list of named templates in tokenizer_config.json: "default" is used; chat_template.jinja wins."""
    from hf_tokenizers import write_qwen2_folder

    folder = write_qwen2_folder(tmp_path / "q")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "{{ 'D' }}"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    msgs = CONVERSATIONS["user only"]
    assert Tokenizer.from_pretrained(folder).apply_chat_template(msgs) == "D" == \
        transformers.AutoTokenizer.from_pretrained(folder).apply_chat_template(msgs, tokenize=False)
    (folder / "chat_template.jinja").write_text("F{{ messages[0].content }}")
    assert Tokenizer.from_pretrained(folder).apply_chat_template(msgs) == "FWhat is 2+2?"


def test_sandbox_and_errors(pair):
    """Templates are untrusted: Python internals are out of reach; bad inputs name what was wrong."""
    _, tok, _ = pair
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    evil = Tokenizer(hf_json=tok.hf.to_str(), config=tok.config, chat_template=escape)
    with pytest.raises(ValueError, match="the chat template failed"):
        evil.apply_chat_template(CONVERSATIONS["user only"])
    mutate = Tokenizer(hf_json=tok.hf.to_str(), config=tok.config, chat_template="{{ messages.append(1) }}")
    with pytest.raises(ValueError, match="the chat template failed"):
        mutate.apply_chat_template(CONVERSATIONS["user only"])
    broken = Tokenizer(hf_json=tok.hf.to_str(), config=tok.config, chat_template="{% for m in messages %}")
    with pytest.raises(ValueError, match=r"the chat template does not parse \(line 1\)"):
        broken.apply_chat_template(CONVERSATIONS["user only"])
    with pytest.raises(ValueError, match="messages must be a non-empty list"):
        tok.apply_chat_template([])
    with pytest.raises(ValueError, match="message 0 must be a dict with a string 'role'"):
        tok.apply_chat_template([{"content": "no role"}])
    plain = Tokenizer(hf_json=tok.hf.to_str(), config=tok.config)
    with pytest.raises(ValueError, match="this tokenizer has no chat template"):
        plain.apply_chat_template(CONVERSATIONS["user only"])
    with pytest.raises(ValueError, match="prompt style 'chat' needs a chat template"):
        plain.set_prompt_format("chat")
