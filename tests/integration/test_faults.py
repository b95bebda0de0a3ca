"""Injected faults, nothing lost: every request gets a result or a documented error, and the service is ready
again afterwards. Redis killed and restarted under load, Redis paused (slow), a backend stalled past
ZS_TIMEOUT_S, a full queue, clients that hang up mid-generation, SIGTERM under load. (The replica kill behind
nginx is in test_replicas.py.)"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from contextlib import asynccontextmanager

import httpx
import pytest
import redis

from tests.conftest import ServeProcess, serve_in_thread
from zerosearch_core.client import SearchClient
from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend


@asynccontextmanager
async def sim(delay_s: float = 0.0, **settings):
    backend = ScriptedBackend(delay_s=delay_s)
    app = create_app(Settings(backend="scripted", **settings), backend=backend)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim",
                                     timeout=30) as client:
            client.app, client.backend, client.engine = app, backend, app.state.engine
            yield client


def sample(client, name, **labels) -> float:
    return client.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_redis_killed_and_restarted_under_load(private_redis):
    """8 workers search (half repeats, half new) while Redis dies and comes back: every search answers 200,
    readiness goes ready -> degraded -> ready, and the cache serves hits again without a restart."""
    async with sim(redis_url=private_redis.url) as client:
        statuses: list[int] = []
        readiness: list[str] = []
        stop = asyncio.Event()

        async def worker(w: int) -> None:
            i = 0
            while not stop.is_set():
                query = f"hot {i % 4}" if i % 2 else f"worker {w} query {i}"
                r = await client.post("/v1/search", json={"query": query, "noise": 0})
                statuses.append(r.status_code)
                i += 1
                await asyncio.sleep(0.005)

        async def probe() -> None:
            while not stop.is_set():
                readiness.append((await client.get("/readyz")).json()["status"])
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(worker(w)) for w in range(8)] + [asyncio.create_task(probe())]
        await asyncio.sleep(1.0)
        hits_before = sample(client, "zerosearch_cache_requests_total", result="hit")
        private_redis.stop()
        await asyncio.sleep(1.5)
        served_while_down = len(statuses)
        private_redis.start()
        await asyncio.sleep(2.0)  # past the pause after a Redis failure
        hits_after_restart = sample(client, "zerosearch_cache_requests_total", result="hit")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)

        assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
        assert served_while_down > 0
        assert "degraded" in readiness and readiness[0] == "ready" and readiness[-1] == "ready"
        first_degraded = readiness.index("degraded")
        assert "ready" in readiness[first_degraded:]
        assert hits_before > 0
        assert sample(client, "zerosearch_cache_requests_total", result="hit") > hits_after_restart
        assert sample(client, "zerosearch_cache_errors_total") >= 1
        # The restarted Redis holds fresh entries again.
        assert redis.Redis(port=private_redis.port).keys("zerosearch:v2:doc:*")


async def test_redis_paused_every_cache_call_is_bounded(private_redis):
    """CLIENT PAUSE makes Redis hang (not refuse): each cache call gives up after its socket timeout (1 s), the
    search is answered uncached, and nothing waits for the pause to end."""
    async with sim(redis_url=private_redis.url) as client:
        await client.post("/v1/search", json={"query": "warm", "noise": 0})
        redis.Redis(port=private_redis.port).execute_command("CLIENT", "PAUSE", "4000", "ALL")
        paused_at = time.monotonic()
        answers = await asyncio.gather(*(client.post("/v1/search", json={"query": f"during pause {i}"})
                                         for i in range(6)))
        answered_in = time.monotonic() - paused_at
        assert all(r.status_code == 200 and len(r.json()["documents"]) == 5 for r in answers)
        assert not any(r.json()["cached"] for r in answers)
        assert answered_in < 3.0, f"searches waited {answered_in:.1f} s: longer than the cache timeout allows"
        assert (await client.get("/readyz")).json()["status"] == "degraded"
        redis.Redis(port=private_redis.port).execute_command("CLIENT", "UNPAUSE")
        await asyncio.sleep(1.2)
        assert (await client.get("/readyz")).json()["status"] == "ready"


async def test_backend_stalled_past_the_timeout_gives_504_and_the_queue_drains(redis_url):
    async with sim(delay_s=60, redis_url=redis_url, timeout_s=0.5) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.post("/v1/search", json={"query": f"stalled {i}", "noise": 0})
                                         for i in range(8)))
        took = time.monotonic() - started
        assert [r.status_code for r in answers] == [504] * 8
        assert {r.json()["error"]["code"] for r in answers} == {"generation_timeout"}
        assert took < 10, f"504s came after {took:.1f} s, not after ZS_TIMEOUT_S=0.5"
        assert client.engine.pending == 0 and sample(client, "zerosearch_queue_depth") == 0
        assert not redis.Redis.from_url(redis_url).keys("zerosearch:v2:lock:*")  # locks released
        client.backend.delay_s = 0  # the backend recovers: so does the service
        ok = await client.post("/v1/search", json={"query": "stalled 0", "noise": 0})
        assert ok.status_code == 200 and not ok.json()["cached"]


async def test_full_queue_answers_503_with_retry_after():
    async with sim(delay_s=1.0, max_queue=2) as client:
        answers = await asyncio.gather(*(client.post("/v1/search", json={"query": f"crowd {i}", "noise": 0})
                                         for i in range(6)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 200, 503, 503, 503, 503], codes
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "queue_full"
        assert client.engine.pending == 0


async def test_the_client_honours_retry_after(caplog):
    """The project's client waits Retry-After (not its own 10 ms backoff) before trying a full server again."""
    caplog.set_level(logging.WARNING, logger="zerosearch_core.client")
    async with sim(delay_s=1.5, max_queue=1) as http:
        occupant = asyncio.create_task(http.post("/v1/search", json={"query": "occupant", "noise": 0}))
        while http.engine.pending == 0:
            await asyncio.sleep(0.01)
        async with SearchClient("http://sim", transport=httpx.ASGITransport(app=http.app), retries=6,
                                backoff_s=0.01, max_backoff_s=5) as client:
            started = time.monotonic()
            answer = await client.search("patient", noise=0)
            waited = time.monotonic() - started
        assert (await occupant).status_code == 200
    assert answer.documents
    sleeps = [float(m.group(1)) for r in caplog.records if "HTTP 503" in r.getMessage()
              and (m := re.search(r"retrying in ([0-9.]+)s", r.getMessage()))]
    assert sleeps and all(s >= 1.0 for s in sleeps), sleeps
    assert waited >= 1.0


