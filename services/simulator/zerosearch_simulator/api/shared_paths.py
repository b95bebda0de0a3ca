"""The paths several search APIs share, and the rule that picks the dialect from the request's own fields.

`POST /search` (first match wins):
  1. a `format` parameter (query string or form body)                    -> SearXNG
  2. a JSON list body                                                    -> Serper (batch)
  3. a JSON object body with `q`                                         -> Serper
  4. a JSON object body with `query` and any Exa-only field (`numResults`, `contents`, `type`,
     `includeDomains`, ... see exa.EXA_FIELDS), or with an `x-api-key` header and no
     `Authorization` header and no body `api_key`                        -> Exa
  5. a JSON object body with `query`                                     -> Tavily
  6. `q` in the query string, or an `X-API-KEY` header (LangChain's Serper wrapper POSTs an empty
     body with everything in the query string)                          -> Serper
  7. anything else                                                       -> Tavily (which answers 400: no query)

`GET /search`:
  1. a `format` parameter                                                -> SearXNG
  2. an `engine` parameter                                               -> SerpAPI
  3. an `X-API-KEY` header, an `apiKey` parameter, or Serper's `page` / `autocorrect` parameters
                                                                         -> Serper
  4. anything else (`api_key`, or a bare `q`)                            -> SerpAPI

`GET /`: `format=json` -> SearXNG; otherwise the playground page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from zerosearch_simulator.api import exa, extensions, searxng, serpapi, serper, system, tavily
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])


def post_dialect(request: Request, body: object, form: dict[str, str] | None) -> str:
    """Which dialect answers a `POST /search` (see the module docstring)."""
    if "format" in request.query_params or (form is not None and "format" in form):
        return "searxng"
    if isinstance(body, list):
        return "serper"
    if isinstance(body, dict):
        if "q" in body:
            return "serper"
        if "query" in body:
            exa_header = ("x-api-key" in request.headers and "authorization" not in request.headers
                          and "api_key" not in body)
            return "exa" if exa_header or not exa.EXA_FIELDS.isdisjoint(body) else "tavily"
    if "q" in request.query_params or "x-api-key" in request.headers:
        return "serper"
    return "tavily"


def get_dialect(request: Request) -> str:
    """Which dialect answers a `GET /search` (see the module docstring)."""
    params = request.query_params
    if "format" in params:
        return "searxng"
    if "engine" in params:
        return "serpapi"
    if "x-api-key" in request.headers or not {"apiKey", "page", "autocorrect"}.isdisjoint(params.keys()):
        return "serper"
    return "serpapi"


_POST_BODY = {"anyOf": [
    {"title": "Tavily", "type": "object", "required": ["query"],
     "properties": {"query": {"type": "string"}, "max_results": {"type": "integer", "default": 5}}},
    {"title": "Serper", "type": "object", "required": ["q"],
     "properties": {"q": {"type": "string"}, "num": {"type": "integer", "default": 10}}},
    {"title": "Serper batch", "type": "array", "items": {"type": "object", "required": ["q"]}},
    {"title": "Exa", "type": "object", "required": ["query"],
     "properties": {"query": {"type": "string"}, "numResults": {"type": "integer", "default": 10}}}]}


@router.post("/search", summary="Tavily, Serper, Exa or SearXNG search (dispatched on the request's fields)",
             description="See docs/dialects.md for the dispatch rule. SearXNG sends a form body "
                         "(`q`, `format=json`); Serper may send an empty body with `q` in the query string.",
             openapi_extra={"requestBody": {"required": False,
                                            "content": {"application/json": {"schema": _POST_BODY}}}})
async def post_search(request: Request, engine: EngineDep) -> Response:
    body, form = await extensions.read_body(request)
    dialect = post_dialect(request, body, form)
    if dialect == "searxng":
        return await searxng.search(request, engine, form)
    if dialect == "serper":
        return await serper.search(request, engine, body)
    if dialect == "exa":
        return await exa.search(request, engine, body)
    return await tavily.search(request, engine, body)


@router.get("/search", summary="SerpAPI, Serper or SearXNG search (dispatched on the request's fields)",
            openapi_extra=extensions.documented_query(q="string", format="string", engine="string", num="integer",
                                                      page="integer", api_key="string", pageno="integer"))
async def get_search(request: Request, engine: EngineDep) -> Response:
    dialect = get_dialect(request)
    if dialect == "searxng":
        return await searxng.search(request, engine)
    if dialect == "serper":
        return await serper.search(request, engine, None)
    return await serpapi.search(request, engine)


@router.get("/", include_in_schema=False)
async def root(request: Request, engine: EngineDep) -> Response:
    """SearXNG's `/?format=json` (LangChain's SearxSearchWrapper requests the host URL itself), else the
    playground page."""
    if (request.query_params.get("format") or "").lower() == "json":
        return await searxng.search(request, engine)
    return system.playground_page()
