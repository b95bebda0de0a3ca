"""Google Custom Search JSON API dialect: `GET /customsearch/v1`.

Auth: the `key` parameter (`cx`, the engine id, is accepted and echoed, not required). `q` required; `num` 1-10
(default 10) and `start` 1-based with `start + num <= 101`, refused otherwise (400), as Google does; `start`
only offsets the ranks. `items` is left out when there are no results. Errors have Google's shape
`{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`: 400 INVALID_ARGUMENT
for bad parameters or an unknown key, 403 PERMISSION_DENIED for a missing key.
"""

from __future__ import annotations

import html
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zerosearch_simulator.api import extensions as ext
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])

DEFAULT_NUM = 10
MAX_NUM = 10
MAX_RESULTS = 100


def error(status: int, message: str, *, reason: str = "badRequest",
          state: str = "INVALID_ARGUMENT") -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message,
                                   "errors": [{"message": message, "domain": "global", "reason": reason}],
                                   "status": state}}, status_code=status)


@router.get("/customsearch/v1", summary="Google Custom Search JSON API", openapi_extra=ext.documented_query(
    q="string", num="integer", start="integer", key="string", cx="string"))
async def custom_search(request: Request, engine: EngineDep) -> JSONResponse:
    """Google's Custom Search (`q`, `num`, `start`, `key`, `cx`) -> `{"kind": "customsearch#search", "items"}`."""
    started = time.perf_counter()
    params = request.query_params
    try:
        ext.check_api_key(request, params.get("key"))
    except ext.AuthError as exc:
        if exc.missing:
            return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                              "Please use API Key or other form of API consumer identity to call this API.",
                         reason="forbidden", state="PERMISSION_DENIED")
        return error(400, "API key not valid. Please pass a valid API key.")
    try:
        query = ext.query_text(params.get("q"), name="q")
        num = ext.parse_int(params.get("num"), name="num", default=DEFAULT_NUM)
        start = ext.parse_int(params.get("start"), name="start", default=1)
        assert num is not None and start is not None
        if not 1 <= num <= MAX_NUM:
            raise ext.InputError(f"Invalid value '{num}' for num: it must be between 1 and {MAX_NUM}.", field="num")
        if start < 1 or start + num > MAX_RESULTS + 1:
            raise ext.InputError(f"Invalid value '{start}' for start: start + num must not exceed {MAX_RESULTS + 1}.",
                                 field="start")
        native = ext.native_request(query, num, ext.read_extensions(request), query_field="q", k_field="num")
    except ext.InputError as exc:
        return error(400, exc.message)
    response = await engine.search(native)
    items = []
    for d in response.documents:
        host = d.url.split("//", 1)[-1].split("/", 1)[0]
        items.append({"kind": "customsearch#result", "title": d.title, "htmlTitle": html.escape(d.title),
                      "link": d.url, "displayLink": host, "snippet": d.snippet, "htmlSnippet": html.escape(d.snippet),
                      "formattedUrl": d.url, "htmlFormattedUrl": html.escape(d.url)})
    total = str(len(items))
    request_info = {"title": f"Google Custom Search - {query}", "totalResults": total, "searchTerms": query,
                    "count": len(items), "startIndex": start, "inputEncoding": "utf8", "outputEncoding": "utf8",
                    "safe": params.get("safe", "off"), "cx": params.get("cx", "")}
    elapsed = time.perf_counter() - started
    body: dict[str, Any] = {
        "kind": "customsearch#search",
        "url": {"type": "application/json",
                "template": "https://www.googleapis.com/customsearch/v1?q={searchTerms}&num={count?}&"
                            "start={startIndex?}&cx={cx?}&key={key?}&alt=json"},
        "queries": {"request": [request_info]},
        "context": {"title": "ZeroSearch simulator"},
        "searchInformation": {"searchTime": round(elapsed, 6), "formattedSearchTime": f"{elapsed:.2f}",
                              "totalResults": total, "formattedTotalResults": total},
    }
    if items:
        body["items"] = items
    return JSONResponse(body)
