"""Command lines generated from config dataclasses: one source of defaults for every recipe.

    @dataclass
    class SFTConfig(TrainConfig):
        data: str = "data/train.jsonl"     # SFT records, JSONL
        max_len: int = 512                 # tokens per example after the template

    cfg = parse_config(SFTConfig)          # python recipes/sft.py --lr 1e-4 --no-bf16 --data x.jsonl

Each field becomes `--name` (underscores kept, dashes accepted too); the help text is the field's
`metadata["help"]` or else the `# comment` on its line in the class source. Types: int, float,
str, bool (`--flag` / `--no-flag`), `X | None` (the word `none` gives None), tuples and lists
(several values), and nested dataclasses (flattened as `--inner.field`). A `ValueError` raised by
the dataclass' `__post_init__` becomes an argparse error naming the value, not a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Sequence, TypeVar

T = TypeVar("T")

_NONE_WORDS = ("none", "None", "null")


def _field_comments(cls: type) -> dict[str, str]:
    """`name: type = default  # comment` -> {name: comment}, over the class and its dataclass bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # defined in a REPL or a string
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE):
            comments[m.group(1)] = m.group(2).strip()
    return comments


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None` / `Optional[X]`, else (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar_parser(tp: Any, optional: bool, name: str):
    if tp not in (int, float, str):
        raise TypeError(f"config field {name!r} has type {tp!r}; parse_config supports int, float, str, "
                        f"bool, X | None, tuples, lists and nested dataclasses")

    def parse(text: str):
        if optional and text in _NONE_WORDS:
            return None
        return tp(text)

    parse.__name__ = tp.__name__  # argparse names the type in its error messages
    return parse


def _add_fields(parser: argparse.ArgumentParser, cls: type, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = prefix + f.name
        tp, optional = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            _add_fields(parser, tp, name + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help") or comments.get(f.name, "")
        help_text = f"{help_text} (default: {default!r})" if not required else f"{help_text} (required)"
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        kw: dict[str, Any] = dict(dest=name, help=help_text, required=required)
        if tp is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, **kw)
        elif typing.get_origin(tp) in (tuple, list):
            args = typing.get_args(tp)
            fixed = typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis
            elem = args[0] if args else str
            parser.add_argument(*flags, type=_scalar_parser(elem, False, name),
                                nargs=len(args) if fixed else "+", default=default, **kw)
        else:
            parser.add_argument(*flags, type=_scalar_parser(tp, optional, name), default=default,
                                metavar=tp.__name__.upper(), **kw)


def config_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one `--field` per field of the dataclass `cls` (defaults from `cls`)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"config_parser needs a dataclass type, got {cls!r}")
    parser = argparse.ArgumentParser(description=description or inspect.getdoc(cls),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_fields(parser, cls, "")
    return parser


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, values, prefix + f.name + ".")
        else:
            value = values[prefix + f.name]
            kwargs[f.name] = tuple(value) if typing.get_origin(tp) is tuple and value is not None else value
    return cls(**kwargs)


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` (default: sys.argv[1:]) into an instance of the dataclass `cls`.

    Errors from the dataclass' own validation exit like any argparse error (status 2, message on
    stderr) instead of a traceback.
    """
    parser = config_parser(cls, description)
    values = vars(parser.parse_args(argv))
    try:
        return _build(cls, values, "")
    except ValueError as e:
        parser.error(str(e))
