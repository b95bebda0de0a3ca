"""Brave Search dialect: `GET|POST /res/v1/web/search`.

Parameters from the query string (and, for POST, a JSON body over them). Auth: `X-Subscription-Token`.
Validation as Brave does it, with 422 and Brave's `ErrorResponse` body: `q` required, at most 400 characters
and 50 words; `count` 1-20 (default 20, Brave's); `offset` 0-9 (a page index; it only offsets the results'
ranks here). A bad key is 422 `SUBSCRIPTION_TOKEN_INVALID`. `extra_snippets=true` adds an empty
`extra_snippets` list to each result (the simulator writes one passage per result).
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zerosearch_simulator.api import extensions as ext
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])

DEFAULT_COUNT = 20
MAX_COUNT = 20
MAX_OFFSET = 9
MAX_QUERY_CHARS = 400
MAX_QUERY_WORDS = 50


def error(code: str, detail: str, *, field: str | None = None, status: int = 422) -> JSONResponse:
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code, "detail": detail}
    if field:
        body["meta"] = {"errors": [{"type": "value_error", "loc": ["query", field], "msg": detail}]}
    return JSONResponse({"type": "ErrorResponse", "error": body, "time": int(time.time())}, status_code=status)


_PARAMS = ext.documented_query(q="string", count="integer", offset="integer", extra_snippets="boolean",
                               country="string")


@router.get("/res/v1/web/search", summary="Brave web search", operation_id="brave_web_search_get",
            openapi_extra=_PARAMS)
@router.post("/res/v1/web/search", summary="Brave web search", operation_id="brave_web_search_post",
             openapi_extra={**_PARAMS, "requestBody": {"required": False, "content": {"application/json": {
                 "schema": {"type": "object", "properties": {"q": {"type": "string"},
                                                             "count": {"type": "integer"}}}}}}})
async def web_search(request: Request, engine: EngineDep) -> JSONResponse:
    """Brave's web search (`q`, `count`, `offset`, ...) -> `{"type": "search", "web": {"results": [...]}}`."""
    body, _ = await ext.read_body(request) if request.method == "POST" else (None, None)
    try:
        params = {**dict(request.query_params), **ext.require_object(body)}
    except ext.InputError as exc:
        return error("VALIDATION", exc.message)
    try:
        ext.check_api_key(request, request.headers.get("x-subscription-token"))
    except ext.AuthError:
        return error("SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid.")
    try:
        query = ext.query_text(params.get("q"), name="q")
        if len(query) > MAX_QUERY_CHARS or len(query.split()) > MAX_QUERY_WORDS:
            raise ext.InputError(f"q must have at most {MAX_QUERY_CHARS} characters and {MAX_QUERY_WORDS} words.",
                                 field="q")
        count = ext.parse_int(params.get("count"), name="count", default=DEFAULT_COUNT)
        offset = ext.parse_int(params.get("offset"), name="offset", default=0)
        assert count is not None and offset is not None
        if not 1 <= count <= MAX_COUNT:
            raise ext.InputError(f"count must be between 1 and {MAX_COUNT}, got {count}.", field="count")
        if not 0 <= offset <= MAX_OFFSET:
            raise ext.InputError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}.", field="offset")
        extra = ext.parse_bool(params.get("extra_snippets", False), name="extra_snippets")
        native = ext.native_request(query, count, ext.read_extensions(request, params), query_field="q",
                                    k_field="count")
    except ext.InputError as exc:
        return error("VALIDATION", exc.message, field=exc.field)
    response = await engine.search(native)
    results = []
    for d in response.documents:
        parts = urlsplit(d.url)
        result: dict[str, Any] = {
            "type": "search_result", "subtype": "generic", "title": d.title, "url": d.url, "description": d.snippet,
            "is_source_local": False, "is_source_both": False, "language": "en", "family_friendly": True,
            "profile": {"name": parts.hostname, "url": d.url, "long_name": parts.hostname, "img": ""},
            "meta_url": {"scheme": parts.scheme, "netloc": parts.netloc, "hostname": parts.hostname,
                         "favicon": "", "path": "  › " + parts.path.strip("/")}}
        if extra:
            result["extra_snippets"] = []
        results.append(result)
    main = [{"type": "web", "index": i, "all": False} for i in range(len(results))]
    return JSONResponse({
        "type": "search",
        "query": {"original": query, "show_strict_warning": False, "is_navigational": False,
                  "spellcheck_off": True, "country": params.get("country", "us"), "bad_results": False,
                  "should_fallback": False, "more_results_available": False, "offset": offset},
        "mixed": {"type": "mixed", "main": main, "top": [], "side": []},
        "web": {"type": "search", "results": results, "family_friendly": True},
    })
