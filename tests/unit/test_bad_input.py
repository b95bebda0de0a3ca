"""Every malformed request gets a 4xx with {"error": {code, message, field}}, and the service stays up."""

import httpx
import pytest
import pytest_asyncio

from zerosearch_core.schemas import MAX_BATCH_REQUESTS, MAX_QUERY_CHARS
from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api():
    app = create_app(Settings(backend="scripted", max_body_bytes=64 * 1024), backend=ScriptedBackend())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            yield client


JSON_CASES = [
    ({"query": ""}, 422, "query"),
    ({"query": "   \n\t "}, 422, "query"),
    ({"query": "x" * (MAX_QUERY_CHARS + 1)}, 422, "query"),
    ({"query": "a\x00b"}, 422, "query"),
    ({"query": 42}, 422, "query"),
    ({"query": ["a"]}, 422, "query"),
    ({"query": None}, 422, "query"),
    ({}, 422, "query"),
    ({"query": "q", "k": 0}, 422, "k"),
    ({"query": "q", "k": 21}, 422, "k"),
    ({"query": "q", "k": "5"}, 422, "k"),
    ({"query": "q", "k": 2.5}, 422, "k"),
    ({"query": "q", "noise": -0.1}, 422, "noise"),
    ({"query": "q", "noise": 1.01}, 422, "noise"),
    ({"query": "q", "noise": "high"}, 422, "noise"),
    ({"query": "q", "noise": True}, 422, "noise"),
    ({"query": "q", "step": -1}, 422, "step"),
    ({"query": "q", "step": "3"}, 422, "step"),
    ({"query": "q", "mode": "magic"}, 422, "mode"),
    ({"query": "q", "seed": -5}, 422, "seed"),
    ({"query": "q", "answers": "Paris"}, 422, "answers"),
    ({"query": "q", "answers": ["ok", 3]}, 422, "answers[1]"),
    ({"query": "q", "question": "x" * 5000}, 422, "question"),
    ({"query": "q", "cache": "yes"}, 422, "cache"),
    ({"query": "q", "nosie": 0.5}, 422, "nosie"),
]


@pytest.mark.parametrize("body,status,field", JSON_CASES)
async def test_bad_search_bodies(api, body, status, field):
    r = await api.post("/v1/search", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert error["code"] and field.split("[")[0] in error["message"]


@pytest.mark.parametrize("content,headers,status,code", [
    (b"{not json", {"content-type": "application/json"}, 400, "invalid_json"),
    (b'{"query": "caf\xe9"}', {"content-type": "application/json"}, 400, "bad_request"),
    (b"[1, 2]", {"content-type": "application/json"}, 422, "invalid_body"),
    (b'"just a string"', {"content-type": "application/json"}, 422, "invalid_body"),
    (b"query=x", {"content-type": "application/x-www-form-urlencoded"}, 422, "invalid_body"),
    (b"", {"content-type": "application/json"}, 422, "empty_body"),
    (b"{\"query\": \"q\"}", {}, 422, "invalid_body"),
    (b'{"query": "' + b"x" * 70_000 + b'"}', {"content-type": "application/json"}, 413, "payload_too_large"),
])
async def test_bad_raw_bodies(api, content, headers, status, code):
    r = await api.post("/v1/search", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    if code:
        assert r.json()["error"]["code"] == code


async def test_streamed_body_over_limit_is_413(api):
    async def chunks():
        for _ in range(20):
            yield b"x" * 8192

    r = await api.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("body,field", [
    ({"requests": []}, "requests"),
    ({"requests": "q"}, "requests"),
    ({"requests": [{"query": "q"}] * (MAX_BATCH_REQUESTS + 1)}, "requests"),
    ({"requests": [1]}, "requests[0]"),
    ({}, "requests"),
])
async def test_bad_batches(api, body, field):
    r = await api.post("/v1/search/batch", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


@pytest.mark.parametrize("body,field", [
    ({"total_steps": 0}, "total_steps"), ({"step": -1}, "step"), ({"base": 1}, None),
    ({"start": 2}, "start"), ({"end": "x"}, "end"), ({"bogus": 1}, "bogus"),
])
async def test_bad_curriculum(api, body, field):
    r = await api.put("/v1/curriculum", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


async def test_wrong_method_and_path(api):
    assert (await api.get("/v1/search")).status_code == 405
    r = await api.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_service_still_up_after_all_that(api):
    r = await api.post("/v1/search", json={"query": "still alive"})
    assert r.status_code == 200 and len(r.json()["documents"]) == 5
