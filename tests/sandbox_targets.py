"""Targets and helpers for the sandbox containment tests (imported by tests/test_sandbox_*.py)."""
import socket
import string
import threading

import mathlm.sandbox as sandbox
from mathlm.sandbox.pool import Job


def run(code, disable=(), timeout=2.0, memory_mb=256, max_output=4096, **values):
    """One program (a string.Template filled from `values`) with the named layers disabled."""
    code = string.Template(code).substitute(values)
    return sandbox._run_jobs([Job(code, timeout, memory_mb, max_output, disable=tuple(disable))])[0]


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.connections: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            conn.settimeout(0.5)
            try:
                self.connections.append(conn.recv(1024))
            except OSError:
                self.connections.append(b"")
            conn.close()

    def close(self):
        self.running = False
        self.thread.join()
        self.server.close()