async def test_clients_hanging_up_mid_generation_leak_no_slot_and_the_result_is_cached():
    """Starlette does not cancel a request whose client went away: the generation finishes, its queue slot is
    freed, and its result is cached, so the client's retry is a hit."""
    backend = ScriptedBackend(delay_s=1.0)
    app = create_app(Settings(backend="scripted"), backend=backend)
    with serve_in_thread(app, lifespan="on") as url:
        async with httpx.AsyncClient(timeout=0.2) as impatient:
            gone = await asyncio.gather(*(impatient.post(f"{url}/v1/search", json={"query": f"hang up {i}",
                                                                                  "noise": 0})
                                          for i in range(10)), return_exceptions=True)
        assert all(isinstance(g, httpx.ReadTimeout) for g in gone), gone
        engine = app.state.engine
        deadline = time.monotonic() + 10
        while engine.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert engine.pending == 0
        async with httpx.AsyncClient(timeout=10) as patient:
            again = [await patient.post(f"{url}/v1/search", json={"query": f"hang up {i}", "noise": 0})
                     for i in range(10)]
    assert all(r.status_code == 200 and r.json()["cached"] for r in again)
    assert len(backend.calls) == 10


@pytest.mark.timeout(120)
async def test_sigterm_under_load_finishes_in_flight_refuses_new_and_exits_0():
    server = ServeProcess("--backend", "scripted", env={"ZS_SCRIPTED_DELAY_S": "2", "ZS_TIMEOUT_S": "10"},
                          startup_s=60, log_prefix="zs-sigterm")
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:
            in_flight = [asyncio.create_task(http.post(f"{server.url}/v1/search",
                                                       json={"query": f"in flight {i}", "noise": 0}))
                         for i in range(16)]
            deadline = time.monotonic() + 10
            while server.metric("zerosearch_queue_depth") < 16 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.metric("zerosearch_queue_depth") == 16
            stopped_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(timeout=2) as latecomer:
                with pytest.raises(httpx.ConnectError):  # new connections are refused at once
                    await latecomer.post(f"{server.url}/v1/search", json={"query": "too late"})
            answers = await asyncio.gather(*in_flight)
        returncode = await asyncio.to_thread(server.proc.wait, 30)
        exited_after = time.monotonic() - stopped_at
    finally:
        server.stop()
    assert [r.status_code for r in answers] == [200] * 16
    assert all(len(r.json()["documents"]) == 5 for r in answers)
    assert returncode == 0, server.log.read_text()[-2000:]
    assert exited_after < 15  # ZS_TIMEOUT_S + 5: the graceful-shutdown deadline
