"""Exa dialect: `POST /search` with Exa's fields (routed here by `shared_paths`).

Auth: `x-api-key` header (or `Authorization: Bearer`). `query` required; `numResults` default 10, values above
20 (the simulator's maximum) are clamped, below 1 refused. Every result carries `text` (the generated passage)
and one highlight, whatever `contents` asks for. Errors: `{"requestId", "error", "tag"}` with 400 (bad
request) or 401 (key).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from zerosearch_core.schemas import MAX_K
from zerosearch_simulator.api import extensions as ext

DEFAULT_NUM_RESULTS = 10
# Body fields that only Exa sends (Tavily's and Serper's bodies have none of them).
EXA_FIELDS = frozenset({"numResults", "contents", "useAutoprompt", "includeDomains", "excludeDomains",
                        "startPublishedDate", "endPublishedDate", "startCrawlDate", "endCrawlDate", "includeText",
                        "excludeText", "category", "type", "userLocation", "moderation", "additionalQueries"})


def error(status: int, message: str, tag: str) -> JSONResponse:
    return JSONResponse({"requestId": uuid.uuid4().hex, "error": message, "tag": tag}, status_code=status)


async def search(request: Request, engine: Any, body: Any) -> JSONResponse:
    started = time.perf_counter()
    try:
        obj = ext.require_object(body)
        ext.check_api_key(request, request.headers.get("x-api-key") or ext.bearer_token(request))
        query = ext.query_text(obj.get("query"), name="query")
        k = ext.parse_int(obj.get("numResults"), name="numResults", default=DEFAULT_NUM_RESULTS)
        assert k is not None
        if k < 1:
            raise ext.InputError(f"numResults must be at least 1, got {k}.", field="numResults")
        native = ext.native_request(query, min(k, MAX_K), ext.read_extensions(request, obj), k_field="numResults")
    except ext.AuthError as exc:
        return error(401, "Missing API key: send it in the x-api-key header." if exc.missing
                     else "Invalid API key.", "INVALID_API_KEY")
    except ext.InputError as exc:
        return error(exc.status, exc.message, "INVALID_REQUEST_BODY")
    response = await engine.search(native)
    results = [{"id": d.url, "url": d.url, "title": d.title, "score": round(0.9 - 0.03 * i, 4), "publishedDate": None,
                "author": None, "text": d.snippet, "highlights": [d.snippet], "highlightScores": [1.0]}
               for i, d in enumerate(response.documents)]
    search_type = obj.get("type") if obj.get("type") in ("neural", "keyword", "fast", "deep") else "neural"
    return JSONResponse({"requestId": uuid.uuid4().hex, "resolvedSearchType": search_type, "results": results,
                         "searchTime": round((time.perf_counter() - started) * 1000, 3),
                         "costDollars": {"total": 0.0}})
