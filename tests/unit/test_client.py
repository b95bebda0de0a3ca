"""SearchClient against real HTTP servers on loopback: failover, bounded retries, errors, batch."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from tests.conftest import serve_in_thread
from zerosearch_core.client import SearchClient, search_sync
from zerosearch_core.errors import RequestError, SearchUnavailableError
from zerosearch_core.schemas import CurriculumState, ErrorBody, SearchRequest, SearchResponse

SLOW_S = 1.0

hits: collections.Counter[str] = collections.Counter()
bodies: dict[str, list[object]] = collections.defaultdict(list)
settings = {"retry_after": "0.4"}
_lock = threading.Lock()


def _record(name: str, body: object = None) -> None:
    with _lock:
        hits[name] += 1
        bodies[name].append(body)


def fake_response(request: SearchRequest) -> dict:
    noisy = (request.noise or 0.0) >= 0.5
    docs = [{"id": f"d{i}", "title": f"Title{i}", "url": f"https://example.org/{i}",
             "snippet": f"Snippet {i} about {request.query}.", "label": "noisy" if noisy else "useful"}
            for i in range(1, request.k + 1)]
    return SearchResponse(query=request.query, documents=docs, noisy=noisy, noise=request.noise or 0.0,
                          cached=False, model="fake", latency_ms=1.5,
                          text="\n".join(f"Doc {i}: {d['snippet']}" for i, d in enumerate(docs, 1))
                          ).model_dump()


def _validation_error(exc: ValidationError) -> dict:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return ErrorBody(error={"code": "invalid_request", "message": first["msg"], "field": field}).model_dump()


def healthy_routes(name: str) -> list[Route]:
    async def search(request: Request) -> Response:
        body = await request.json()
        _record(name, body)
        try:
            return JSONResponse(fake_response(SearchRequest.model_validate(body)))
        except ValidationError as exc:
            return JSONResponse(_validation_error(exc), status_code=422)

    async def batch(request: Request) -> Response:
        body = await request.json()
        _record(name, body)
        results = []
        for item in body["requests"]:
            try:
                results.append(fake_response(SearchRequest.model_validate(item)))
            except ValidationError as exc:
                results.append(_validation_error(exc))
        return JSONResponse({"results": results})

    async def curriculum(request: Request) -> Response:
        body = await request.json() if request.method == "PUT" else None
        _record(name, body)
        state = CurriculumState.model_validate(body or {})
        return JSONResponse({**state.model_dump(), "noise": 0.25})

    async def readyz(request: Request) -> Response:
        _record(name)
        return JSONResponse({"status": "ready"})

    return [Route("/v1/search", search, methods=["POST"]),
            Route("/v1/search/batch", batch, methods=["POST"]),
            Route("/v1/curriculum", curriculum, methods=["GET", "PUT"]),
            Route("/readyz", readyz)]


def catch_all(name: str, handler) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        _record(name)
        return await handler(request)

    return [Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT"])]


async def _fail500(request: Request) -> Response:
    return PlainTextResponse("boom", status_code=500)


async def _busy503(request: Request) -> Response:
    body = {"error": {"code": "queue_full", "message": "too many generations waiting"}}
    return JSONResponse(body, status_code=503, headers={"Retry-After": settings["retry_after"]})


async def _bad422(request: Request) -> Response:
    body = {"error": {"code": "invalid_request", "message": "query must not be empty", "field": "query"}}
    return JSONResponse(body, status_code=422)


async def _slow(request: Request) -> Response:
    await asyncio.sleep(SLOW_S)
    return JSONResponse(fake_response(SearchRequest(query="late")))


async def _other(request: Request) -> Response:
    return JSONResponse({"hello": "not a simulator"})


def build_app() -> Starlette:
    flaky_routes = healthy_routes("flaky")
    flaky_search = flaky_routes[0].endpoint

    async def flaky(request: Request) -> Response:
        # 503 + Retry-After on the first request, then healthy.
        if hits["flaky"] == 0:
            _record("flaky")
            return await _busy503(request)
        return await flaky_search(request)

    return Starlette(routes=[
        Mount("/ok", routes=healthy_routes("ok")),
        Mount("/ok2", routes=healthy_routes("ok2")),
        Mount("/flaky", routes=[Route("/v1/search", flaky, methods=["POST"])]),
        Mount("/fail500", routes=catch_all("fail500", _fail500)),
        Mount("/busy503", routes=catch_all("busy503", _busy503)),
        Mount("/bad422", routes=catch_all("bad422", _bad422)),
        Mount("/slow", routes=catch_all("slow", _slow)),
        Mount("/other", routes=catch_all("other", _other)),
    ])


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """A URL whose port refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread(build_app()) as url:
        yield url


