"""What a sandboxed program may do inside its own process: the import allowlist and the
audit hook (PEP 578).

Two gates, both deny by default:

- ``__import__`` in the program's builtins holds every import statement of the program to
  ``ALLOWED_MODULES`` (and their submodules), modules already loaded included (those raise
  no audit event). C functions called by the program import their helpers through it too
  (``datetime.strftime`` imports ``time``); such calls, which are not import statements,
  are only refused the modules of ``NEVER_LOADED``, and, when the caller is code the program
  wrote (a plain ``__import__('os')`` call), every module but the helpers of
  ``C_FUNCTION_HELPERS``.
- the audit hook sees what any code in the process does, the program or the libraries it
  calls: it lets through only the events of ``HARMLESS_EVENTS``, reads of files and listings
  of directories beneath the read-only roots (Python's own library), loading of modules that
  are not in ``NEVER_LOADED`` (libraries load helpers lazily), and ``marshal`` loads made by
  the import machinery. Everything else - writing or deleting files, processes, sockets,
  ctypes, signals to others, ``gc`` introspection, tracing hooks, new audit hooks, pickle
  class lookups... - is a violation.

A violation never raises into the program (which could catch it): ``deny`` reports the
program as ``forbidden`` and ends its process on the spot.

Both gates are advisory: they live in the program's own interpreter, so a program that walks
its objects can reach their closures and switch them off (a traceback frame leads to
``deny``, and a closure cell is writable). What they give is the early, exact message;
containment rests on the kernel layers (kernel_guards.py, zygote.py) and the process
boundary, which no Python trick can lift.

This is defence in depth. A determined program can reach modules it may not import (library
modules keep references such as ``random._os``) or corrupt memory through the ctypes that
numpy loads; what it then tries to do to the host is refused by the kernel (see
kernel_guards.py) and by the process boundary. Standard library only.
"""
from __future__ import annotations

import opcode
import os
import sys
from typing import Callable, NoReturn

PROGRAM_FILENAME = "<program>"

# The allowlist, then a few more pure-computation modules that PoT programs use.
ALLOWED_MODULES = (
    "math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools",
    "collections", "operator", "re", "string", "random",
    "heapq", "bisect", "numbers", "copy", "typing", "dataclasses", "datetime", "calendar",
    "warnings", "enum", "abc", "array", "pprint", "textwrap",
)
# Allowed when installed (imported by the worker before any program runs).
OPTIONAL_MODULES = ("sympy", "numpy", "mpmath")

# Modules that nobody may load inside the sandbox, not even a library on the program's behalf:
# they hand out what no audit event covers (raw memory, fork_exec, signals to the terminal,
# interpreter internals) or serve only to reach out (shared memory, ssl, databases, a
# browser). Others, such as socket or threading, a library may load (lambdify pulls in
# numpy.testing, which imports both): what they would do is refused when they try.
NEVER_LOADED = frozenset({
    "_posixsubprocess", "subprocess", "multiprocessing", "_multiprocessing", "pty", "tty",
    "termios", "ctypes", "_ctypes", "mmap", "_posixshmem", "resource", "faulthandler",
    "tracemalloc", "_tracemalloc", "_testcapi", "_testinternalcapi", "_testmultiphase",
    "_xxsubinterpreters", "_xxinterpchannels", "_xxtestfuzz", "_imp", "_frozen_importlib",
    "_frozen_importlib_external", "ssl", "_ssl", "sqlite3", "_sqlite3", "dbm", "shelve",
    "webbrowser", "syslog", "readline", "curses", "_curses", "tkinter", "_tkinter", "_lsprof",
    "cProfile", "profile", "pdb", "bdb", "_winapi", "_overlapped", "_msi",
})

# Events that cannot hurt anything outside the program's own process.
HARMLESS_EVENTS = frozenset({
    "exec", "compile",  # running Python code in the process (libraries do: namedtuple, sympify)
    "sys._getframe", "object.__getattr__",  # introspection used by warnings, typing, sympy
    "object.__setattr__", "object.__delattr__",  # function __code__/__defaults__ (namedtuple, lambdify)
    "code.__new__", "function.__new__", "builtins.id", "array.__new__",
    "builtins.input", "builtins.input/result",  # stdin is empty: input() raises EOFError
    "sys.unraisablehook", "sys.excepthook",  # an exception reported in __del__ and the like
    "sys.set_asyncgen_hooks_firstiter", "sys.set_asyncgen_hooks_finalizer",
})
# What C functions that a program calls directly import on its behalf (datetime's strftime and
# strptime, str.encode and bytes.decode of a codec not loaded yet, locale-aware formatting).
C_FUNCTION_HELPERS = frozenset({"time", "_strptime", "encodings", "locale", "_locale", "unicodedata", "copyreg"})
_OPEN_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_IMPORT_MACHINERY = ("<frozen importlib", "<frozen zipimport")
_IMPORT_NAME = opcode.opmap["IMPORT_NAME"]

