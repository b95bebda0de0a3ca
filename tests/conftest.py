"""Fixtures shared by every test: a real Redis database, app factories, free ports, `zerosearch serve`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import ServerProcess, free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


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


class ServeProcess(ServerProcess):
    """`zerosearch serve ARGS` (from this venv) on a free port, waited for until /readyz answers 200."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, drop_env: tuple[str, ...] = (),
                 startup_s: float = 600, log_prefix: str = "zerosearch-serve") -> None:
        port = free_port()
        super().__init__([str(Path(sys.executable).parent / "zerosearch"), "serve", "--port", str(port), *args],
                         port=port, env=env, drop_env=drop_env, startup_s=startup_s, name="zerosearch serve",
                         log=Path(tempfile.gettempdir()) / f"{log_prefix}-{port}.log")

    def metric(self, name: str, must_contain: str = "") -> float:
        """Sum of the samples of one metric (optionally only lines containing `must_contain`)."""
        return super().metric(name, must_contain=must_contain)


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
