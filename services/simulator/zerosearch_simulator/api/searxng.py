"""SearXNG dialect: `GET|POST /search?format=json` and `GET /?format=json` (routed here by `shared_paths`).

Parameters come from the query string and, for POST, a form body (`q`, `format`, `pageno`, `language`, ...).
SearXNG has no count parameter: a page holds 10 results (`pageno` only offsets the positions). Only
`format=json` is offered. No auth of its own: with ZS_API_KEYS set, an `Authorization: Bearer` key is checked
when sent. Errors: `{"error": "..."}` (400 no query or bad format, 401 wrong key).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse

from zerosearch_simulator.api import extensions as ext

PAGE_SIZE = 10
ENGINE = "zerosearch"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def search(request: Request, engine: Any, form: dict[str, str] | None = None) -> JSONResponse:
    params = {**dict(request.query_params), **(form or {})}
    try:
        ext.check_api_key(request, ext.bearer_token(request), required=False)
    except ext.AuthError:
        return error(401, "Invalid API key: send one of ZS_API_KEYS as 'Authorization: Bearer KEY', or none.")
    try:
        if (params.get("format") or "json").strip().lower() != "json":
            raise ext.InputError(f"format={params['format']!r} is not offered: the simulator answers format=json.",
                                 field="format")
        if not (params.get("q") or "").strip():
            raise ext.InputError("No query", field="q")
        query = params["q"]
        pageno = ext.parse_int(params.get("pageno"), name="pageno", default=1)
        assert pageno is not None
        native = ext.native_request(query, PAGE_SIZE, ext.read_extensions(request), query_field="q")
    except ext.InputError as exc:
        return error(exc.status, exc.message)
    response = await engine.search(native)
    offset = (max(pageno, 1) - 1) * PAGE_SIZE
    results = []
    for i, d in enumerate(response.documents, start=1):
        parts = urlsplit(d.url)
        results.append({"url": d.url, "title": d.title, "content": d.snippet, "engine": ENGINE, "engines": [ENGINE],
                        "category": "general", "score": round(1.0 / i, 4), "positions": [offset + i],
                        "parsed_url": [parts.scheme, parts.netloc, parts.path, "", parts.query, parts.fragment],
                        "template": "default.html", "publishedDate": None, "thumbnail": None})
    return JSONResponse({"query": query, "number_of_results": len(results), "results": results, "answers": [],
                         "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []})
