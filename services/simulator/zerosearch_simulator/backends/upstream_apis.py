"""The wire formats of the real search APIs the upstream backend forwards to: for each, the request its own
client sends and the reading of its answer into hits.

    name        request                                               auth                      results
    serpapi     GET  /search.json?engine=google&q&num                 api_key parameter         organic_results
    tavily      POST /search {query, max_results}                     Authorization: Bearer     results
    brave       GET  /res/v1/web/search?q&count                       X-Subscription-Token      web.results
    serper      POST /search {q, num}                                 X-API-KEY                 organic
    searxng     GET  /search?q&format=json                            (Bearer, when a key is set) results
    google_cse  GET  /customsearch/v1?q&num&cx                        key parameter             items
    exa         POST /search {query, numResults, contents.text}       x-api-key                 results
    retrieve    POST /retrieve {queries: [q], topk, return_scores}    (Bearer, when a key is set) result[0]

An answer that is not the API's shape raises `MalformedAnswer` (the backend answers 502 and caches nothing); an
answer with no results is an empty list. Nothing here holds or logs the key: `Api.request` receives it.
"""

from __future__ import annotations

import hashlib
import html
import re
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from zerosearch_core.protocol import split_contents
from zerosearch_simulator.backends.base import Hit

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

_TAGS = re.compile(r"<[^>]+>")


_M = TypeVar("_M", bound=BaseModel)


class MalformedAnswer(ValueError):
    """A 2xx answer whose body is not the API's shape."""


def clean_text(text: str) -> str:
    """Plain text from a snippet that may carry HTML highlighting (`<strong>`) and entities."""
    return " ".join(html.unescape(_TAGS.sub("", text)).split())


