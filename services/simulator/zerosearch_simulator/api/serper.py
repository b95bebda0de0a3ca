"""Serper dialect (google.serper.dev): `POST /search` and `GET /search` (routed here by `shared_paths`).

Parameters come from the query string and, for POST, the JSON body over them (LangChain's wrapper POSTs an
empty body with everything in the query string). A JSON list body is Serper's batch form: one response per
item, in order. Auth: `X-API-KEY` header, or an `api_key` / `apiKey` parameter. `num`: default 10, values
above 20 (the simulator's maximum) are clamped, below 1 refused. Errors: `{"message", "statusCode"}`
(400 bad request, 403 key).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from zerosearch_core.schemas import MAX_K
from zerosearch_simulator.api import extensions as ext

DEFAULT_NUM = 10
MAX_ITEMS = 100


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "statusCode": status}, status_code=status)


def _key(request: Request, params: dict[str, Any]) -> str | None:
    for value in (request.headers.get("x-api-key"), params.get("api_key"), params.get("apiKey")):
        if isinstance(value, str) and value:
            return value
    return None


async def search(request: Request, engine: Any, body: Any) -> JSONResponse:
    """Serper's search; `body` is the parsed JSON body (None for GET or an empty POST)."""
    query_params = dict(request.query_params)
    try:
        if isinstance(body, list):
            if not body or len(body) > MAX_ITEMS:
                raise ext.InputError(f"A batch needs 1 to {MAX_ITEMS} queries, got {len(body)}.")
            items = [{**query_params, **ext.require_object(item)} for item in body]
        else:
            items = [{**query_params, **ext.require_object(body)}]
        ext.check_api_key(request, _key(request, items[0]))
        header_ext = ext.from_headers(request.headers)
        plans = [_plan(item, header_ext) for item in items]
    except ext.AuthError:
        return error(403, "Unauthorized.")
    except ext.InputError as exc:
        return error(exc.status, exc.message)
    responses = await ext.search_all(engine, [native for _, native in plans])
    rendered = [_render(params, response) for (params, _), response in zip(plans, responses, strict=True)]
    return JSONResponse(rendered if isinstance(body, list) else rendered[0])


def _plan(item: dict[str, Any], header_ext: ext.Extensions) -> tuple[dict[str, Any], Any]:
    query = ext.query_text(item.get("q"), name="q")
    num = ext.parse_int(item.get("num"), name="num", default=DEFAULT_NUM)
    assert num is not None
    if num < 1:
        raise ext.InputError(f"num must be at least 1, got {num}.", field="num")
    page = ext.parse_int(item.get("page"), name="page", default=1)
    extension = header_ext.merged(ext.from_object(item.get(ext.BODY_KEY))) if ext.BODY_KEY in item else header_ext
    params = {"q": query, "gl": item.get("gl") or "us", "hl": item.get("hl") or "en", "num": num,
              "page": page, "type": "search", "engine": "google"}
    for name in ("tbs", "location", "autocorrect"):
        if item.get(name) is not None:
            params[name] = item[name]
    return params, ext.native_request(query, min(num, MAX_K), extension, query_field="q", k_field="num")


def _render(params: dict[str, Any], response: Any) -> dict[str, Any]:
    offset = (max(params["page"] or 1, 1) - 1) * params["num"]
    organic = [{"title": d.title, "link": d.url, "snippet": d.snippet, "position": offset + i}
               for i, d in enumerate(response.documents, start=1)]
    return {"searchParameters": params, "organic": organic, "peopleAlsoAsk": [], "relatedSearches": [],
            "credits": 1}