@pytest.fixture(scope="module")
def down() -> Iterator[str]:
    with closed_port() as url:
        yield url


@pytest.fixture(autouse=True)
def _reset() -> None:
    hits.clear()
    bodies.clear()
    settings["retry_after"] = "0.4"


def fast(urls, **kwargs) -> SearchClient:
    options = {"retries": 3, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0, **kwargs}
    return SearchClient(urls, **options)


async def test_search_sends_only_given_fields(base: str) -> None:
    async with fast(f"{base}/ok") as client:
        response = await client.search("who wrote hamlet", k=3, step=7, answers=["Shakespeare"])
    assert isinstance(response, SearchResponse)
    assert [d.title for d in response.documents] == ["Title1", "Title2", "Title3"]
    assert bodies["ok"] == [{"query": "who wrote hamlet", "k": 3, "step": 7, "answers": ["Shakespeare"]}]


async def test_failover_from_refused_connection(base: str, down: str) -> None:
    async with fast([down, f"{base}/ok"]) as client:
        first = await client.search("q1")
        second = await client.search("q2")
    assert (first.query, second.query) == ("q1", "q2")
    # Call 1 starts at the dead URL and fails over; call 2 starts at the next URL (rotation).
    assert hits["ok"] == 2


async def test_failover_from_500(base: str) -> None:
    async with fast(f"{base}/fail500,{base}/ok") as client:
        response = await client.search("q")
    assert response.query == "q"
    assert hits == {"fail500": 1, "ok": 1}


async def test_start_url_rotates_across_calls(base: str) -> None:
    async with fast([f"{base}/ok", f"{base}/ok2"]) as client:
        for i in range(4):
            await client.search(f"q{i}")
    assert hits == {"ok": 2, "ok2": 2}


async def test_retries_are_bounded(base: str) -> None:
    async with fast(f"{base}/fail500", retries=2) as client:
        with pytest.raises(SearchUnavailableError) as info:
            await client.search("q")
    assert hits["fail500"] == 3
    assert len(info.value.attempts) == 3
    assert f"{base}/fail500: HTTP 500" in str(info.value)


async def test_client_error_is_not_retried(base: str) -> None:
    async with fast([f"{base}/bad422", f"{base}/ok"]) as client:
        with pytest.raises(RequestError) as info:
            await client.search("q")
    assert (info.value.status, info.value.code, info.value.field) == (422, "invalid_request", "query")
    assert info.value.message == "query must not be empty"
    assert hits == {"bad422": 1}


async def test_server_validation_error_carries_field(base: str) -> None:
    async with fast(f"{base}/ok") as client:
        with pytest.raises(RequestError) as info:
            await client.search("q", k=999)
    assert info.value.field == "k"
    assert hits["ok"] == 1


async def test_unknown_route_is_a_request_error(base: str) -> None:
    async with fast(f"{base}/nowhere") as client:
        with pytest.raises(RequestError, match="HTTP 404.*ZeroSearch simulator"):
            await client.search("q")


async def test_unreadable_success_fails_over(base: str) -> None:
    async with fast(f"{base}/other", retries=0) as client:
        with pytest.raises(SearchUnavailableError, match="not a SearchResponse"):
            await client.search("q")
    async with fast([f"{base}/other", f"{base}/ok"]) as client:
        assert (await client.search("q")).query == "q"


async def test_all_down_names_every_url_quickly(base: str, down: str) -> None:
    urls = [down, f"{base}/fail500", f"{base}/busy503"]
    started = time.monotonic()
    async with fast(urls, retries=5) as client:
        with pytest.raises(SearchUnavailableError) as info:
            await client.search("q")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"{down}: connection refused" in message
    assert f"{base}/fail500: HTTP 500" in message
    assert f"{base}/busy503: HTTP 503 (queue_full" in message
    assert "zerosearch serve" in message
    assert len(info.value.attempts) == 6
    assert hits == {"fail500": 2, "busy503": 2}
    # Retry-After (0.4 s) is capped by max_backoff_s (0.05 s).
    assert elapsed < 2.0


