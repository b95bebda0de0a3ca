"""The cache, single-flight and curriculum on a real Redis, including Redis going away mid-run."""

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import pytest
import redis

from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.curriculum import STALE_AFTER_S


@asynccontextmanager
async def replica(redis_url, **settings):
    backend = ScriptedBackend(delay_s=settings.pop("delay_s", 0.0))
    app = create_app(Settings(backend="scripted", redis_url=redis_url, **settings), backend=backend)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            client.backend, client.app = backend, app
            yield client


def metric(client, name, **labels):
    return client.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_results_are_shared_between_replicas_with_ttl(redis_url):
    async with replica(redis_url, cache_ttl_s=120) as a, replica(redis_url) as b:
        first = (await a.post("/v1/search", json={"query": "who painted the mona lisa", "noise": 0})).json()
        second = (await b.post("/v1/search", json={"query": "who painted the mona lisa", "noise": 0})).json()
    assert not first["cached"] and second["cached"]
    assert second["documents"] == first["documents"]
    assert len(a.backend.calls) == 1 and len(b.backend.calls) == 0
    r = redis.Redis.from_url(redis_url)
    keys = r.keys("zerosearch:v2:doc:*")
    assert len(keys) == 1 and 0 < r.ttl(keys[0]) <= 120
    assert not r.keys("zerosearch:v2:lock:*")  # locks are released


async def test_single_flight_across_replicas(redis_url):
    async with replica(redis_url, delay_s=0.5) as a, replica(redis_url, delay_s=0.5) as b:
        body = {"query": "tallest mountain", "noise": 0}
        rs = await asyncio.gather(*(c.post("/v1/search", json=body) for c in [a, b] * 16))
    assert all(r.status_code == 200 for r in rs)
    assert len(a.backend.calls) + len(b.backend.calls) == 1
    assert sum(not r.json()["cached"] for r in rs) == 1
    assert len({str(r.json()["documents"]) for r in rs}) == 1


async def test_curriculum_is_shared(redis_url):
    async with replica(redis_url) as a, replica(redis_url) as b:
        put = await a.put("/v1/curriculum", json={"step": 50, "total_steps": 100, "start": 0.0, "end": 0.5})
        assert put.status_code == 200
        await asyncio.sleep(STALE_AFTER_S + 0.1)
        seen = (await b.get("/v1/curriculum")).json()
        searched = (await b.post("/v1/search", json={"query": "q"})).json()
    assert seen["step"] == 50 and seen["noise"] == pytest.approx(put.json()["noise"])
    assert searched["noise"] == pytest.approx(put.json()["noise"])


async def test_redis_loss_mid_run_degrades_then_recovers(private_redis):
    async with replica(private_redis.url) as sim:
        assert (await sim.post("/v1/search", json={"query": "before", "noise": 0})).status_code == 200
        assert (await sim.post("/v1/search", json={"query": "before", "noise": 0})).json()["cached"]
        assert (await sim.get("/readyz")).json()["status"] == "ready"

        private_redis.stop()
        during = [await sim.post("/v1/search", json={"query": f"during {i}", "noise": 0}) for i in range(5)]
        assert all(r.status_code == 200 and len(r.json()["documents"]) == 5 for r in during)
        assert not any(r.json()["cached"] for r in during)
        ready = await sim.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert metric(sim, "zerosearch_cache_errors_total") >= 1
        assert (await sim.get("/v1/curriculum")).status_code == 200  # last known schedule

        private_redis.start()
        await asyncio.sleep(1.2)  # past the pause after a Redis failure
        assert (await sim.get("/readyz")).json()["status"] == "ready"
        await sim.post("/v1/search", json={"query": "after", "noise": 0})
        assert (await sim.post("/v1/search", json={"query": "after", "noise": 0})).json()["cached"]


