"""Every dialect on the wire: request and response shapes, errors in each API's own shape, auth with and
without ZS_API_KEYS, the X-ZeroSearch-* extensions and the dispatch of the shared paths (scripted backend)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from zerosearch_simulator.app import create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.settings import Settings

KEY = "sk-good"
_counter = itertools.count()


def unique(text: str = "query") -> str:
    """A query the cache has not seen (so the backend is called and its request can be inspected)."""
    return f"{text} {next(_counter)}"


@pytest.fixture(scope="module")
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture(scope="module")
def client(backend: ScriptedBackend) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(backend="scripted"), backend=backend)) as c:
        yield c


@pytest.fixture(scope="module")
def keyed() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(backend="scripted", api_keys=f"{KEY},other"),
                               backend=ScriptedBackend())) as c:
        yield c


def last_prompt(backend: ScriptedBackend) -> str:
    return backend.calls[-1].messages[-1]["content"]


def last_k(backend: ScriptedBackend) -> int:
    """k of the last generation (the engine stops the model at `Doc {k+1}:`)."""
    return int(backend.calls[-1].stop[0].removeprefix("Doc ").removesuffix(":")) - 1


# --- Search-R1 / veRL ---------------------------------------------------------------------------------


def test_retrieve_batch_without_scores(client: TestClient) -> None:
    r = client.post("/retrieve", json={"queries": ["who wrote hamlet", "capital of france"], "topk": 2,
                                       "return_scores": False, "unknown": 1})
    assert r.status_code == 200
    result = r.json()["result"]
    assert [len(docs) for docs in result] == [2, 2]
    doc = result[1][0]
    assert set(doc) == {"id", "contents"}
    title, text = doc["contents"].split("\n", 1)
    assert title.startswith('"') and title.endswith('"') and "capital of france" in text


def test_retrieve_batch_with_scores_and_defaults(client: TestClient, backend: ScriptedBackend) -> None:
    r = client.post("/retrieve", json={"queries": [unique("hamlet")], "topk": None, "return_scores": "True"})
    assert r.status_code == 200
    items = r.json()["result"][0]
    assert len(items) == 3 and last_k(backend) == 3  # topk null: the Search-R1 default
    assert set(items[0]) == {"document", "score"} and set(items[0]["document"]) == {"id", "contents"}
    assert items[0]["score"] > items[1]["score"] > items[2]["score"]
    client.post("/retrieve", json={"queries": [unique()], "topk": 500})
    assert last_k(backend) == 20  # clamped to the simulator's maximum
    assert client.post("/retrieve", json={"queries": []}).json() == {"result": []}


def test_retrieve_wiki_form(client: TestClient, backend: ScriptedBackend) -> None:
    r = client.post("/retrieve", json={"query": unique("who wrote hamlet"), "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and len(body) == 2 and set(body[0]) == {"text"} and "hamlet" in body[0]["text"]
    client.post("/retrieve", json={"query": unique()})
    assert last_k(backend) == 5


@pytest.mark.parametrize(("body", "loc"), [
    ({"queries": ["a"], "topk": 0}, ["body", "topk"]),
    ({"queries": ["a"], "topk": "three"}, ["body", "topk"]),
    ({"queries": "x" * 0}, ["body", "queries", 0]),
    ({"topk": 3}, ["body", "queries"]),
    ({"queries": {"a": 1}}, ["body", "queries"]),
    ({"queries": ["ok", ""]}, ["body", "queries", 1]),
    ({"queries": ["ok", 5]}, ["body", "queries", 1]),
    ({"queries": ["x" * 600]}, ["body", "queries", 0]),
    ({"queries": ["a"], "return_scores": "maybe"}, ["body", "return_scores"]),
    ({"query": "", "top_k": 3}, ["body", "query"]),
    ({"query": "a", "top_k": -1}, ["body", "top_k"]),
    ({"queries": ["a", "b"], "zerosearch": [{"noise": 1}]}, ["body", "zerosearch"]),
    ({"queries": ["a"], "zerosearch": {"noise": 3}}, ["body", "zerosearch", "noise"]),
    ([1, 2], ["body"]),
])
def test_retrieve_errors_are_fastapi_422(client: TestClient, body: Any, loc: list) -> None:
    r = client.post("/retrieve", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["msg"]


def test_retrieve_bad_header_is_located_in_the_header(client: TestClient) -> None:
    r = client.post("/retrieve", json={"queries": ["a"]}, headers={"X-ZeroSearch-Seed": "-3"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["header", "X-ZeroSearch-Seed"]


def test_retrieve_invalid_json(client: TestClient) -> None:
    r = client.post("/retrieve", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"][0]["msg"]


def test_retrieve_per_query_extensions(client: TestClient, backend: ScriptedBackend) -> None:
    q1, q2 = unique("paris"), unique("rome")
    before = len(backend.calls)
    r = client.post("/retrieve", json={"queries": [q1, q2], "topk": 2, "zerosearch": [
        {"noise": 0, "question": "What is the capital of France?", "answers": ["Paris"]},
        {"noise": 1, "question": "Capital of Italy?", "answers": ["Rome"]}]})
    assert r.status_code == 200
    first, second = r.json()["result"]
    assert all("Useful document" in d["contents"] for d in first)
    assert all("Noisy document" in d["contents"] for d in second)
    # every generation of this request (a noisy set that mentions "rome" is regenerated by the label check)
    prompts = [c.messages[-1]["content"] for c in backend.calls[before:]]
    assert any("capital of France" in p and "Paris" in p for p in prompts)
    assert any("Capital of Italy" in p and "Rome" in p for p in prompts)


def test_retrieve_batch_larger_than_the_queue_waits_instead_of_failing() -> None:
    settings = Settings(backend="scripted", max_queue=4)
    with TestClient(create_app(settings, backend=ScriptedBackend(delay_s=0.01))) as c:
        r = c.post("/retrieve", json={"queries": [f"query {i}" for i in range(24)], "topk": 2})
        assert r.status_code == 200 and len(r.json()["result"]) == 24
        r = c.post("/search", json=[{"q": f"serper {i}", "num": 1} for i in range(12)])
        assert r.status_code == 200 and len(r.json()) == 12


def test_retrieve_auth(keyed: TestClient) -> None:
    assert keyed.post("/retrieve", json={"queries": ["a"]}).status_code == 200  # no credential of its own
    ok = keyed.post("/retrieve", json={"queries": ["a"]}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    bad = keyed.post("/retrieve", json={"queries": ["a"]}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "detail" in bad.json()


# --- Tavily ----------------------------------------------------------------------------------------------


def test_tavily_search(client: TestClient, backend: ScriptedBackend) -> None:
    r = client.post("/search", json={"query": unique("who wrote hamlet"), "max_results": 3, "search_depth": "basic",
                                     "include_answer": True, "include_usage": True, "new_field": [1]},
                    headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200
    body = r.json()
    assert {"query", "answer", "images", "follow_up_questions", "results", "response_time", "request_id"} <= set(body)
    assert len(body["results"]) == 3 and body["usage"] == {"credits": 1}
    assert set(body["results"][0]) == {"title", "url", "content", "score", "raw_content"}
    assert body["results"][0]["raw_content"] is None
    client.post("/search", json={"query": unique()})
    assert last_k(backend) == 5


def test_tavily_zero_results_and_limits(client: TestClient) -> None:
    assert client.post("/search", json={"query": "a", "max_results": 0}).json()["results"] == []
    for bad in (21, -1, "many"):
        r = client.post("/search", json={"query": "a", "max_results": bad})
        assert r.status_code == 400 and "max_results" in r.json()["detail"]["error"]


@pytest.mark.parametrize("request_kwargs", [
    {"json": {"query": ""}},
    {"json": {"query": None}},
    {"json": {}},
    {"content": b""},
    {"content": b"[", "headers": {"Content-Type": "application/json"}},
    {"json": {"query": 12}},
])
def test_tavily_bad_requests(client: TestClient, request_kwargs: dict) -> None:
    r = client.post("/search", **request_kwargs)
    assert r.status_code == 400
    assert isinstance(r.json()["detail"]["error"], str)


def test_tavily_auth(keyed: TestClient) -> None:
    for headers, body, status in [({}, {"query": "a"}, 401), ({"Authorization": "Bearer bad"}, {"query": "a"}, 401),
                                  ({"Authorization": f"Bearer {KEY}"}, {"query": "a"}, 200),
                                  ({}, {"query": "a", "api_key": "other"}, 200),
                                  ({}, {"query": "a", "api_key": "bad"}, 401)]:
        r = keyed.post("/search", json=body, headers=headers)
        assert r.status_code == status, (headers, body)
        if status == 401:
            assert "API key" in r.json()["detail"]["error"]


def test_tavily_extract(client: TestClient, keyed: TestClient) -> None:
    r = client.post("/extract", json={"urls": "https://capital-of.example/france-paris-0123abcd", "format": "text"})
    assert r.status_code == 200
    body = r.json()
    assert body["results"][0]["url"] == "https://capital-of.example/france-paris-0123abcd"
    assert "capital of france paris" in body["results"][0]["raw_content"]
    assert body["failed_results"] == [] and "response_time" in body
    assert client.post("/extract", json={}).status_code == 400
    assert client.post("/extract", json={"urls": ["https://a.example"] * 21}).status_code == 400
    assert keyed.post("/extract", json={"urls": ["https://a.example"]}).status_code == 401


# --- Serper --------------------------------------------------------------------------------------------


def _serper_ok(r: httpx.Response, q: str, n: int) -> None:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["searchParameters"]["q"] == q and body["searchParameters"]["type"] == "search"
    assert len(body["organic"]) == n and body["credits"] == 1
    assert set(body["organic"][0]) == {"title", "link", "snippet", "position"}
    assert body["peopleAlsoAsk"] == [] and body["relatedSearches"] == []


def test_serper_body_query_string_and_get(client: TestClient, backend: ScriptedBackend) -> None:
    _serper_ok(client.post("/search", json={"q": "hamlet", "num": 3, "gl": "fr"}), "hamlet", 3)
    # LangChain: POST, JSON content type, empty body, everything in the query string
    r = client.post("/search", params={"q": "hamlet", "num": "2", "hl": "en"},
                    headers={"X-API-KEY": "anything", "Content-Type": "application/json"})
    _serper_ok(r, "hamlet", 2)
    _serper_ok(client.get("/search", params={"q": "hamlet", "num": 2}, headers={"X-API-KEY": "x"}), "hamlet", 2)
    _serper_ok(client.get("/search", params={"q": "hamlet", "num": 2, "apiKey": "x"}), "hamlet", 2)
    client.post("/search", json={"q": unique()})
    assert last_k(backend) == 10
    client.post("/search", json={"q": unique(), "num": 100})
    assert last_k(backend) == 20
    page2 = client.post("/search", json={"q": "hamlet", "num": 2, "page": 2}).json()
    assert [o["position"] for o in page2["organic"]] == [3, 4]


def test_serper_batch(client: TestClient) -> None:
    r = client.post("/search", json=[{"q": "paris", "num": 2}, {"q": "rome", "num": 1}])
    assert r.status_code == 200
    assert [(b["searchParameters"]["q"], len(b["organic"])) for b in r.json()] == [("paris", 2), ("rome", 1)]


@pytest.mark.parametrize("body", [{"q": ""}, {"q": "a", "num": 0}, {"q": "a", "num": "x"}, [], [{"q": "a"}, 3]])
def test_serper_errors(client: TestClient, body: Any) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == 400 and r.json()["statusCode"] == 400 and r.json()["message"]


def test_serper_auth(keyed: TestClient) -> None:
    for params, headers, status in [({}, {}, 403), ({}, {"X-API-KEY": "bad"}, 403), ({"api_key": "bad"}, {}, 403),
                                    ({}, {"X-API-KEY": KEY}, 200), ({"api_key": KEY}, {}, 200),
                                    ({"apiKey": "other"}, {}, 200)]:
        r = keyed.post("/search", params={"q": "a", **params}, headers=headers)
        assert r.status_code == status, (params, headers)
        if status == 403:
            assert r.json() == {"message": "Unauthorized.", "statusCode": 403}


# --- SerpAPI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path_params", [("/search.json", {}), ("/search", {"engine": "google"}),
                                         ("/search", {"api_key": "x"}), ("/search", {})])
def test_serpapi_shape(client: TestClient, path_params: tuple[str, dict]) -> None:
    path, params = path_params
    r = client.get(path, params={"q": "who wrote hamlet", "num": "3", "start": "10", "gl": "us", **params})
    assert r.status_code == 200
    body = r.json()
    assert "error" not in body
    assert body["search_metadata"]["status"] == "Success"
    assert body["search_parameters"]["q"] == "who wrote hamlet" and body["search_parameters"]["engine"] == "google"
    assert body["search_information"]["query_displayed"] == "who wrote hamlet"
    organic = body["organic_results"]
    assert [o["position"] for o in organic] == [11, 12, 13]
    assert {"position", "title", "link", "displayed_link", "snippet", "source"} <= set(organic[0])


def test_serpapi_errors_and_html(client: TestClient, keyed: TestClient, backend: ScriptedBackend) -> None:
    for params in ({}, {"q": ""}, {"q": "   "}):
        r = client.get("/search.json", params=params)
        assert r.status_code == 400 and r.json() == {"error": "Missing query `q` parameter."}
    assert client.get("/search.json", params={"q": "a", "num": "0"}).status_code == 400
    assert "error" in client.get("/search.json", params={"q": "a", "num": "ten"}).json()
    client.get("/search.json", params={"q": unique()})
    assert last_k(backend) == 10
    html = client.get("/search.json", params={"q": "hamlet", "output": "html"})
    assert html.headers["content-type"].startswith("text/html") and "hamlet" in html.text
    r = keyed.get("/search.json", params={"q": "a", "api_key": "bad"})
    assert r.status_code == 401 and r.json()["error"].startswith("Invalid API key.")
    assert keyed.get("/search", params={"q": "a", "engine": "google"}).status_code == 401
    assert keyed.get("/search.json", params={"q": "a", "api_key": KEY}).status_code == 200


# --- SearXNG -------------------------------------------------------------------------------------------


def _searx_ok(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"query", "number_of_results", "results", "answers", "corrections", "infoboxes", "suggestions",
            "unresponsive_engines"} <= set(body)
    first = body["results"][0]
    assert {"title", "url", "content", "engine", "engines", "category", "score", "positions", "parsed_url",
            "template", "publishedDate"} <= set(first)
    assert first["category"] == "general" and first["engines"] == [first["engine"]]


def test_searxng_paths(client: TestClient, backend: ScriptedBackend) -> None:
    _searx_ok(client.get("/search", params={"q": unique("hamlet"), "format": "json", "language": "en"}))
    assert last_k(backend) == 10
    _searx_ok(client.get("/", params={"q": "hamlet", "format": "JSON", "categories": "general"}))
    _searx_ok(client.post("/search", data={"q": "hamlet", "format": "json"}))
    _searx_ok(client.post("/search", params={"format": "json"}, data={"q": "hamlet"}))
    page = client.get("/search", params={"q": "hamlet", "format": "json", "pageno": "2"}).json()
    assert page["results"][0]["positions"] == [11]


def test_searxng_errors_and_playground(client: TestClient, keyed: TestClient) -> None:
    r = client.get("/search", params={"format": "json"})
    assert r.status_code == 400 and r.json() == {"error": "No query"}
    assert client.get("/", params={"format": "json", "q": ""}).json() == {"error": "No query"}
    assert client.get("/search", params={"q": "a", "format": "html"}).status_code == 400
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/", params={"q": "a"}).headers["content-type"].startswith("text/html")
    assert keyed.get("/search", params={"q": "a", "format": "json"}).status_code == 200
    bad = keyed.get("/", params={"q": "a", "format": "json"}, headers={"Authorization": "Bearer bad"})
    assert bad.status_code == 401 and "error" in bad.json()


# --- Brave ---------------------------------------------------------------------------------------------


def test_brave(client: TestClient, backend: ScriptedBackend) -> None:
    r = client.get("/res/v1/web/search", params={"q": unique("who wrote hamlet"), "count": 3,
                                                 "extra_snippets": "True", "country": "us", "whatever": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "search" and body["query"]["original"].startswith("who wrote hamlet")
    assert "more_results_available" in body["query"]
    assert body["mixed"]["type"] == "mixed" and len(body["mixed"]["main"]) == 3
    result = body["web"]["results"][0]
    assert body["web"]["type"] == "search" and body["web"]["family_friendly"] is True
    assert {"type", "subtype", "title", "url", "description", "language", "family_friendly", "meta_url",
            "extra_snippets"} <= set(result)
    assert {"scheme", "netloc", "hostname", "favicon", "path"} <= set(result["meta_url"])
    assert "extra_snippets" not in client.get("/res/v1/web/search", params={"q": "a"}).json()["web"]["results"][0]
    client.get("/res/v1/web/search", params={"q": unique()})
    assert last_k(backend) == 20  # Brave's default count
    post = client.post("/res/v1/web/search", json={"q": "hamlet", "count": 2})
    assert len(post.json()["web"]["results"]) == 2


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "a", "count": 0}, {"q": "a", "count": 21},
                                    {"q": "a", "offset": 10}, {"q": "a", "count": "x"}, {"q": "w " * 51},
                                    {"q": "a", "extra_snippets": "perhaps"}])
def test_brave_validation(client: TestClient, params: dict) -> None:
    r = client.get("/res/v1/web/search", params=params)
    assert r.status_code == 422
    body = r.json()
    assert body["type"] == "ErrorResponse" and body["error"]["code"] == "VALIDATION"
    assert body["error"]["status"] == 422 and "time" in body


def test_brave_auth(keyed: TestClient) -> None:
    for headers in ({}, {"X-Subscription-Token": "bad"}):
        r = keyed.get("/res/v1/web/search", params={"q": "a"}, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == "SUBSCRIPTION_TOKEN_INVALID"
    ok = keyed.get("/res/v1/web/search", params={"q": "a"}, headers={"X-Subscription-Token": KEY})
    assert ok.status_code == 200


# --- Google Custom Search --------------------------------------------------------------------------------


def test_google_custom_search(client: TestClient, backend: ScriptedBackend) -> None:
    r = client.get("/customsearch/v1", params={"q": "who wrote hamlet", "num": 3, "start": 11, "cx": "abc",
                                               "key": "k"})
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "customsearch#search"
    request = body["queries"]["request"][0]
    assert request["searchTerms"] == "who wrote hamlet" and request["count"] == 3 and request["startIndex"] == 11
    assert isinstance(request["totalResults"], str) and isinstance(body["searchInformation"]["totalResults"], str)
    item = body["items"][0]
    assert item["kind"] == "customsearch#result"
    assert {"title", "link", "displayLink", "snippet", "htmlTitle", "htmlSnippet", "formattedUrl"} <= set(item)
    client.get("/customsearch/v1", params={"q": unique()})
    assert last_k(backend) == 10


@pytest.mark.parametrize("params", [{}, {"q": "a", "num": 11}, {"q": "a", "num": 0}, {"q": "a", "start": 0},
                                    {"q": "a", "start": 95, "num": 10}, {"q": "a", "num": "ten"}])
def test_google_errors(client: TestClient, params: dict) -> None:
    r = client.get("/customsearch/v1", params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] == "badRequest" and error["errors"][0]["domain"] == "global"


def test_google_auth_and_empty_items(keyed: TestClient) -> None:
    missing = keyed.get("/customsearch/v1", params={"q": "a"})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = keyed.get("/customsearch/v1", params={"q": "a", "key": "bad"})
    assert bad.status_code == 400 and "API key not valid" in bad.json()["error"]["message"]
    assert keyed.get("/customsearch/v1", params={"q": "a", "key": KEY}).status_code == 200
    with TestClient(create_app(Settings(backend="scripted"), backend=ScriptedBackend(reply="nothing"))) as empty:
        body = empty.get("/customsearch/v1", params={"q": "a"}).json()
        assert "items" not in body and body["searchInformation"]["totalResults"] == "0"


# --- Exa -----------------------------------------------------------------------------------------------


def test_exa(client: TestClient, keyed: TestClient, backend: ScriptedBackend) -> None:
    r = client.post("/search", json={"query": unique("hamlet"), "numResults": 3, "contents": {"text": True},
                                     "type": "auto"}, headers={"x-api-key": "k"})
    assert r.status_code == 200
    body = r.json()
    assert {"requestId", "results", "searchTime"} <= set(body)
    assert {"id", "url", "title", "score", "text", "highlights"} <= set(body["results"][0])
    assert len(body["results"]) == 3
    # only `query` and the x-api-key header: Exa; with a Bearer header: Tavily
    assert "requestId" in client.post("/search", json={"query": "a"}, headers={"x-api-key": "k"}).json()
    tavily = client.post("/search", json={"query": "a"}, headers={"x-api-key": "k", "Authorization": "Bearer k"})
    assert "request_id" in tavily.json()
    client.post("/search", json={"query": unique(), "numResults": 50})
    assert last_k(backend) == 20
    bad = client.post("/search", json={"query": "a", "numResults": 0})
    assert bad.status_code == 400 and bad.json()["tag"] == "INVALID_REQUEST_BODY"
    assert client.post("/search", json={"query": "", "numResults": 1}).status_code == 400
    unauthorized = keyed.post("/search", json={"query": "a", "numResults": 1}, headers={"x-api-key": "bad"})
    assert unauthorized.status_code == 401 and unauthorized.json()["tag"] == "INVALID_API_KEY"
    assert keyed.post("/search", json={"query": "a", "numResults": 1}, headers={"x-api-key": KEY}).status_code == 200


# --- dispatch of the shared paths -------------------------------------------------------------------------


def _dialect_of(body: Any) -> str:
    if isinstance(body, list):
        return "serper"
    if "organic" in body or "statusCode" in body:
        return "serper"
    if "organic_results" in body:
        return "serpapi"
    if "unresponsive_engines" in body:
        return "searxng"
    if "requestId" in body:
        return "exa"
    if "request_id" in body or "detail" in body:
        return "tavily"
    if body.get("error") == "No query" or "error" in body and isinstance(body["error"], str):
        return "serpapi-or-searxng"
    raise AssertionError(body)


@pytest.mark.parametrize(("method", "kwargs", "expected"), [
    ("POST", {"json": {"query": "a"}}, "tavily"),
    ("POST", {"json": {"query": "a", "api_key": "k"}}, "tavily"),
    ("POST", {"json": {"q": "a"}}, "serper"),
    ("POST", {"json": [{"q": "a"}]}, "serper"),
    ("POST", {"params": {"q": "a"}}, "serper"),
    ("POST", {"params": {"q": "a"}, "headers": {"Content-Type": "application/json"}}, "serper"),
    ("POST", {"headers": {"X-API-KEY": "k"}}, "serper"),
    ("POST", {"json": {"query": "a", "numResults": 1}}, "exa"),
    ("POST", {"json": {"query": "a", "contents": {"text": True}}}, "exa"),
    ("POST", {"json": {"query": "a"}, "headers": {"x-api-key": "k"}}, "exa"),
    ("POST", {"data": {"q": "a", "format": "json"}}, "searxng"),
    ("POST", {"params": {"q": "a", "format": "json"}}, "searxng"),
    ("POST", {}, "tavily"),
    ("GET", {"params": {"q": "a", "format": "json"}}, "searxng"),
    ("GET", {"params": {"q": "a", "engine": "google"}}, "serpapi"),
    ("GET", {"params": {"q": "a", "engine": "google", "api_key": "k"}}, "serpapi"),
    ("GET", {"params": {"q": "a", "api_key": "k"}}, "serpapi"),
    ("GET", {"params": {"q": "a"}}, "serpapi"),
    ("GET", {"params": {"q": "a", "page": 2}}, "serper"),
    ("GET", {"params": {"q": "a", "apiKey": "k"}}, "serper"),
    ("GET", {"params": {"q": "a"}, "headers": {"X-API-KEY": "k"}}, "serper"),
])
def test_dispatch(client: TestClient, method: str, kwargs: dict, expected: str) -> None:
    r = client.request(method, "/search", **kwargs)
    assert r.status_code in (200, 400), r.text
    assert _dialect_of(r.json()) == expected


# --- curriculum extensions ---------------------------------------------------------------------------------

# (method, path, request kwargs builder for a query, extractor of the result texts)
Call = tuple[str, str, Callable[[str], dict], Callable[[Any], list[str]]]
DIALECTS: dict[str, Call] = {
    "searchr1": ("POST", "/retrieve", lambda q: {"json": {"queries": [q], "topk": 2}},
                 lambda b: [d["contents"] for d in b["result"][0]]),
    "wiki": ("POST", "/retrieve", lambda q: {"json": {"query": q, "top_k": 2}}, lambda b: [d["text"] for d in b]),
    "tavily": ("POST", "/search", lambda q: {"json": {"query": q, "max_results": 2}},
               lambda b: [r["content"] for r in b["results"]]),
    "serper": ("POST", "/search", lambda q: {"json": {"q": q, "num": 2}},
               lambda b: [r["snippet"] for r in b["organic"]]),
    "serpapi": ("GET", "/search.json", lambda q: {"params": {"q": q, "num": 2}},
                lambda b: [r["snippet"] for r in b["organic_results"]]),
    "searxng": ("GET", "/search", lambda q: {"params": {"q": q, "format": "json"}},
                lambda b: [r["content"] for r in b["results"]]),
    "brave": ("GET", "/res/v1/web/search", lambda q: {"params": {"q": q, "count": 2}},
              lambda b: [r["description"] for r in b["web"]["results"]]),
    "google": ("GET", "/customsearch/v1", lambda q: {"params": {"q": q, "num": 2}},
               lambda b: [r["snippet"] for r in b["items"]]),
    "exa": ("POST", "/search", lambda q: {"json": {"query": q, "numResults": 2}},
            lambda b: [r["text"] for r in b["results"]]),
}
# Each dialect's error: (status, how to read the message).
ERRORS: dict[str, tuple[int, Callable[[Any], str]]] = {
    "searchr1": (422, lambda b: b["detail"][0]["msg"]), "wiki": (422, lambda b: b["detail"][0]["msg"]),
    "tavily": (400, lambda b: b["detail"]["error"]), "serper": (400, lambda b: b["message"]),
    "serpapi": (400, lambda b: b["error"]), "searxng": (400, lambda b: b["error"]),
    "brave": (422, lambda b: b["error"]["detail"]), "google": (400, lambda b: b["error"]["message"]),
    "exa": (400, lambda b: b["error"]),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_noise_header_in_every_dialect(client: TestClient, backend: ScriptedBackend, dialect: str) -> None:
    method, path, build, texts = DIALECTS[dialect]
    for noise, word in (("1", "Noisy"), ("0.0", "Useful")):
        kwargs = build(unique("capital of france"))
        kwargs["headers"] = {"X-ZeroSearch-Noise": noise, "X-ZeroSearch-Question": "What is the capital of France?",
                             "X-ZeroSearch-Answers": '["Paris", "City of Light"]', "X-ZeroSearch-Seed": "7",
                             "X-ZeroSearch-Step": "3", "X-ZeroSearch-Mode": "sft"}
        r = client.request(method, path, **kwargs)
        assert r.status_code == 200, r.text
        assert texts(r.json())
        assert f"{word} Output:" in last_prompt(backend)  # the label the engine drew
        assert "What is the capital of France?" in last_prompt(backend) and "Paris" in last_prompt(backend)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize(("header", "value"), [("X-ZeroSearch-Noise", "2"), ("X-ZeroSearch-Noise", "loud"),
                                               ("X-ZeroSearch-Step", "-1"), ("X-ZeroSearch-Seed", "x"),
                                               ("X-ZeroSearch-Mode", "magic"), ("X-ZeroSearch-Answers", "[1, 2]")])
def test_bad_extension_header_in_every_dialect(client: TestClient, dialect: str, header: str, value: str) -> None:
    method, path, build, _ = DIALECTS[dialect]
    kwargs = build("capital of france")
    kwargs["headers"] = {header: value}
    r = client.request(method, path, **kwargs)
    status, message = ERRORS[dialect]
    assert r.status_code == status, r.text
    assert header in message(r.json())


def test_answers_comma_separated_and_body_object_overrides_headers(client: TestClient,
                                                                   backend: ScriptedBackend) -> None:
    r = client.post("/search", json={"query": unique("france"), "zerosearch": {"noise": 0, "answers": ["Lyon"]}},
                    headers={"X-ZeroSearch-Noise": "1", "X-ZeroSearch-Answers": "Paris, Marseille",
                             "X-ZeroSearch-Question": "Which city?"})
    assert r.status_code == 200
    assert all("Useful" in x["content"] for x in r.json()["results"])
    assert "Lyon" in last_prompt(backend) and "Which city?" in last_prompt(backend)
    client.post("/search", json={"q": unique("france")}, headers={"X-ZeroSearch-Answers": "Paris, Marseille",
                                                                   "X-ZeroSearch-Question": "Which city?"})
    assert "whose answer is Paris" in last_prompt(backend)
    bad = client.post("/search", json={"query": "a", "zerosearch": {"step": "later"}})
    assert bad.status_code == 400 and "zerosearch.step" in bad.json()["detail"]["error"]
    bad = client.post("/search", json={"q": "a", "zerosearch": "noisy"})
    assert bad.status_code == 400 and "zerosearch" in bad.json()["message"]


def test_without_extensions_the_server_curriculum_applies(client: TestClient) -> None:
    client.put("/v1/curriculum", json={"step": 200, "total_steps": 200, "start": 1.0, "end": 1.0})
    try:
        r = client.post("/search", json={"query": unique("curriculum")})
        assert all("Noisy" in x["content"] for x in r.json()["results"])
    finally:
        client.put("/v1/curriculum", json={"step": 0, "total_steps": 200, "start": 0.0, "end": 0.5})


# --- MCP over raw HTTP ---------------------------------------------------------------------------------

MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def _rpc(c: TestClient, method: str, params: dict | None = None, headers: dict | None = None) -> httpx.Response:
    return c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}},
                  headers={**MCP_HEADERS, **(headers or {})})


def test_mcp_raw(client: TestClient, keyed: TestClient) -> None:
    tools = _rpc(client, "tools/list").json()["result"]["tools"]
    assert {t["name"] for t in tools} >= {"web_search", "search"}
    r = _rpc(client, "tools/call", {"name": "web_search", "arguments": {"query": unique("paris"), "count": 2}},
             headers={"X-ZeroSearch-Noise": "1"})
    result = r.json()["result"]
    payload = json.loads(result["content"][0]["text"])
    assert len(payload["results"]) == 2 and all("Noisy" in x["content"] for x in payload["results"])
    bad = _rpc(client, "tools/call", {"name": "web_search", "arguments": {"query": "a"}},
               headers={"X-ZeroSearch-Mode": "magic"})
    assert bad.json()["result"]["isError"] is True
    assert _rpc(keyed, "tools/list", headers={"Authorization": "Bearer bad"}).status_code == 401
    assert _rpc(keyed, "tools/list", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


# --- robustness ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/search", {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/search", {"content": b"%%%", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", "/search", {"json": "just a string"}),
    ("POST", "/search", {"json": 42}),
    ("POST", "/search", {"json": {"query": ["a"]}}),
    ("POST", "/search", {"json": {"q": {"nested": 1}}}),
    ("POST", "/search", {"content": b'{"query": "a", "max_results": 1e309}'}),
    ("POST", "/retrieve", {"json": None}),
    ("POST", "/retrieve", {"json": {"queries": [None]}}),
    ("POST", "/retrieve", {"json": {"queries": ["a"], "topk": 1.5}}),
    ("POST", "/extract", {"json": {"urls": [1, 2]}}),
    ("POST", "/res/v1/web/search", {"json": [1]}),
    ("GET", "/search.json", {"params": {"q": "a", "start": "-"}}),
    ("GET", "/customsearch/v1", {"params": {"q": "a", "start": "1e3"}}),
    ("GET", "/res/v1/web/search", {"params": {"q": "a", "offset": "-1"}}),
    ("GET", "/search", {"params": {"q": "a\x00b", "engine": "google"}}),
])
def test_client_mistakes_are_never_5xx(client: TestClient, method: str, path: str, kwargs: dict) -> None:
    r = client.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_openapi_lists_the_dialects(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/retrieve", "/search", "/search.json", "/extract", "/res/v1/web/search", "/customsearch/v1"} <= set(paths)
    assert "requestBody" in paths["/retrieve"]["post"] and "requestBody" in paths["/search"]["post"]


def test_engine_errors_keep_native_503(client: TestClient, backend: ScriptedBackend) -> None:
    backend.fail_next = 1
    try:
        r = client.post("/search", json={"query": unique("failure")})
    finally:
        backend.fail_next = 0
    assert r.status_code == 503 and r.json()["error"]["code"] == "backend_error"