def web_hit(upstream: str, rank: int, *, title: str, url: str, text: str, score: float | None = None) -> Hit:
    """A web result; its id is stable per URL, so a cached and a fresh answer name a page alike."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Hit(id=f"{upstream}-{digest}", title=clean_text(title), url=url, text=clean_text(text),
               score=round(1.0 / rank, 4) if score is None else float(score))


class _Item(BaseModel):
    """One result: unknown fields ignored, wrong types refused."""

    model_config = ConfigDict(extra="ignore")


class Api:
    """One search API. Subclasses fill in `request` and `parse`."""

    name: ClassVar[str]
    default_url: ClassVar[str | None]
    needs_key: ClassVar[bool] = True
    max_k: ClassVar[int] = 20
    #: Where the key goes, for the set-up docs and the error messages.
    key_hint: ClassVar[str] = ""

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        raise NotImplementedError

    def parse(self, body: Any, k: int) -> list[Hit]:
        raise NotImplementedError

    def auth_failed(self, status: int, body: Any) -> bool:
        """Whether an error answer says the key was refused."""
        return status in (401, 403)

    def rate_limited(self, status: int, body: Any) -> bool:
        return status == 429

    def read(self, body: Any, k: int) -> list[Hit]:
        """`parse`, with every shape error as MalformedAnswer."""
        if not isinstance(body, dict | list):
            raise MalformedAnswer(f"a JSON {type(body).__name__}, not an object")
        try:
            return self.parse(body, k)[:k]
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in error.get("loc", ()))
            raise MalformedAnswer(f"{where or 'body'}: {error.get('msg', 'invalid')}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedAnswer(f"unexpected shape ({type(exc).__name__}: {exc})") from None


def _object(body: Any, *required: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedAnswer("not a JSON object")
    missing = [name for name in required if name not in body]
    if missing:
        raise MalformedAnswer(f"no {' or '.join(repr(m) for m in missing)} field")
    return body


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedAnswer(f"'{name}' is a {type(value).__name__}, not a list")
    return value


def _items(model: type[_M], body: dict[str, Any], name: str) -> list[_M]:
    """The results under `name`, each validated; an error names the result (`organic_results[2].title`)."""
    results = []
    for index, item in enumerate(_list(body, name)):
        try:
            results.append(model.model_validate(item))
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            where = "".join(f".{part}" for part in error.get("loc", ()))
            raise MalformedAnswer(f"{name}[{index}]{where}: {error.get('msg', 'invalid')}") from None
    return results


class _Linked(_Item):
    title: str
    link: str
    snippet: str = ""


class SerpApi(Api):
    name = "serpapi"
    default_url = "https://serpapi.com"
    key_hint = "the api_key parameter"
    _NO_RESULTS = "hasn't returned any results"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        params = {"engine": "google", "q": query, "num": str(k), "output": "json", "api_key": key or ""}
        return httpx.Request("GET", f"{base_url}/search.json", params=params)

    def parse(self, body: Any, k: int) -> list[Hit]:
        obj = _object(body)
        if "error" in obj:  # SerpAPI answers an empty search with 200 and an error text
            if self._NO_RESULTS in str(obj["error"]):
                return []
            raise MalformedAnswer(f"an error in a 200 answer: {str(obj['error'])[:200]}")
        _object(obj, "search_metadata")
        items = _items(_Linked, obj, "organic_results")
        return [web_hit(self.name, i, title=r.title, url=r.link, text=r.snippet) for i, r in enumerate(items, 1)]


class _TavilyResult(_Item):
    title: str
    url: str
    content: str = ""
    score: float | None = None


class Tavily(Api):
    name = "tavily"
    default_url = "https://api.tavily.com"
    key_hint = "Authorization: Bearer"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        body = {"query": query, "max_results": k, "search_depth": "basic", "include_answer": False,
                "include_raw_content": False, "include_images": False}
        return httpx.Request("POST", f"{base_url}/search", json=body, headers={"Authorization": f"Bearer {key}"})

    def parse(self, body: Any, k: int) -> list[Hit]:
        items = _items(_TavilyResult, _object(body, "results"), "results")
        return [web_hit(self.name, i, title=r.title, url=r.url, text=r.content, score=r.score)
                for i, r in enumerate(items, 1)]

    def rate_limited(self, status: int, body: Any) -> bool:
        # 432: the plan's monthly credits are spent; 433: the pay-as-you-go limit.
        return status in (429, 432, 433)


class _BraveResult(_Item):
    title: str
    url: str
    description: str = ""


class Brave(Api):
    name = "brave"
    default_url = "https://api.search.brave.com"
    key_hint = "the X-Subscription-Token header"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        params = {"q": query, "count": str(k), "text_decorations": "false"}
        return httpx.Request("GET", f"{base_url}/res/v1/web/search", params=params,
                             headers={"X-Subscription-Token": key or "", "Accept": "application/json"})

    def parse(self, body: Any, k: int) -> list[Hit]:
        obj = _object(body, "type")
        if obj["type"] != "search":
            raise MalformedAnswer(f"type {str(obj['type'])[:40]!r}, not 'search'")
        web = obj.get("web") or {}
        if not isinstance(web, dict):
            raise MalformedAnswer("'web' is not an object")
        items = _items(_BraveResult, web, "results")
        return [web_hit(self.name, i, title=r.title, url=r.url, text=r.description) for i, r in enumerate(items, 1)]

    def auth_failed(self, status: int, body: Any) -> bool:
        # Brave answers a bad token with 422 SUBSCRIPTION_TOKEN_INVALID.
        code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) \
            else None
        return status in (401, 403) or code == "SUBSCRIPTION_TOKEN_INVALID"


class Serper(Api):
    name = "serper"
    default_url = "https://google.serper.dev"
    key_hint = "the X-API-KEY header"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        return httpx.Request("POST", f"{base_url}/search", json={"q": query, "num": k},
                             headers={"X-API-KEY": key or ""})

    def parse(self, body: Any, k: int) -> list[Hit]:
        obj = _object(body, "searchParameters")
        items = _items(_Linked, obj, "organic")
        return [web_hit(self.name, i, title=r.title, url=r.link, text=r.snippet) for i, r in enumerate(items, 1)]


class _SearxResult(_Item):
    title: str
    url: str
    content: str = ""
    score: float | None = None


class SearXNG(Api):
    name = "searxng"
    default_url = None  # every instance is its own
    needs_key = False
    key_hint = "Authorization: Bearer (only when the instance sits behind a proxy that wants one)"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Request("GET", f"{base_url}/search", params={"q": query, "format": "json"}, headers=headers)

    def parse(self, body: Any, k: int) -> list[Hit]:
        items = _items(_SearxResult, _object(body, "results"), "results")
        return [web_hit(self.name, i, title=r.title, url=r.url, text=r.content, score=r.score)
                for i, r in enumerate(items, 1)]


class GoogleCse(Api):
    name = "google_cse"
    default_url = "https://www.googleapis.com"
    max_k = 10  # one request gives at most 10 results; more would be a second paid request
    key_hint = "the key parameter (and ZS_UPSTREAM_CX)"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        params = {"q": query, "num": str(k), "cx": cx or "", "key": key or ""}
        return httpx.Request("GET", f"{base_url}/customsearch/v1", params=params)

    def parse(self, body: Any, k: int) -> list[Hit]:
        obj = _object(body, "kind")
        if obj["kind"] != "customsearch#search":
            raise MalformedAnswer(f"kind {str(obj['kind'])[:40]!r}, not 'customsearch#search'")
        items = _items(_Linked, obj, "items")  # left out when empty
        return [web_hit(self.name, i, title=r.title, url=r.link, text=r.snippet) for i, r in enumerate(items, 1)]

    def auth_failed(self, status: int, body: Any) -> bool:
        # A wrong key is 400 "API key not valid" (reason keyInvalid); a missing one 403.
        error = body.get("error") if isinstance(body, dict) else None
        text = str(error.get("message", "")) if isinstance(error, dict) else ""
        return status in (401, 403) or (status == 400 and "API key not valid" in text)


class _ExaResult(_Item):
    url: str
    title: str | None = None
    text: str | None = None
    highlights: list[str] | None = None
    score: float | None = None


class Exa(Api):
    name = "exa"
    default_url = "https://api.exa.ai"
    key_hint = "the x-api-key header"
    TEXT_CHARS = 1000

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        body = {"query": query, "numResults": k, "contents": {"text": {"maxCharacters": self.TEXT_CHARS}}}
        return httpx.Request("POST", f"{base_url}/search", json=body, headers={"x-api-key": key or ""})

    def parse(self, body: Any, k: int) -> list[Hit]:
        items = _items(_ExaResult, _object(body, "results"), "results")
        return [web_hit(self.name, i, title=r.title or r.url, url=r.url,
                        text=r.text or " ".join(r.highlights or []), score=r.score) for i, r in enumerate(items, 1)]


class _Passage(_Item):
    id: str | int | None = None
    contents: str | None = None
    title: str | None = None
    text: str | None = None


class _Scored(_Item):
    document: _Passage
    score: float = 0.0


class Retrieve(Api):
    """Any Search-R1 / veRL retrieval server (e5, BM25), or a ZeroSearch front's own /retrieve."""

    name = "retrieve"
    default_url = None
    needs_key = False
    key_hint = "Authorization: Bearer (only when the server checks one)"

    def request(self, base_url: str, query: str, k: int, *, key: str | None, cx: str | None) -> httpx.Request:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Request("POST", f"{base_url}/retrieve", json={"queries": [query], "topk": k,
                                                                  "return_scores": True}, headers=headers)

    def parse(self, body: Any, k: int) -> list[Hit]:
        result = _list(_object(body, "result"), "result")
        if len(result) != 1 or not isinstance(result[0], list):
            raise MalformedAnswer(f"'result' holds {len(result)} entries for 1 query, not one list")
        hits = []
        for rank, item in enumerate(result[0], 1):
            # With return_scores each item is {document, score}; servers that ignore it send the document alone.
            scored = _Scored.model_validate(item) if isinstance(item, dict) and "document" in item \
                else _Scored(document=_Passage.model_validate(item), score=round(1.0 / rank, 4))
            doc = scored.document
            if doc.contents is not None:
                title, text = split_contents(doc.contents)
            elif doc.text is not None:
                title, text = doc.title or "", doc.text
            else:
                raise MalformedAnswer(f"result[0][{rank - 1}]: a passage without 'contents' or 'text'")
            passage_id = str(doc.id) if doc.id is not None else f"{rank}"
            hits.append(Hit(id=passage_id, title=clean_text(title), url="", text=" ".join(text.split()),
                            score=scored.score))
        return hits


