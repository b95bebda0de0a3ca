"""The real client libraries of each search API, pointed at the simulator (real uvicorn on loopback, scripted
backend): what they return is what an agent built on them would see.

Client libraries come from the `clients` extra. `pytest.importorskip` only guards against a missing extra
while it is being added to `make setup`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.conftest import serve_in_thread
from zerosearch_simulator.app import create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.settings import Settings

KEY = "sk-test-key"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The simulator without API keys (any key or none is accepted)."""
    with serve_in_thread(create_app(Settings(backend="scripted"), backend=ScriptedBackend()), lifespan="on") as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    """The simulator with ZS_API_KEYS set: each client's own auth error comes back."""
    with serve_in_thread(create_app(Settings(backend="scripted", api_keys=KEY), backend=ScriptedBackend()),
                         lifespan="on") as url:
        yield url



# --- Tavily -------------------------------------------------------------------------------------------


def test_tavily_python_search_and_extract(base_url: str) -> None:
    tavily = pytest.importorskip("tavily")
    client = tavily.TavilyClient(api_key="tvly-anything", api_base_url=base_url)
    result = client.search("who wrote hamlet", max_results=3, include_raw_content=True, search_depth="advanced",
                           topic="general", some_future_option=True)
    assert result["query"] == "who wrote hamlet"
    assert len(result["results"]) == 3
    first = result["results"][0]
    assert {"title", "url", "content", "score", "raw_content"} <= set(first)
    assert "hamlet" in first["content"] and first["url"].startswith("https://") and ".example/" in first["url"]
    assert first["raw_content"] == first["content"]
    extracted = client.extract(urls=[first["url"], "not a url"])
    assert [r["url"] for r in extracted["results"]] == [first["url"]]
    assert extracted["results"][0]["raw_content"]
    assert [r["url"] for r in extracted["failed_results"]] == ["not a url"]


def test_tavily_python_async_and_errors(base_url: str, keyed_url: str) -> None:
    tavily = pytest.importorskip("tavily")

    async def run() -> dict:
        return await tavily.AsyncTavilyClient(api_key="tvly-x", api_base_url=base_url).search("paris", max_results=2)

    assert len(asyncio.run(run())["results"]) == 2
    with pytest.raises(tavily.BadRequestError, match="max_results"):
        tavily.TavilyClient(api_key="x", api_base_url=base_url).search("paris", max_results=50)
    with pytest.raises(tavily.InvalidAPIKeyError):
        tavily.TavilyClient(api_key="wrong", api_base_url=keyed_url).search("paris")
    assert tavily.TavilyClient(api_key=KEY, api_base_url=keyed_url).search("paris")["results"]


def test_langchain_tavily(base_url: str) -> None:
    langchain_tavily = pytest.importorskip("langchain_tavily")
    tool = langchain_tavily.TavilySearch(max_results=2, tavily_api_key="tvly-x", api_base_url=base_url)
    output = tool.invoke({"query": "capital of france"})
    assert output["query"] == "capital of france"
    assert len(output["results"]) == 2 and "capital of france" in output["results"][0]["content"]


# --- SerpAPI ------------------------------------------------------------------------------------------


