"""The engine and the native API with the scripted backend (fast; the real model is tested in integration/)."""

import asyncio

import httpx
import pytest

from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.engine import cache_key


def make_client(backend=None, **settings):
    backend = backend or ScriptedBackend()
    app = create_app(Settings(backend="scripted", **settings), backend=backend)
    return app, backend


@pytest.fixture
async def api():
    app, backend = make_client()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            client.backend = backend
            client.app = app
            yield client


def metric(app, name, **labels):
    return app.state.metrics.registry.get_sample_value(name, labels) or 0.0


def test_cache_key_covers_what_changes_the_text_and_nothing_else():
    base = dict(model="m", mode="sft", template_version="v1", label="useful", query="Who wrote Hamlet",
                question="q", answers=["a"], k=5, seed=0)
    key = cache_key(**base)
    assert cache_key(**base | {"query": "  who   WROTE hamlet "}) == key  # normalised query
    for field, other in [("model", "m2"), ("mode", "prompt"), ("template_version", "v2"), ("label", "noisy"),
                         ("query", "who wrote macbeth"), ("question", "q2"), ("answers", ["b"]), ("k", 3),
                         ("seed", 1), ("verify", 2)]:
        assert cache_key(**base | {field: other}) != key, field


async def test_search_returns_k_documents_and_caches(api):
    r = await api.post("/v1/search", json={"query": "who wrote hamlet", "k": 3, "noise": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["documents"]) == 3 and not body["cached"] and not body["partial"]
    assert body["text"].startswith("Doc 1: ") and "\nDoc 3: " in body["text"]
    assert {d["label"] for d in body["documents"]} == {"useful"}
    again = (await api.post("/v1/search", json={"query": "Who wrote  Hamlet", "k": 3, "noise": 0})).json()
    assert again["cached"] and again["documents"] == body["documents"]
    assert len(api.backend.calls) == 1
    nocache = (await api.post("/v1/search", json={"query": "who wrote hamlet", "k": 3, "noise": 0,
                                                  "cache": False})).json()
    assert not nocache["cached"] and len(api.backend.calls) == 2
    assert metric(api.app, "zerosearch_cache_requests_total", result="hit") == 1
    assert metric(api.app, "zerosearch_generations_total") == 2


async def test_noise_one_is_noisy_and_prompt_says_so(api):
    body = (await api.post("/v1/search", json={"query": "q", "noise": 1.0})).json()
    assert body["noisy"] and body["noise"] == 1.0
    assert "generate five noisy documents" in api.backend.calls[-1].messages[1]["content"]
    assert metric(api.app, "zerosearch_results_total", label="noisy") == 1


async def test_label_is_reproducible_per_seed_query_step_noise(api):
    labels = []
    for seed in range(40):
        body = (await api.post("/v1/search", json={"query": "capital of peru", "noise": 0.5, "seed": seed})).json()
        again = (await api.post("/v1/search", json={"query": "capital of peru", "noise": 0.5, "seed": seed})).json()
        assert body["noisy"] == again["noisy"] and again["cached"]
        labels.append(body["noisy"])
    assert 5 < sum(labels) < 35  # both labels occur at p = 0.5


async def test_step_uses_server_curriculum_and_state_applies_without_either(api):
    put = await api.put("/v1/curriculum", json={"step": 0, "total_steps": 10, "start": 0.2, "end": 0.8, "base": 4})
    assert put.status_code == 200 and put.json()["noise"] == pytest.approx(0.2)
    at_end = (await api.post("/v1/search", json={"query": "q", "step": 10})).json()
    assert at_end["noise"] == pytest.approx(0.8)
    now = (await api.post("/v1/search", json={"query": "q2"})).json()
    assert now["noise"] == pytest.approx(0.2)
    explicit = (await api.post("/v1/search", json={"query": "q3", "step": 10, "noise": 0.0})).json()
    assert explicit["noise"] == 0.0 and not explicit["noisy"]
    assert (await api.get("/v1/curriculum")).json()["total_steps"] == 10


async def test_without_the_structure_enforced_a_short_reply_is_retried_whole():
    backend = ScriptedBackend(documents=2)
    app, _ = make_client(backend)
    async with app.router.lifespan_context(app):
        app.state.engine.enforce_structure = False
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            body = (await client.post("/v1/search", json={"query": "q", "k": 4})).json()
    assert len(backend.calls) == 2 and not backend.calls[1].continuation  # one retry, from scratch
    assert body["partial"] and len(body["documents"]) == 2 and body["continued"] == 0


async def test_garbage_text_is_not_a_server_error():
    app, backend = make_client(ScriptedBackend(reply="%%% ### \x01 ok"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            r = await client.post("/v1/search", json={"query": "q"})
    assert r.status_code == 200 and r.json()["documents"] == [] and r.json()["partial"]


async def test_single_flight_in_process():
    app, backend = make_client(ScriptedBackend(delay_s=0.2))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            rs = await asyncio.gather(*(client.post("/v1/search", json={"query": "same", "noise": 0})
                                        for _ in range(32)))
    assert all(r.status_code == 200 for r in rs)
    assert len(backend.calls) == 1
    assert sum(not r.json()["cached"] for r in rs) == 1
    assert metric(app, "zerosearch_generations_total") == 1


async def test_queue_full_is_503_with_retry_after():
    app, backend = make_client(ScriptedBackend(delay_s=0.3), max_queue=2)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            rs = await asyncio.gather(*(client.post("/v1/search", json={"query": f"q{i}"}) for i in range(5)))
            assert (await client.get("/healthz")).status_code == 200
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200, 503, 503, 503]
    full = next(r for r in rs if r.status_code == 503)
    assert full.headers["retry-after"] == "1" and full.json()["error"]["code"] == "queue_full"


async def test_timeout_is_504_and_backend_failure_503():
    app, backend = make_client(ScriptedBackend(delay_s=2.0), timeout_s=0.1)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            r = await client.post("/v1/search", json={"query": "slow"})
            assert r.status_code == 504 and r.json()["error"]["code"] == "generation_timeout"
            backend.delay_s = 0
            backend.fail_next = 1
            r = await client.post("/v1/search", json={"query": "fails", "cache": False})
            assert r.status_code == 503 and r.json()["error"]["code"] == "backend_error"
            assert (await client.post("/v1/search", json={"query": "fine"})).status_code == 200
    assert metric(app, "zerosearch_backend_errors_total") == 2


async def test_batch_keeps_order_and_isolates_failures(api):
    r = await api.post("/v1/search/batch", json={"requests": [
        {"query": "first", "noise": 0}, {"query": " "}, {"query": "third", "noise": 1}, {"k": 3}]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["query"] == "first" and results[2]["query"] == "third" and results[2]["noisy"]
    assert results[1]["error"]["field"] == "requests[1].query"
    assert results[3]["error"] == {"code": "missing_field", "message": "'query' is required.",
                                   "field": "requests[3].query"}


async def test_request_id_is_echoed(api):
    r = await api.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert len((await api.get("/healthz")).headers["x-request-id"]) == 16


async def test_readyz_and_metrics_names(api):
    ready = (await api.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["cache"] == "memory"
    await api.post("/v1/search", json={"query": "q"})
    text = (await api.get("/metrics")).text
    for name in ["zerosearch_requests_total", "zerosearch_request_duration_seconds_bucket",
                 "zerosearch_cache_requests_total", "zerosearch_generations_total",
                 "zerosearch_generated_tokens_total", "zerosearch_queue_depth", "zerosearch_results_total",
                 "zerosearch_backend_errors_total", "zerosearch_cache_errors_total", "zerosearch_batch_size"]:
        assert name in text, name
    assert 'zerosearch_requests_total{route="/v1/search",status="200"} 1.0' in text


async def test_large_batch_waits_instead_of_overflowing_the_queue():
    app, backend = make_client(ScriptedBackend(delay_s=0.05), max_queue=8)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            r = await client.post("/v1/search/batch", json={"requests": [{"query": f"q{i}"} for i in range(40)]})
    results = r.json()["results"]
    assert r.status_code == 200 and len(results) == 40
    assert all("documents" in item for item in results), [i for i in results if "error" in i][:2]
    assert [item["query"] for item in results] == [f"q{i}" for i in range(40)]


async def test_batch_item_failure_is_an_error_item():
    app, backend = make_client()
    async with app.router.lifespan_context(app):
        backend.fail_next = 1
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            r = await client.post("/v1/search/batch", json={"requests": [{"query": "a"}]})
    assert r.json()["results"][0]["error"]["code"] == "backend_error"


async def test_a_continuation_that_adds_nothing_samples_even_when_greedy():
    backend = ScriptedBackend(reply="no")
    app, _ = make_client(backend, temperature=0.0)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            await client.post("/v1/search", json={"query": "q", "k": 3})
    assert [c.temperature for c in backend.calls[:3]] == [0.0, 0.7, 0.7]  # the first round added nothing
    assert backend.calls[1].seed == backend.calls[0].seed + 1
    assert len(backend.calls) == 6  # 2k rounds at most


@pytest.mark.parametrize("body", [{"query": "Who wrote  Hamlet?", "noise": 0.3, "seed": 11, "k": 3},
                                  {"query": "who wrote hamlet?", "noise": 1.0, "question": "q", "answers": ["a"]},
                                  {"query": "who wrote hamlet? [leak]", "noise": 1.0, "answers": ["Shakespeare"]},
                                  {"query": "who wrote hamlet? [short 2]", "noise": 0.0, "answers": ["Shakespeare"]}])
async def test_native_json_path_matches_the_model_path(api, body):
    """/v1/search serialises the cached value directly; dialects read SearchResponse: both must agree."""
    from zerosearch_core.schemas import SearchRequest, SearchResponse

    engine = api.app.state.engine
    request = SearchRequest.model_validate(body)
    await engine.search(request)  # fill the cache, so both paths below are hits
    raw = await engine.search_json(request)
    model = await engine.search(request)
    parsed = SearchResponse.model_validate_json(raw)
    assert parsed.model_dump(exclude={"latency_ms"}) == model.model_dump(exclude={"latency_ms"})
    over_http = (await api.post("/v1/search", json=body)).json()
    assert over_http | {"latency_ms": 0} == parsed.model_dump() | {"latency_ms": 0}
    assert over_http["query"] == body["query"].strip() and over_http["cached"]
