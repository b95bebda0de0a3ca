"""SerpAPI dialect: `GET /search.json`, and `GET /search` when `shared_paths` says it is SerpAPI's.

Auth: the `api_key` query parameter (`serp_api_key`, which google-search-results may send, also counts).
`q` is required (400 `{"error": "Missing query `q` parameter."}`); `num` defaults to 10, values above 20 (the
simulator's maximum) are clamped, below 1 refused; `start` offsets the positions only. `output=html` gives a
small HTML page of the results, anything else JSON. A successful body never has an `"error"` key (LangChain
raises on one). Bad key: 401 `{"error": "Invalid API key. ..."}`.
"""

from __future__ import annotations

import html
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from zerosearch_core.schemas import MAX_K
from zerosearch_simulator.api import extensions as ext
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])

DEFAULT_NUM = 10
_ECHOED = ("location", "google_domain", "gl", "hl", "device", "start", "safe", "lr", "tbs", "no_cache")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@router.get("/search.json", summary="SerpAPI search", openapi_extra=ext.documented_query(
    q="string", num="integer", start="integer", api_key="string", engine="string", output="string"))
async def search_json(request: Request, engine: EngineDep) -> Response:
    """SerpAPI's Google search (`q`, `num`, `start`, `api_key`, ...) -> `organic_results`."""
    return await search(request, engine)


async def search(request: Request, engine: Any, body: Any = None) -> Response:
    started = time.perf_counter()
    params = request.query_params
    try:
        ext.check_api_key(request, params.get("api_key") or params.get("serp_api_key"))
    except ext.AuthError:
        return error(401, "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key "
                          "(for the simulator: one of its ZS_API_KEYS).")
    try:
        if not (params.get("q") or "").strip():
            raise ext.InputError("Missing query `q` parameter.", field="q")
        query = params["q"]
        num = ext.parse_int(params.get("num"), name="num", default=DEFAULT_NUM)
        start = ext.parse_int(params.get("start"), name="start", default=0)
        assert num is not None and start is not None
        if num < 1:
            raise ext.InputError(f"`num` must be at least 1, got {num}.", field="num")
        native = ext.native_request(query, min(num, MAX_K), ext.read_extensions(request), query_field="q",
                                    k_field="num")
    except ext.InputError as exc:
        return error(exc.status, exc.message)
    response = await engine.search(native)
    engine_name = params.get("engine") or "google"
    organic = []
    for i, d in enumerate(response.documents, start=1):
        host = d.url.split("//", 1)[-1].split("/", 1)[0]
        organic.append({"position": start + i, "title": d.title, "link": d.url, "redirect_link": d.url,
                        "displayed_link": d.url.split("//", 1)[-1].replace("/", " › ", 1), "snippet": d.snippet,
                        "source": host})
    if (params.get("output") or "").lower() == "html":
        items = "".join(f'<li><a href="{html.escape(o["link"])}">{html.escape(o["title"])}</a>'
                        f"<p>{html.escape(o['snippet'])}</p></li>" for o in organic)
        return HTMLResponse(f"<!doctype html><title>{html.escape(query)}</title><ol>{items}</ol>")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    elapsed = round(time.perf_counter() - started, 2)
    search_id = uuid.uuid4().hex[:24]
    base = str(request.base_url).rstrip("/")
    search_parameters: dict[str, Any] = {"engine": engine_name, "q": query}
    search_parameters.update({name: params[name] for name in _ECHOED if params.get(name) is not None})
    if params.get("num") is not None:
        search_parameters["num"] = params["num"]
    return JSONResponse({
        "search_metadata": {"id": search_id, "status": "Success", "json_endpoint": f"{base}/searches/{search_id}.json",
                            "created_at": now, "processed_at": now, "total_time_taken": elapsed},
        "search_parameters": search_parameters,
        "search_information": {"organic_results_state": "Results for exact spelling", "query_displayed": query,
                               "total_results": len(organic), "time_taken_displayed": elapsed},
        "organic_results": organic,
    })
