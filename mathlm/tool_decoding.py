"""Tool-integrated decoding, the text side: what `mathlm.sampling.generate` needs to watch each
sequence's decoded text and to run the python blocks it writes.

- `TextWatcher` decodes one sequence incrementally (only the last token or two are decoded per step,
  as Hugging Face's text streamer does) and reports stop strings and closed python blocks, searching
  only the tail of the text that the newest token could have completed.
- `ToolRunner` runs the blocks in one sandbox session per sequence on a thread pool, so the rest of
  the batch keeps decoding while a block runs (the sandbox is process-based: the threads only wait).

The block format is the data's (mathlm.data.format): the model writes "```python\\n<code>\\n```";
the engine runs <code> and appends "\\n```output\\n<result>\\n```\\n" (no leading newline when the
model's last token already ended the line).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from .data.format import CODE_CLOSE, CODE_OPEN
from .data.format import output_block as data_output_block


def output_block(result: str, after_newline: bool = False) -> str:
    """The data format's output block for `result`, without its leading newline when the text
    before it already ends a line."""
    block = data_output_block(result)
    return block[1:] if after_newline else block


class TextWatcher:
    """The decoded text of one growing token list, with stop-string and python-block detection.

    `tokens` is the sequence's own completion list (the engine appends to it); call `push()` after
    appending sampled tokens, `push_tool_output()` after appending a tool's output tokens. Stop strings
    and code fences are searched only in text the model produced itself, never inside output blocks.
    """

    def __init__(self, tokenizer: Any, tokens: list[int], stop: Sequence[str] = (), watch_code: bool = False):
        self.tokenizer, self.tokens = tokenizer, tokens
        self.stop, self.watch_code = tuple(stop), watch_code
        self.text = ""
        self.prefix_offset = 0  # tokens[prefix_offset:read_offset] decode to the tail of `text`
        self.read_offset = 0
        self.floor = 0  # searches start here: text before it is settled or came from a tool
        self.code_start: int | None = None  # where the code of an open python block starts
        self.hit_stop = False  # set by push(): a stop string was completed
        self.closed_code: str | None = None  # set by push(): the code of the block just closed

    def _advance(self) -> int:
        """Decode the new tokens; returns the text length before them.

        Decoding a window that starts a token or two back keeps sentencepiece's leading-space handling
        right; text ending in U+FFFD is an incomplete UTF-8 byte sequence: wait for the next token.
        """
        old_len = len(self.text)
        window = self.tokens[self.prefix_offset:]
        before = self.tokenizer.decode(window[:self.read_offset - self.prefix_offset])
        now = self.tokenizer.decode(window)
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.text += now[len(before):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)
        return old_len

    def push(self) -> None:
        old_len = self._advance()
        text, self.hit_stop, self.closed_code = self.text, False, None
        for s in self.stop:
            if text.find(s, max(self.floor, old_len - len(s) + 1)) >= 0:
                self.hit_stop = True
                return
        if not self.watch_code:
            return
        if self.code_start is None:
            i = text.find(CODE_OPEN, max(self.floor, old_len - len(CODE_OPEN) + 1))
            if i < 0:
                return
            self.code_start = i + len(CODE_OPEN)
        # The opener's own newline may double as the closer's ("```python\n```": empty code).
        j = text.find(CODE_CLOSE, max(self.code_start - 1, old_len - len(CODE_CLOSE) + 1))
        if j >= 0:
            self.closed_code = text[self.code_start:max(j, self.code_start)]
            self.code_start, self.floor = None, j + len(CODE_CLOSE)

    def push_tool_output(self) -> None:
        self._advance()
        self.floor = len(self.text)

    def output_text(self, result: str) -> str:
        """The output block for `result`, fitted to the text so far; lone surrogates (which no
        tokenizer encodes) become "?", so any tool's output is safe to tokenize."""
        return output_block(result.encode("utf-8", "replace").decode("utf-8"), after_newline=self.text.endswith("\n"))


class ToolRunner:
    """Runs python blocks in per-sequence sessions from `factory()` (e.g. `lambda: Session(timeout=2)`)
    on a thread pool. `submit` returns a Future of the session's output text; errors and timeouts are
    the session's output text too. Sessions are created on first use and closed by `close()`."""

    def __init__(self, factory: Callable[[], Any], max_workers: int):
        self.factory = factory
        self.sessions: dict[int, Any] = {}
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mathlm-tool")

    def submit(self, key: int, code: str) -> Future:
        session = self.sessions.get(key)
        if session is None:
            session = self.factory()
            if not callable(getattr(session, "run", None)):
                raise ValueError(f"tools() returned {type(session).__name__}, which has no run(code) method; "
                                 f"tools must be a factory of sandbox sessions, e.g. lambda: Session()")
            self.sessions[key] = session
        return self.pool.submit(session.run, code)

    def release(self, key: int) -> None:
        """Close the session of a finished sequence (mathlm's sessions only drop their block history:
        the worker processes belong to a shared pool), so a long stream holds only the live ones."""
        session = self.sessions.pop(key, None)
        close = getattr(session, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for session in self.sessions.values():
            close = getattr(session, "close", None)
            if close is not None:
                close()
        self.sessions.clear()