async def test_lock_of_a_dead_holder_lapses_quickly(redis_url):
    """A replica killed mid-generation leaves its lock behind; the others take over after one lock TTL."""

    async with replica(redis_url, lock_ttl_s=0.6) as sim:
        # Simulate the dead holder: a lock nobody renews, for the key this search will use.
        r = redis.Redis.from_url(redis_url)
        body = {"query": "orphaned lock", "noise": 0}
        # Find the key by letting a first search fill it, then delete the value and plant a stale lock.
        await sim.post("/v1/search", json=body)
        (doc_key,) = [k for k in r.keys("zerosearch:v2:doc:*")]
        digest = doc_key.decode().rsplit(":", 1)[1]
        r.delete(doc_key)
        r.set(f"zerosearch:v2:lock:{digest}", "dead-replica", px=600)
        started = asyncio.get_running_loop().time()
        answer = await sim.post("/v1/search", json=body)
        waited = asyncio.get_running_loop().time() - started
    assert answer.status_code == 200 and not answer.json()["cached"]
    assert 0.3 < waited < 5, waited  # waited for the stale lock to lapse, not for ZS_TIMEOUT_S
    assert json.loads(r.get(doc_key))["documents"]


async def test_concurrent_hits_share_one_mget_and_each_gets_its_own_value(redis_url):
    async with replica(redis_url) as sim:
        queries = [f"coalesced query {i}" for i in range(12)]
        first = [(await sim.post("/v1/search", json={"query": q, "noise": 0})).json() for q in queries]
        engine_redis = sim.app.state.engine.cache.redis
        calls = []
        real_mget = engine_redis.mget

        async def counting_mget(keys, *args):
            calls.append(list(keys))
            return await real_mget(keys, *args)

        engine_redis.mget = counting_mget
        # Every hit, plus a repeated key and one absent key, looked up in the same event-loop iteration.
        cache = sim.app.state.engine.cache
        digests = [k.decode().rsplit(":", 1)[1] for k in redis.Redis.from_url(redis_url).keys("zerosearch:v2:doc:*")]
        values = await asyncio.gather(*(cache.get(d) for d in [*digests, digests[0], "absent"]))
        assert len(calls) == 1 and len(calls[0]) == len(digests) + 2
        assert values[-1] is None and values[0] == values[-2]
        assert sorted(json.loads(v)["text"] for v in values[:-2]) == sorted(a["text"] for a in first)

        # Through HTTP: concurrent hits answer with their own documents.
        hits = await asyncio.gather(*(sim.post("/v1/search", json={"query": q, "noise": 0}) for q in queries))
        assert all(h.json()["cached"] for h in hits)
        assert [h.json()["documents"] for h in hits] == [a["documents"] for a in first]


async def test_a_cancelled_lookup_does_not_fail_the_others(redis_url):
    async with replica(redis_url) as sim:
        await sim.post("/v1/search", json={"query": "kept", "noise": 0})
        cache = sim.app.state.engine.cache
        (digest,) = [k.decode().rsplit(":", 1)[1] for k in redis.Redis.from_url(redis_url).keys("zerosearch:v2:doc:*")]
        doomed = asyncio.ensure_future(cache.get(digest))
        kept = asyncio.ensure_future(cache.get(digest))
        await asyncio.sleep(0)
        doomed.cancel()
        assert json.loads(await kept)["documents"]
        assert doomed.cancelled()


async def test_lookups_made_while_an_mget_is_in_flight_go_together_in_the_next(redis_url):
    async with replica(redis_url) as sim:
        cache = sim.app.state.engine.cache
        calls = []
        release = asyncio.Event()
        real_mget = cache.redis.mget

        async def slow_first_mget(keys, *args):
            calls.append(len(keys))
            if len(calls) == 1:
                await release.wait()  # the first MGET stays in flight until the others are made
            return await real_mget(keys, *args)

        cache.redis.mget = slow_first_mget
        first = asyncio.ensure_future(cache.get("a"))
        while not calls:
            await asyncio.sleep(0)
        rest = []
        for key in "bcdef":  # one lookup per event-loop iteration
            rest.append(asyncio.ensure_future(cache.get(key)))
            await asyncio.sleep(0)
        release.set()
        assert await first is None and await asyncio.gather(*rest) == [None] * 5
        assert calls == [1, 5]