async def test_retry_after_is_honoured(base: str) -> None:
    started = time.monotonic()
    async with fast(f"{base}/flaky", max_backoff_s=5.0) as client:
        response = await client.search("q")
    assert response.query == "q"
    assert hits["flaky"] == 2
    assert time.monotonic() - started >= 0.4


async def test_retry_after_is_capped(base: str) -> None:
    settings["retry_after"] = "3600"
    started = time.monotonic()
    async with fast(f"{base}/busy503", retries=2, max_backoff_s=0.1) as client:
        with pytest.raises(SearchUnavailableError):
            await client.search("q")
    assert hits["busy503"] == 3
    assert time.monotonic() - started < 2.0


async def test_timeout_is_honoured_and_fails_over(base: str) -> None:
    started = time.monotonic()
    async with fast(f"{base}/slow", timeout_s=0.2, retries=1) as client:
        with pytest.raises(SearchUnavailableError, match="timed out after 0.2s"):
            await client.search("q")
    assert time.monotonic() - started < SLOW_S * 1.5
    async with fast([f"{base}/slow", f"{base}/ok"], timeout_s=0.2) as client:
        assert (await client.search("q")).query == "q"


async def test_batch_is_one_request_in_order_with_item_errors(base: str) -> None:
    requests = [{"query": "a"}, SearchRequest(query="b", k=2), {"query": "  "},
                {"query": "d", "nosie": 0.1}, {"query": "e", "noise": 0.9, "seed": None}]
    async with fast(f"{base}/ok") as client:
        results = await client.search_batch(requests)
    assert hits["ok"] == 1
    assert bodies["ok"][0] == {"requests": [{"query": "a"}, {"query": "b", "k": 2}, {"query": "  "},
                                            {"query": "d", "nosie": 0.1}, {"query": "e", "noise": 0.9}]}
    kinds = [type(r) for r in results]
    assert kinds == [SearchResponse, SearchResponse, ErrorBody, ErrorBody, SearchResponse]
    assert results[0].query == "a" and len(results[1].documents) == 2 and results[4].noisy
    assert results[2].error.field == "query"
    assert results[3].error.field == "nosie"


async def test_empty_batch_sends_nothing(base: str) -> None:
    async with fast(f"{base}/ok") as client:
        assert await client.search_batch([]) == []
    assert not hits


async def test_curriculum_get_and_put(base: str) -> None:
    async with fast(f"{base}/ok") as client:
        current = await client.get_curriculum()
        updated = await client.set_curriculum(step=120, total_steps=300)
    assert current.step == 0 and current.noise == 0.25
    assert (updated.step, updated.total_steps) == (120, 300)
    assert bodies["ok"] == [None, {"step": 120, "total_steps": 300}]


async def test_health(base: str, down: str) -> None:
    async with fast(f"{base}/ok") as client:
        assert await client.health()
    async with fast(down) as client:
        assert not await client.health()
    async with fast([down, f"{base}/fail500", f"{base}/ok"]) as client:
        assert await client.health()


async def test_retries_are_logged(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="zerosearch_core.client")
    async with fast(f"{base}/fail500", retries=1) as client:
        with pytest.raises(SearchUnavailableError):
            await client.search("q")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "attempt 1/2" in record.getMessage() and "HTTP 500" in record.getMessage()


async def test_injected_transport() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(200, json=fake_response(SearchRequest(query="q")))

    async with fast("http://a:1/, http://b:2", transport=httpx.MockTransport(handler)) as client:
        assert (await client.search("q")).query == "q"
    assert calls == ["http://a:1/v1/search", "http://b:2/v1/search"]


def test_urls_are_parsed_and_checked() -> None:
    assert SearchClient(" http://a:1/ ,http://b:2").urls == ("http://a:1", "http://b:2")
    assert SearchClient(["http://a:1//"]).urls == ("http://a:1",)
    for bad in ("", " , ", []):
        with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
            SearchClient(bad)
    with pytest.raises(ValueError, match="must start with http"):
        SearchClient("localhost:8000")


def test_search_sync(base: str) -> None:
    response = search_sync(f"{base}/ok", "q", k=2, retries=0)
    assert len(response.documents) == 2
