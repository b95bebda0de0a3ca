"""Fixtures shared by every test: a real Redis database, app factories, free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database (REDIS_URL, default db 15), emptied before and after each test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # make test guarantees one; a bare pytest run may not have it
        pytest.fail(f"no Redis at REDIS_URL={REDIS_URL} ({exc}); run the tests with 'make test'")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()
