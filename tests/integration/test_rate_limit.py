"""ZS_RATE_LIMIT: per key (or address), shared through Redis, answered in each dialect's own 429 shape."""

import asyncio
from contextlib import asynccontextmanager

import httpx
import pytest

from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.ratelimit import Rate, parse_rate


@asynccontextmanager
async def sim(**settings):
    app = create_app(Settings(backend="scripted", **settings), backend=ScriptedBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            client.app = app
            yield client


def limited(client) -> float:
    return client.app.state.metrics.registry.get_sample_value("zerosearch_rate_limited_total") or 0.0


@pytest.mark.parametrize("text,rate", [("60/minute", Rate(60, 60)), ("10/s", Rate(10, 1)),
                                       ("1000 per day", Rate(1000, 86400)), ("5/10s", Rate(5, 10)),
                                       ("2/hours", Rate(2, 3600))])
def test_rates_parse(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["lots", "0/minute", "5/fortnight", "/minute", "5/0s", "-1/s"])
def test_bad_rates_are_refused_at_start(text):
    with pytest.raises(ValueError, match="ZS_RATE_LIMIT"):
        Settings(backend="scripted", rate_limit=text)


async def test_off_by_default():
    async with sim() as client:
        assert not hasattr(client.app.state, "rate_limiter")
        for _ in range(30):
            assert (await client.post("/v1/search", json={"query": "q"})).status_code == 200


# (method, path, request kwargs carrying the dialect's own key, a key in ZS_API_KEYS, the body's 429 check)
DIALECTS = [
    ("native", "POST", "/v1/search", {"json": {"query": "q"}, "headers": {"authorization": "Bearer k-native"}},
     lambda b: b["error"]["code"] == "rate_limited"),
    ("tavily", "POST", "/search", {"json": {"query": "q"}, "headers": {"authorization": "Bearer k-tavily"}},
     lambda b: "Rate limit" in b["detail"]["error"]),
    ("serper", "POST", "/search", {"json": {"q": "q"}, "headers": {"x-api-key": "k-serper"}},
     lambda b: b["statusCode"] == 429 and "Rate limit" in b["message"]),
    ("exa", "POST", "/search", {"json": {"query": "q", "numResults": 2}, "headers": {"x-api-key": "k-exa"}},
     lambda b: b["tag"] == "RATE_LIMIT_EXCEEDED"),
    ("serpapi", "GET", "/search.json", {"params": {"q": "q", "api_key": "k-serpapi"}},
     lambda b: "Rate limit" in b["error"]),
    ("searxng", "GET", "/search", {"params": {"q": "q", "format": "json"},
                                   "headers": {"authorization": "Bearer k-searxng"}},
     lambda b: "Rate limit" in b["error"]),
    ("brave", "GET", "/res/v1/web/search", {"params": {"q": "q"}, "headers": {"x-subscription-token": "k-brave"}},
     lambda b: b["type"] == "ErrorResponse" and b["error"]["code"] == "RATE_LIMITED"),
    ("google", "GET", "/customsearch/v1", {"params": {"q": "q", "key": "k-google"}},
     lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED" and b["error"]["errors"][0]["reason"]
     == "rateLimitExceeded"),
    ("searchr1", "POST", "/retrieve", {"json": {"queries": ["q"]}, "headers": {"authorization": "Bearer k-searchr1"}},
     lambda b: "Rate limit" in b["detail"]),
]


async def test_each_dialect_answers_429_in_its_own_shape_per_key(redis_url):
    keys = ",".join(f"k-{name}" for name, *_ in DIALECTS)
    async with sim(rate_limit="2/minute", api_keys=keys, redis_url=redis_url) as client:
        for name, method, path, kwargs, shaped in DIALECTS:
            for attempt in range(2):  # each dialect's key has its own budget
                r = await client.request(method, path, **kwargs)
                assert r.status_code == 200, (name, attempt, r.text)
            refused = await client.request(method, path, **kwargs)
            assert refused.status_code == 429, (name, refused.text)
            assert 1 <= int(refused.headers["retry-after"]) <= 60, name
            assert refused.headers["content-type"].startswith("application/json")
            assert shaped(refused.json()), (name, refused.json())
        assert limited(client) == len(DIALECTS)
        # Probes and metrics are never limited.
        for _ in range(5):
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200


async def test_without_keys_the_client_address_is_counted_in_process():
    async with sim(rate_limit="3/minute") as a:
        assert [(await a.post("/v1/search", json={"query": f"q{i}"})).status_code for i in range(4)] == [
            200, 200, 200, 429]
        # Another address has its own budget.
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=a.app, client=("10.0.0.2", 1)),
                                  base_url="http://sim")
        async with other:
            assert (await other.post("/v1/search", json={"query": "q"})).status_code == 200


async def test_a_key_not_in_the_list_is_counted_by_address(redis_url):
    async with sim(rate_limit="2/minute", api_keys="good", redis_url=redis_url) as client:
        # Made-up keys cannot buy a fresh budget: they all count against the address (and are refused anyway).
        statuses = [(await client.post("/v1/search", json={"query": "q"},
                                       headers={"authorization": f"Bearer fake-{i}"})).status_code for i in range(3)]
        assert statuses[-1] == 429


async def test_the_budget_is_shared_across_replicas_through_redis(redis_url):
    async with sim(rate_limit="3/minute", redis_url=redis_url) as a, sim(rate_limit="3/minute",
                                                                         redis_url=redis_url) as b:
        statuses = [(await c.post("/v1/search", json={"query": "shared"})).status_code for c in (a, b, a, b)]
    assert statuses == [200, 200, 200, 429]


async def test_window_reopens_after_retry_after(redis_url):
    async with sim(rate_limit="1/s", redis_url=redis_url) as client:
        assert (await client.post("/v1/search", json={"query": "q"})).status_code == 200
        refused = await client.post("/v1/search", json={"query": "q"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        await asyncio.sleep(1.05)
        assert (await client.post("/v1/search", json={"query": "q"})).status_code == 200


async def test_redis_loss_falls_back_to_counting_in_process(private_redis):
    async with sim(rate_limit="2/minute", redis_url=private_redis.url) as client:
        assert (await client.post("/v1/search", json={"query": "q"})).status_code == 200
        private_redis.stop()
        statuses = [(await client.post("/v1/search", json={"query": "q"})).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # the local count starts afresh; it still limits
