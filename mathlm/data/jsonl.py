"""JSONL reading and writing with validation: an error names ``file:line`` and the field."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .records import FIELD_TYPES, type_name, validate_record

__all__ = ["JsonlError", "read_jsonl", "write_jsonl", "read_records"]


class JsonlError(ValueError):
    """A bad line in a JSONL file; the message starts with ``path:line:``."""


def read_jsonl(path: str | os.PathLike, required_fields: Iterable[str] | Mapping[str, type] | None = None,
               validate: Callable[[dict], None] | None = None) -> list[dict]:
    """The objects of a JSONL file, one per non-blank line.

    ``required_fields`` lists names that every object must have, or maps names to types
    (``{"question": str, "difficulty": int}``). ``validate`` may raise ValueError for
    anything else; its message is prefixed with ``path:line:``.
    """
    types = dict(required_fields) if isinstance(required_fields, Mapping) else {k: None for k in required_fields or ()}
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise JsonlError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise JsonlError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for name, t in types.items():
                if name not in obj:
                    raise JsonlError(f"{where}: missing field {name!r}")
                if t is not None and (not isinstance(obj[name], t) or isinstance(obj[name], bool) and t is not bool):
                    raise JsonlError(f"{where}: field {name!r} must be {type_name(t)}, "
                                     f"got {type(obj[name]).__name__} ({obj[name]!r:.40})")
            if validate is not None:
                try:
                    validate(obj)
                except ValueError as e:
                    raise JsonlError(f"{where}: {e}") from None
            out.append(obj)
    return out


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records (see ``mathlm.data.records``), each validated."""
    return read_jsonl(path, required_fields=FIELD_TYPES, validate=validate_record)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write one JSON object per line, atomically (a temp file renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for i, record in enumerate(records):
                if not isinstance(record, dict):
                    raise ValueError(f"record {i} must be a dict, got {type(record).__name__}")
                try:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                except (TypeError, ValueError):
                    bad = next((k for k, v in record.items() if not _serializable(v)), "?")
                    raise ValueError(f"record {i} (id={record.get('id')!r}): field {bad!r} is not JSON-serializable "
                                     f"({type(record.get(bad)).__name__})") from None
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _serializable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
