"""Two real simulator processes sharing one Redis, with nginx in front (scripts/replicas.sh).

The `scripted` backend stands in for the model (the same processes a GPU host runs with vLLM, minus the
generation time). Checks: the cache and the curriculum are shared across replicas, and killing one replica
(SIGKILL) in the middle of a stream of searches costs no request, neither through the load balancer nor
through the client's own failover across the replica URLs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, free_port
from zerosearch_core.client import SearchClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "replicas.sh"
N_SEARCHES = 200
KILL_AFTER = 70  # completed searches (per stream) before replica 0 is killed


def _redis_url_db(url: str, db: int) -> str:
    """REDIS_URL with its database number replaced (these tests use db 13, not the suite's db 15)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path=f"/{db}"))


TEST_REDIS_URL = _redis_url_db(REDIS_URL, 13)


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.skip("nginx is not installed and this system has no apt-get to install it with")
        pytest.fail("nginx is not installed: the replica tests put nginx in front of the simulators "
                    "(Debian/Ubuntu: apt-get install -y nginx; `make setup` installs it)")
    return found


def _consecutive_free_ports(n: int) -> int:
    import socket

    for _ in range(50):
        base = free_port()
        try:
            for port in range(base + 1, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"found no {n} consecutive free ports")


@dataclass
class Cluster:
    lb_url: str
    replica_urls: list[str]
    state_dir: Path

    def pid(self, index: int) -> int:
        return int((self.state_dir / f"replica-{index}.pid").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx = _nginx()
    db = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        db.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"no Redis at {TEST_REDIS_URL} ({exc}); run the tests with 'make test'")
    db.flushdb()
    state_dir = tmp_path_factory.mktemp("replicas")
    base, lb_port = _consecutive_free_ports(2), free_port()
    # A replica killed while it generates leaves its single-flight lock in Redis until the lock's TTL runs
    # out (default 300 s; the others wait up to ZS_TIMEOUT_S for it). A short TTL bounds that stall here;
    # with the scripted backend no generation comes near it.
    env = {**os.environ, "NGINX": nginx, "ZS_LOCK_TTL_S": "2"}
    start = subprocess.run(
        [str(SCRIPT), "start", "--replicas", "2", "--port", str(base), "--lb-port", str(lb_port),
         "--backend", "scripted", "--redis-url", TEST_REDIS_URL, "--state-dir", str(state_dir), "--wait", "90",
         "--", "--log-level", "warning"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, f"replicas.sh start failed:\n{start.stdout}\n{start.stderr}"
        urls = dict(line.split("=", 1) for line in (state_dir / "urls.env").read_text().split())
        assert urls["ZS_LB_URL"] in start.stdout  # the script prints the URLs
        yield Cluster(urls["ZS_LB_URL"], urls["ZS_REPLICA_URLS"].split(","), state_dir)
    finally:
        subprocess.run([str(SCRIPT), "stop", "--state-dir", str(state_dir)], cwd=ROOT, env=env,
                       capture_output=True, timeout=60)
        db.flushdb()
        db.close()


def test_replicas_share_cache_and_curriculum(cluster: Cluster) -> None:
    a, b = cluster.replica_urls
    body = {"query": "who wrote the shared cache test", "noise": 0.0, "seed": 7, "k": 5}
    with httpx.Client(timeout=10) as http:
        first = http.post(f"{a}/v1/search", json=body)
        second = http.post(f"{b}/v1/search", json=body)
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert first.json()["cached"] is False
        assert second.json()["cached"] is True, "replica B did not see the result replica A generated"
        assert second.json()["documents"] == first.json()["documents"]

        schedule = {"step": 37, "total_steps": 100, "start": 0.1, "end": 0.6, "base": 4.0}
        put = http.put(f"{a}/v1/curriculum", json=schedule)
        assert put.status_code == 200, put.text
        time.sleep(0.6)  # replicas re-read the shared schedule at most every 0.5 s
        seen = http.get(f"{b}/v1/curriculum").json()
        assert {key: seen[key] for key in schedule} == schedule
        assert http.get(f"{cluster.lb_url}/v1/curriculum").json()["step"] == 37


async def _stream(send, n: int, prefix: str, progress: list[int], failures: list[str], concurrency: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            query = f"{prefix} failover query {i}"
            try:
                result = await send(query)
            except Exception as exc:  # any failure the caller would see counts
                failures.append(f"{query}: {type(exc).__name__}: {exc}")
            else:
                if result != query:
                    failures.append(f"{query}: answered for {result!r}")
            progress[0] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def test_killing_a_replica_mid_stream_fails_no_request(cluster: Cluster,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="zerosearch_core.client")
    victim, victim_url = cluster.pid(0), cluster.replica_urls[0]
    lb_progress, client_progress = [0], [0]
    lb_failures: list[str] = []
    client_failures: list[str] = []
    at_kill: list[int] = []

    async with httpx.AsyncClient(timeout=30) as http, SearchClient(
            cluster.replica_urls, timeout_s=10, retries=4, backoff_s=0.05, max_backoff_s=0.5) as client:

        async def via_lb(query: str) -> str:
            response = await http.post(f"{cluster.lb_url}/v1/search", json={"query": query, "k": 3})
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return response.json()["query"]

        async def via_client(query: str) -> str:
            return (await client.search(query, k=3)).query

        async def killer() -> None:
            while min(lb_progress[0], client_progress[0]) < KILL_AFTER:
                await asyncio.sleep(0.005)
            os.kill(victim, signal.SIGKILL)
            at_kill.extend([lb_progress[0], client_progress[0]])

        await asyncio.gather(
            _stream(via_lb, N_SEARCHES, "lb", lb_progress, lb_failures, concurrency=8),
            _stream(via_client, N_SEARCHES, "client", client_progress, client_failures, concurrency=8),
            killer(),
        )

    # It really died. (Not `os.kill(pid, 0)`: where nothing reaps orphans, a killed replica stays a zombie.)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{victim_url}/healthz", timeout=5)
    assert max(at_kill) < N_SEARCHES, f"the kill came after a stream had finished ({at_kill})"
    assert lb_progress[0] == client_progress[0] == N_SEARCHES
    assert lb_failures == [], f"{len(lb_failures)} searches failed through nginx: {lb_failures[:5]}"
    assert client_failures == [], f"{len(client_failures)} searches failed through the client: {client_failures[:5]}"
    # Both paths really met the dead replica and went around it (the test is not passing vacuously).
    retries = [r.getMessage() for r in caplog.records if victim_url in r.getMessage()]
    assert retries, "the client never retried away from the killed replica"
    nginx_errors = (cluster.state_dir / "nginx-error.log").read_text()
    assert victim_url.removeprefix("http://") in nginx_errors, "nginx never saw the killed replica fail"
    # The survivor answers; the load balancer routes around the dead one from now on.
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{cluster.replica_urls[1]}/readyz").status_code == 200
        for i in range(5):
            assert http.post(f"{cluster.lb_url}/v1/search", json={"query": f"after {i}"}).status_code == 200