Deny = Callable[..., NoReturn]  # deny(what, target=None): report "forbidden", end the process


def make_import_guard(allowed: frozenset[str], real_import: Callable, deny: Deny) -> Callable:
    """The ``__import__`` to put into the program's builtins."""

    type_, str_, never_loaded, getframe = type, str, NEVER_LOADED, sys._getframe
    helpers = C_FUNCTION_HELPERS

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0:
            deny("relative import of", name)
        top = name.partition(".")[0] if type_(name) is str_ else name
        if top in never_loaded:
            deny("import of", top)
        if top not in allowed:
            # C functions called by the program import their helpers through this function
            # too (datetime's strptime and strftime import _strptime and time): only an
            # import statement of the program is held to the allowlist.
            caller = getframe(1)
            if caller.f_code.co_code[caller.f_lasti] == _IMPORT_NAME:
                deny("import of", top)
            # Code the program compiled (its own, exec'd strings) has no file name; library
            # code has an absolute one, the import system "<frozen ...>".
            filename = caller.f_code.co_filename
            if top not in helpers and not filename.startswith(("/", "<frozen")):
                deny("import of", top)
        return real_import(name, globals, locals, fromlist, level)

    return guarded_import


def _normalize(path: str, cwd: str) -> str:
    """Absolute form of ``path`` without ``.`` and ``..``, built from str methods only (so a
    program that patched os.path cannot steer it). Links are not resolved: the program can
    create none, and Landlock checks the resolved path anyway."""
    if not path.startswith("/"):
        path = cwd + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def make_audit_hook(read_roots: list[str], cwd: str, deny: Deny) -> Callable:
    """The audit hook described in the module docstring. ``read_roots`` are absolute
    directories; everything the hook needs is bound here, none of it read from globals."""
    roots = tuple(_normalize(r, "/").rstrip("/") + "/" for r in read_roots)
    harmless, never_loaded = HARMLESS_EVENTS, NEVER_LOADED
    getframe, write_flags, machinery = sys._getframe, _OPEN_WRITE_FLAGS, _IMPORT_MACHINERY
    normalize, program_filename = _normalize, PROGRAM_FILENAME
    # Builtins bound now: the program can reach the builtins module and replace entries.
    type_, str_, bytes_, int_ = type, str, bytes, int

    def readable(path) -> bool:
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        if type_(path) is not str_:  # file descriptors, PathLike objects that could lie
            return False
        full = normalize(path, cwd) + "/"
        for root in roots:
            if full.startswith(root):
                return True
        return False

    def hook(event: str, args: tuple) -> None:
        if event in harmless:
            return
        if event == "open":
            path, mode, flags = args
            if type_(path) is str_ and path == program_filename and mode == "rb":
                return  # compile() looks for the source of a SyntaxError; there is no such file
            writes = (type_(mode) is str_ and ("w" in mode or "a" in mode or "x" in mode
                                                or "+" in mode)) or (
                type_(flags) is int_ and flags & write_flags)
            if writes:
                deny("opening for writing", path)
            if not readable(path):
                deny("reading", path)
            return
        if event in ("os.listdir", "os.scandir"):
            if not readable(args[0]):
                deny("listing", args[0])
            return
        if event == "import":
            # Libraries load helpers lazily, often from C (datetime.strptime -> _strptime), so
            # the caller cannot tell a library's import from the program's; the import guard
            # has already checked the program's own import statements.
            if args[0].partition(".")[0] in never_loaded:
                deny("import of", args[0])
            return
        if event in ("marshal.loads", "marshal.load"):
            caller = getframe(1)
            if not caller.f_code.co_filename.startswith(machinery):
                deny(event)
            return
        deny(event)

    return hook


def library_roots(loaded_modules: dict) -> list[str]:
    """Directories a program may read: the standard library (with its extension modules and
    site-packages beneath it) and the top-level package folders of loaded third-party
    modules (sympy, numpy, mpmath...), both as given and with links resolved."""
    import sysconfig

    roots = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    for name, module in list(loaded_modules.items()):
        path = getattr(module, "__file__", None)
        if "." in name or not isinstance(path, str) or not path.startswith("/"):
            continue
        folder = os.path.dirname(path)
        if os.path.basename(path).startswith("__init__."):
            roots.add(folder)
    roots |= {os.path.realpath(r) for r in roots}
    # A folder inside another root adds nothing.
    ordered = sorted(r.rstrip("/") for r in roots if os.path.isdir(r))
    kept: list[str] = []
    for root in ordered:
        if not any(root.startswith(k + "/") for k in kept):
            kept.append(root)
    return kept
