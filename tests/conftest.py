"""Fixtures shared by every test: a real Redis database, app factories, free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a background thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, ws="none",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


class ServeProcess:
    """`zerosearch serve` in a subprocess on a free port, waited for until /readyz answers 200."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, drop_env: tuple[str, ...] = (),
                 startup_s: float = 600, log_prefix: str = "zerosearch-serve") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{log_prefix}-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if k not in drop_env} | (env or {})
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "zerosearch"), "serve", "--port",
                                      str(self.port), *args], env=environment, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zerosearch serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"zerosearch serve not ready after {startup_s} s:\n{self.log.read_text()}")

    def metric(self, name: str, must_contain: str = "") -> float:
        """Sum of the samples of one metric (optionally only lines containing `must_contain`)."""
        text = httpx.get(self.url + "/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if (line.startswith(name + " ") or line.startswith(name + "{")) and must_contain in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database (REDIS_URL, default db 15), emptied before and after each test."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # make test guarantees one; a bare pytest run may not have it
        pytest.fail(f"no Redis at REDIS_URL={REDIS_URL} ({exc}); run the tests with 'make test'")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


class PrivateRedis:
    """A redis-server of our own on a free port, so that a test can stop and restart it."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not on PATH (apt-get install redis-server); needed to test Redis loss")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.stop()
