"""Byte framing between the host, the sandbox workers and the programs they fork.

Every message is a frame: a 4-byte big-endian length, then that many bytes. The host and a
worker exchange JSON objects (both are trusted). A forked program sends its worker binary
frames whose first byte is the kind (``R``: replay of a session's earlier blocks finished,
``D``: done, followed by the result fields); the worker parses them strictly and never
unpickles or evaluates anything a program wrote. Nothing in a ``D`` frame is trusted: text
is decoded with replacement (any bytes give a valid str: no lone surrogates), and the
worker holds the reported status and run time to its own exit status and clock.

Standard library only: imported by the worker process as a top-level module as well.
"""
from __future__ import annotations

import json
import marshal
import os

HEADER = 4
REPLAY_DONE, DONE = b"R", b"D"


def encode_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


class FrameReader:
    """Collects bytes and splits them into frames; a frame over ``max_frame`` bytes is an error
    (the reader stops there: ``overflow`` becomes True)."""

    def __init__(self, max_frame: int):
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER:
            size = int.from_bytes(self.buffer[:HEADER], "big")
            if size > self.max_frame:
                self.overflow = True
                break
            if len(self.buffer) < HEADER + size:
                break
            frames.append(bytes(self.buffer[HEADER:HEADER + size]))
            del self.buffer[:HEADER + size]
        return frames


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd: int, size: int) -> bytes | None:
    """Blocking read of ``size`` bytes; None at end of file."""
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def send_json(fd: int, obj: dict) -> None:
    write_all(fd, encode_frame(json.dumps(obj).encode()))


def receive_json(fd: int) -> dict | None:
    """Blocking read of one JSON frame; None at end of file."""
    header = read_exactly(fd, HEADER)
    if header is None:
        return None
    payload = read_exactly(fd, int.from_bytes(header, "big"))
    return None if payload is None else json.loads(payload)


def send_job(fd: int, job: dict) -> None:
    """Worker to child: the job, in marshal form (both ends trusted; it loads ~3x faster than
    JSON in a freshly forked child, where every page it touches is copied)."""
    write_all(fd, encode_frame(marshal.dumps(job)))


def receive_job(fd: int) -> dict | None:
    header = read_exactly(fd, HEADER)
    if header is None:
        return None
    payload = read_exactly(fd, int.from_bytes(header, "big"))
    return None if payload is None else marshal.loads(payload)


# ---------------------------------------------------------------------------- program results

def encode_result(status: str, error: str, stdout: str, elapsed: float) -> bytes:
    """A ``D`` frame. Built from str/bytes/int methods only, so that a program that patched
    modules such as json cannot change how its own result is written."""
    fields = [status.encode(), repr(float(elapsed)).encode(),
              error.encode("utf-8", "surrogatepass"), stdout.encode("utf-8", "surrogatepass")]
    payload = DONE + b"".join(len(f).to_bytes(HEADER, "big") + f for f in fields)
    return len(payload).to_bytes(HEADER, "big") + payload


def decode_result(payload: bytes) -> tuple[str, str, str, float]:
    """(status, error, stdout, elapsed) from a ``D`` frame; ValueError if malformed."""
    if payload[:1] != DONE:
        raise ValueError(f"result frame starts with {payload[:1]!r}, expected {DONE!r}")
    fields, pos = [], 1
    for _ in range(4):
        size = int.from_bytes(payload[pos:pos + HEADER], "big")
        pos += HEADER
        if pos + size > len(payload):
            raise ValueError("result frame is truncated")
        fields.append(payload[pos:pos + size])
        pos += size
    if pos != len(payload):
        raise ValueError(f"result frame has {len(payload) - pos} trailing bytes")
    status, elapsed, error, stdout = fields
    # "replace": a lone surrogate the program printed (sent as surrogatepass bytes) becomes
    # U+FFFD here, so that the host and its tokenizer only ever see valid text.
    return (status.decode("ascii"), error.decode("utf-8", "replace"),
            stdout.decode("utf-8", "replace"), float(elapsed.decode("ascii")))
