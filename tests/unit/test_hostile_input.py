"""Hostile input beyond what the schema fuzzing generates, on every dialect: invalid UTF-8 in bodies, query
strings and headers, deep JSON nesting, NaN and Infinity, huge numbers, duplicate keys, wrong content types
and methods, oversized headers. Each answer is a 4xx (or a 2xx where the input is in fact fine), never a 5xx,
and the service answers normally afterwards."""

from __future__ import annotations

import socket

import httpx
import pytest
import pytest_asyncio

from tests.conftest import serve_in_thread
from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.middleware import MAX_HEADER_BYTES

pytestmark = pytest.mark.asyncio(loop_scope="module")

POST_PATHS = ["/v1/search", "/v1/search/batch", "/search", "/extract", "/res/v1/web/search", "/retrieve"]
GET_PATHS = ["/search.json", "/search", "/customsearch/v1", "/res/v1/web/search", "/"]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/xml"]
BODIES = {
    "deep list": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep in a field": b'{"query": "q", "q": "q", "queries": ["q"], "zerosearch": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "invalid utf-8": b'{"query": "\xff\xfe", "q": "\xc3\x28", "queries": ["\xed\xa0\x80"]}',
    "lone surrogate escape": b'{"query": "\\ud800", "q": "\\udfff", "queries": ["\\ud800"]}',
    "NaN": b'{"query": "q", "q": "q", "queries": ["q"], "noise": NaN, "k": NaN, "max_results": NaN, "topk": NaN, '
           b'"numResults": NaN, "num": NaN, "count": NaN, "requests": [{"query": "q", "noise": NaN}]}',
    "Infinity": b'{"query": "q", "q": "q", "queries": ["q"], "noise": Infinity, "k": -Infinity, '
                b'"max_results": Infinity, "topk": Infinity, "count": -Infinity, "requests": [{"query": "q", '
                b'"k": Infinity}]}',
    "huge numbers": b'{"query": "q", "q": "q", "queries": ["q"], "k": 1' + b"0" * 4000 + b', "topk": 1' + b"0" * 4000
                    + b', "max_results": 1e400, "num": -1' + b"0" * 4000 + b"}",
    "duplicate keys": b'{"query": "a", "query": "b", "q": "c", "q": 5, "queries": ["q"], "queries": 7}',
    "nul bytes": b'{"query": "a\\u0000b", "q": "\\u0000", "queries": ["\\u0000"]}',
    "not an object": b'"just a string"',
    "truncated": b'{"query": "q", "q": ',
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api():
    backend = ScriptedBackend()
    app = create_app(Settings(backend="scripted"), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            yield client


def no_server_error(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), what
        assert response.content, what


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("path", POST_PATHS)
async def test_hostile_bodies(api, path, name):
    for content_type in CONTENT_TYPES:
        response = await api.post(path, content=BODIES[name], headers={"content-type": content_type})
        no_server_error(response, f"POST {path} {name} as {content_type}")
    if name in ("deep list", "deep object", "invalid utf-8", "truncated"):
        response = await api.post(path, content=BODIES[name], headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, name, response.text[:200])


QUERY_STRINGS = ["q=%FF%FE&format=json", "q=a%00b&format=json", "q=%ED%A0%80", "q=" + "x" * 20_000,
                 "q=x&num=1" + "0" * 4000, "q=x&count=NaN&num=NaN", "q=x&num=Infinity&count=inf",
                 "q=x&format=json&pageno=1" + "0" * 4000, "q=x&offset=-1e9&start=1e400", "q=x&q=y&num=3&num=x",
                 "format=xml&q=x", "q=%20%20%20", "q[]=x&q[a]=y"]


@pytest.mark.parametrize("path", GET_PATHS)
async def test_hostile_query_strings(api, path):
    for query_string in QUERY_STRINGS:
        response = await api.get(f"{path}?{query_string}")
        if path == "/" and "format=json" not in query_string:
            assert response.status_code == 200  # the playground page
            continue
        no_server_error(response, f"GET {path}?{query_string[:40]}")


@pytest.mark.parametrize("header,value", [
    ("x-zerosearch-answers", "[" * 100_000), ("x-zerosearch-answers", '["a", 1]'), ("x-zerosearch-noise", "NaN"),
    ("x-zerosearch-noise", "inf"), ("x-zerosearch-step", "1" + "0" * 4000), ("x-zerosearch-seed", "-1"),
    ("x-zerosearch-mode", "\x7f"), ("authorization", "Bearer " + "k" * 10_000), ("x-api-key", ""),
])
async def test_hostile_extension_headers(api, header, value):
    for method, path, kwargs in [("GET", "/search.json", {"params": {"q": "x"}}),
                                 ("POST", "/search", {"json": {"query": "x"}}),
                                 ("POST", "/retrieve", {"json": {"queries": ["x"]}}),
                                 ("GET", "/res/v1/web/search", {"params": {"q": "x"}})]:
        response = await api.request(method, path, headers={header: value}, **kwargs)
        no_server_error(response, f"{method} {path} with {header}")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_wrong_methods_on_every_dialect(api, method):
    for path in [*POST_PATHS, "/search.json", "/customsearch/v1", "/healthz", "/readyz"]:
        response = await api.request(method, path, json={"query": "q"})
        if (method, path) == ("PUT", "/v1/curriculum"):
            continue
        assert response.status_code == 405, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert response.headers.get("allow")


async def test_headers_over_the_limit_get_431(api):
    response = await api.get("/healthz", headers={"x-big": "a" * (MAX_HEADER_BYTES + 1)})
    assert response.status_code == 431 and response.json()["error"]["code"] == "headers_too_large"
    many = {f"x-h-{i}": "y" * 40 for i in range(MAX_HEADER_BYTES // 40)}
    assert (await api.get("/healthz", headers=many)).status_code == 431


async def test_still_answering_after_all_that(api):
    response = await api.post("/v1/search", json={"query": "still here"})
    assert response.status_code == 200 and len(response.json()["documents"]) == 5


async def test_raw_bytes_on_the_wire():
    """What only a real server sees: raw non-ASCII bytes in the request line and headers, a megabyte of header."""
    app = create_app(Settings(backend="scripted"), backend=ScriptedBackend())
    with serve_in_thread(app, lifespan="on") as url:
        port = int(url.rsplit(":", 1)[1])

        def send(data: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(data)
                return s.recv(200)

        for line in (b"GET /search.json?q=\xff\xfe HTTP/1.1", b"GET /search?q=\xc3\x28&format=json HTTP/1.1",
                     b"GET /\xff HTTP/1.1"):
            assert send(line + b"\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400"), line  # refused by the parser
        answer = send(b"GET /search.json?q=x HTTP/1.1\r\nHost: x\r\nX-ZeroSearch-Question: \xff\xfe\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")  # header bytes are read as latin-1: odd but harmless
        assert send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n").startswith(
            b"HTTP/1.1 431")
        assert httpx.post(f"{url}/v1/search", json={"query": "after"}).status_code == 200