APIS: dict[str, Api] = {api.name: api for api in (SerpApi(), Tavily(), Brave(), Serper(), SearXNG(), GoogleCse(),
                                                   Exa(), Retrieve())}


def check_settings(settings: Settings) -> None:
    """Refuse, at start-up, an upstream set-up that cannot work (ValueError with what to set)."""
    if settings.upstream is None:
        raise ValueError(f"ZS_BACKEND=upstream needs ZS_UPSTREAM: one of {', '.join(APIS)}")
    api = APIS[settings.upstream]
    if api.needs_key and settings.upstream_key is None:
        raise ValueError(f"ZS_UPSTREAM={api.name} needs an API key (sent as {api.key_hint}): set ZS_UPSTREAM_KEY "
                         "or ZS_UPSTREAM_KEY_FILE")
    if api.name == "google_cse" and not settings.upstream_cx:
        raise ValueError("ZS_UPSTREAM=google_cse needs ZS_UPSTREAM_CX, the Programmable Search Engine id")
    if settings.upstream_url is None and api.default_url is None:
        raise ValueError(f"ZS_UPSTREAM={api.name} has no public address: set ZS_UPSTREAM_URL to your server "
                         "(e.g. http://127.0.0.1:8888)")
    if settings.upstream_url is not None:
        parts = urlsplit(settings.upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is not repeated: it may carry credentials (https://user:password@host).
            raise ValueError("ZS_UPSTREAM_URL must be an http:// or https:// URL with a host")