def test_serpapi_module_search(base_url: str, keyed_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    serpapi = pytest.importorskip("serpapi")
    if not hasattr(serpapi, "Client"):
        pytest.skip("`serpapi` is google-search-results' module here, not the serpapi package")
    monkeypatch.setattr(serpapi.Client, "BASE_DOMAIN", base_url)
    # The module-level function (what the paper's code calls) follows the class attribute.
    results = serpapi.search(q="who wrote hamlet", engine="google", num=3, api_key="anything")
    assert results["search_metadata"]["status"] == "Success"
    assert "error" not in results
    organic = results["organic_results"]
    assert [r["position"] for r in organic] == [1, 2, 3]
    assert "hamlet" in organic[0]["snippet"] and organic[0]["link"].startswith("https://")
    # no engine and no key: still SerpAPI's GET /search
    assert serpapi.Client().search(q="paris")["organic_results"]

    monkeypatch.setattr(serpapi.Client, "BASE_DOMAIN", keyed_url)
    with pytest.raises(serpapi.HTTPError) as info:
        serpapi.Client(api_key="wrong").search(q="paris", engine="google")
    assert info.value.status_code == 401 and "Invalid API key" in info.value.error
    assert serpapi.Client(api_key=KEY).search(q="paris", engine="google")["organic_results"]


# --- LangChain community wrappers -----------------------------------------------------------------------


def test_langchain_searx(base_url: str) -> None:
    pytest.importorskip("langchain_community")
    from langchain_community.utilities import SearxSearchWrapper

    searx = SearxSearchWrapper(searx_host=base_url)
    text = searx.run("capital of france")
    assert "capital of france" in text
    results = searx.results("capital of france", num_results=3)
    assert len(results) == 3
    assert {"snippet", "title", "link", "engines", "category"} <= set(results[0])
    assert asyncio.run(searx.arun("capital of france")).startswith("Useful document 1")


def test_langchain_brave(base_url: str, keyed_url: str) -> None:
    pytest.importorskip("langchain_community")
    from langchain_community.utilities.brave_search import BraveSearchWrapper

    brave = BraveSearchWrapper(api_key="anything", base_url=base_url + "/res/v1/web/search",
                               search_kwargs={"count": 3})
    results = json.loads(brave.run("who wrote hamlet"))
    assert len(results) == 3
    assert {"title", "link", "snippet"} <= set(results[0]) and "hamlet" in results[0]["snippet"]
    documents = brave.download_documents("who wrote hamlet")
    assert documents[0].metadata["link"] == results[0]["link"]
    with pytest.raises(Exception, match="HTTP error 422"):
        BraveSearchWrapper(api_key="wrong", base_url=keyed_url + "/res/v1/web/search").run("paris")


def test_langchain_serper_through_a_host_override(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GoogleSerperAPIWrapper hard-codes https://google.serper.dev; a DNS override / reverse proxy is the fix.
    Rewriting the host in its `requests.post` stands in for one here."""
    pytest.importorskip("langchain_community")
    import requests
    from langchain_community.utilities import google_serper

    real_post = requests.post

    def post(url: str, **kwargs: object) -> requests.Response:
        return real_post(url.replace("https://google.serper.dev", base_url), **kwargs)

    monkeypatch.setattr(google_serper.requests, "post", post)
    serper = google_serper.GoogleSerperAPIWrapper(serper_api_key="anything", k=3)
    results = serper.results("who wrote hamlet")
    assert results["searchParameters"]["q"] == "who wrote hamlet" and len(results["organic"]) == 3
    assert "hamlet" in serper.run("who wrote hamlet")


# --- Google Custom Search --------------------------------------------------------------------------------


def test_google_api_python_client(base_url: str) -> None:
    """google-api-python-client with its bundled (static) discovery document and `api_endpoint` overridden.
    (LangChain's GoogleSearchAPIWrapper builds the service without client_options: its host is fixed.)"""
    discovery = pytest.importorskip("googleapiclient.discovery")
    service = discovery.build("customsearch", "v1", developerKey="anything", static_discovery=True,
                              client_options={"api_endpoint": base_url})
    result = service.cse().list(q="who wrote hamlet", cx="engine-id", num=3, start=1).execute()
    assert result["kind"] == "customsearch#search" and len(result["items"]) == 3
    assert "hamlet" in result["items"][0]["snippet"]
    service.close()


# --- Exa -------------------------------------------------------------------------------------------------


def test_exa_py(base_url: str) -> None:
    exa_py = pytest.importorskip("exa_py")
    exa = exa_py.Exa(api_key="anything", base_url=base_url)
    response = exa.search("who wrote hamlet", num_results=3)
    assert len(response.results) == 3
    assert "hamlet" in response.results[0].text and response.results[0].url.startswith("https://")
    assert len(exa.search("paris", num_results=2, contents=False).results) == 2


# --- MCP -------------------------------------------------------------------------------------------------


def test_mcp_streamable_http(base_url: str) -> None:
    mcp = pytest.importorskip("mcp")

    async def run() -> None:
        async with mcp.Client(base_url + "/mcp") as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"web_search", "search"} <= set(tools)
            assert tools["web_search"].input_schema["required"] == ["query"]
            result = await client.call_tool("web_search", {"query": "who wrote hamlet", "count": 3})
            assert not result.is_error
            payload = json.loads(result.content[0].text)
            assert payload["query"] == "who wrote hamlet" and len(payload["results"]) == 3
            assert {"title", "url", "content"} == set(payload["results"][0])
            batch = await client.call_tool("search", {"query_list": ["paris", "rome"]})
            assert [json.loads(c.text)["query"] for c in batch.content] == ["paris", "rome"]
            bad = await client.call_tool("web_search", {"query": "x", "count": 99})
            assert bad.is_error

    asyncio.run(run())


def test_mcp_sse(base_url: str) -> None:
    pytest.importorskip("mcp")
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    async def run() -> None:
        async with sse_client(base_url + "/mcp/sse") as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("web_search", {"query": "capital of france", "count": 2})
            assert len(json.loads(result.content[0].text)["results"]) == 2

    asyncio.run(run())
