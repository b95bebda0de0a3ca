"""Servers in subprocesses for the tests and the benchmarks: start on a free port, wait until ready, stop.

Only the standard library and httpx, so the benchmarks (`bench/_servers.py`) and the tests import it alike
without importing a service or pytest, from either venv (`.venv`, `.venv-vllm`).

Every server runs in a process group of its own. `stop()` sends SIGTERM to the server (its graceful shutdown
stops what it started: uvicorn runs the lifespan's end, which stops the vLLM engine) or, with
`term_group=True`, to every process of the group (for servers whose children do not stop with their
parent); after `grace_s` it kills the whole group, and once the server has exited it kills what is left of
the group, so no child (vLLM's engine core, uvicorn workers) outlives a test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

__all__ = ["ROOT", "ServerProcess", "ServerStartError", "free_port", "read_metric"]

ROOT = Path(__file__).resolve().parents[1]
PORT = "{port}"  # in a command, replaced by the server's port


class ServerStartError(RuntimeError):
    """The server exited or did not answer its readiness URL in time; the message ends with its log."""


def free_port() -> int:
    """A loopback port the OS has just handed out (free now; a server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`argv` in a subprocess, ready once GET `ready_path` answers 200; its output goes to `log`.

    `{port}` anywhere in `argv` becomes `port` (a free one unless given). `env` is added to this process's
    environment after dropping the names in `drop_env`. Waits at most `startup_s` seconds, checking every
    `poll_s`; on failure the server is stopped and `ServerStartError` carries the end of its log. Use as a
    context manager, or call `stop()`.
    """

    def __init__(self, argv: Sequence[str], *, port: int | None = None, ready_path: str = "/readyz",
                 env: dict[str, str] | None = None, drop_env: Sequence[str] = (), name: str = "server",
                 log: Path | None = None, cwd: Path = ROOT, startup_s: float = 600, poll_s: float = 0.3,
                 term_group: bool = False, grace_s: float = 30) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.argv = [arg.replace(PORT, str(self.port)) for arg in argv]
        self.log = log or Path(tempfile.gettempdir()) / f"zerosearch-{name}-{self.port}.log"
        self.term_group = term_group
        self.grace_s = grace_s
        self._group_gone = False
        environment = {k: v for k, v in os.environ.items() if k not in drop_env} | (env or {})
        started = time.monotonic()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.argv, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_ready(ready_path, started + startup_s, poll_s, startup_s)
        except BaseException:  # not ready, or interrupted while starting (Ctrl-C): no server is left behind
            self.stop()
            raise
        self.ready_after_s = time.monotonic() - started

    def _wait_ready(self, ready_path: str, deadline: float, poll_s: float, startup_s: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._kill_group()  # children it left behind
                raise ServerStartError(f"{self.name} exited with {self.proc.returncode} before it was ready "
                                       f"(log {self.log}):\n{self.log_tail()}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        self.stop()
        raise ServerStartError(f"{self.name} not ready at {self.url}{ready_path} after {startup_s:.0f} s "
                               f"(log {self.log}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metrics_text(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30).text

    def metric(self, name: str, labels: dict[str, str] | None = None, text: str | None = None, *,
               must_contain: str = "") -> float:
        """Sum of the samples of one Prometheus metric from GET /metrics (or `text`, to read several metrics
        of one moment), optionally only those with `labels` or whose line contains `must_contain`."""
        return read_metric(self.metrics_text() if text is None else text, name, labels, must_contain=must_contain)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM (to the server, or to its group with `term_group`), then SIGKILL to the group after the
        grace period; returns the server's exit status (negative: the signal that ended it)."""
        grace = self.grace_s if grace_s is None else grace_s
        if self.proc.poll() is None:
            try:
                if self.term_group:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                else:
                    self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait()
        self._kill_group()
        return self.proc.returncode

    def _kill_group(self) -> None:
        if self._group_gone:  # once only: after that the group id may name someone else's processes
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # nothing of the group is left
            pass
        self._group_gone = self.proc.poll() is not None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read_metric(text: str, name: str, labels: dict[str, str] | None = None, *, must_contain: str = "") -> float:
    """Sum of the samples of `name` in a Prometheus text exposition (all label sets, or those matching)."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name or must_contain not in line:
            continue
        if labels:
            found = dict(_LABEL.findall(m.group(2) or ""))
            if any(found.get(k) != v for k, v in labels.items()):
                continue
        total += float(m.group(3))
    return total
