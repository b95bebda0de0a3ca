"""Tavily dialect: `POST /search` (a JSON body with `query`; routed here by `shared_paths`) and `POST /extract`.

Auth: `Authorization: Bearer KEY` or `"api_key"` in the body (older LangChain). `max_results`: 0-20, default 5;
outside that range the request is refused (400), as Tavily does; 0 gives an empty result list without a
search. Errors: `{"detail": {"error": "..."}}` with 400 (bad request) or 401 (key).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zerosearch_core.schemas import MAX_QUERY_CHARS
from zerosearch_simulator.api import extensions as ext
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])

DEFAULT_MAX_RESULTS = 5
MAX_RESULTS = 20
MAX_EXTRACT_URLS = 20
EXTRACT_DOCS = 3  # simulated page text: this many generated passages
_DIGEST = re.compile(r"-[0-9a-f]{8}$")
_WORDS = re.compile(r"[^A-Za-z0-9]+")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"error": message}}, status_code=status)


def _auth(request: Request, obj: dict[str, Any]) -> None:
    key = ext.bearer_token(request) or (obj.get("api_key") if isinstance(obj.get("api_key"), str) else None)
    ext.check_api_key(request, key)


def _auth_error(exc: ext.AuthError) -> JSONResponse:
    return error(401, "Unauthorized: missing or invalid API key." if exc.missing
                 else "Unauthorized: invalid API key. Use one of the simulator's ZS_API_KEYS.")


async def search(request: Request, engine: Any, body: Any) -> JSONResponse:
    """Tavily's search; `body` is the parsed JSON body (see shared_paths)."""
    started = time.perf_counter()
    try:
        obj = ext.require_object(body)
        _auth(request, obj)
        query = ext.query_text(obj.get("query"), name="query")
        k = ext.parse_int(obj.get("max_results"), name="max_results", default=DEFAULT_MAX_RESULTS)
        assert k is not None
        if not 0 <= k <= MAX_RESULTS:
            raise ext.InputError(f"max_results must be between 0 and {MAX_RESULTS}, got {k}.", field="max_results")
        raw_content = obj.get("include_raw_content", False)
        raw = bool(raw_content) if not isinstance(raw_content, str) else raw_content.lower() not in ("", "false")
        native = ext.native_request(query, max(k, 1), ext.read_extensions(request, obj), k_field="max_results")
    except ext.AuthError as exc:
        return _auth_error(exc)
    except ext.InputError as exc:
        return error(exc.status, exc.message)
    documents = (await engine.search(native)).documents if k else []
    results = [{"title": d.title, "url": d.url, "content": d.snippet, "score": round(0.99 - 0.04 * i, 4),
                "raw_content": d.snippet if raw else None} for i, d in enumerate(documents)]
    body_out: dict[str, Any] = {"query": query, "follow_up_questions": None, "answer": None, "images": [],
                                "results": results, "response_time": round(time.perf_counter() - started, 3),
                                "request_id": str(uuid.uuid4())}
    if obj.get("include_usage") in (True, "true", "True"):
        body_out["usage"] = {"credits": 1}
    return JSONResponse(body_out)


def _page_query(url: str) -> str:
    """Words of a URL (host and path, without the simulator's digest) as the query for its page text."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = host.rsplit(".", 1)[0] if "." in host else host
    path = _DIGEST.sub("", parts.path.rstrip("/"))
    words = " ".join(w for w in _WORDS.split(f"{host} {path}") if w and w.lower() not in ("www", "html", "htm"))
    return (words or url)[:MAX_QUERY_CHARS]


_EXTRACT_BODY = {"type": "object", "required": ["urls"], "properties": {
    "urls": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}


@router.post("/extract", summary="Tavily extract (simulated page text)", openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": _EXTRACT_BODY}}}})
async def extract(request: Request, engine: EngineDep) -> JSONResponse:
    """`{"urls": str | [str]}` -> `{"results": [{"url", "raw_content"}], "failed_results": [...]}`; the text is
    generated from the words of each URL."""
    started = time.perf_counter()
    body, _ = await ext.read_body(request)
    try:
        obj = ext.require_object(body)
        _auth(request, obj)
        urls = obj.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not urls or not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ext.InputError("'urls' is required: a URL or a list of URLs.", field="urls")
        if len(urls) > MAX_EXTRACT_URLS:
            raise ext.InputError(f"At most {MAX_EXTRACT_URLS} URLs per request, got {len(urls)}.", field="urls")
        extension = ext.read_extensions(request, obj)
        good = [u for u in urls if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc]
        natives = [ext.native_request(_page_query(u), EXTRACT_DOCS, extension) for u in good]
    except ext.AuthError as exc:
        return _auth_error(exc)
    except ext.InputError as exc:
        return error(exc.status, exc.message)
    pages = await ext.search_all(engine, natives)
    results = [{"url": u, "raw_content": "\n\n".join(d.snippet for d in page.documents), "images": []}
               for u, page in zip(good, pages, strict=True)]
    failed = [{"url": u, "error": "Not a valid http(s) URL."} for u in urls if u not in good]
    return JSONResponse({"results": results, "failed_results": failed,
                         "response_time": round(time.perf_counter() - started, 3), "request_id": str(uuid.uuid4())})
