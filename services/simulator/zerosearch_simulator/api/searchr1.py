"""Search-R1 / veRL / SkyRL retriever dialect: `POST /retrieve`, and ZeroSearch's wiki form on the same path.

- batch form `{"queries": [str], "topk": int|null, "return_scores": bool}` -> `{"result": [[DOC | {"document": DOC,
  "score": float}]]}` with `DOC = {"id", "contents": "\\"Title\\"\\nText"}`; `topk` null or absent: 3;
- wiki form `{"query": str, "top_k": int}` (no `queries` key) -> a top-level list `[{"text": str}]`; `top_k`: 5.

Counts below 1 are refused (422), above the simulator's maximum (20) clamped. Errors have FastAPI's shape
`{"detail": [{"type", "loc", "msg", "input"}]}`. The body may carry a `"zerosearch"` object (one for the whole
batch, or a list with one object per query, e.g. each rollout's question and answers).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zerosearch_core.protocol import retriever_contents
from zerosearch_core.schemas import MAX_K
from zerosearch_simulator.api import extensions as ext
from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["dialects"])

DEFAULT_TOPK = 3  # what Search-R1's retrieval server and veRL's search tool use
DEFAULT_WIKI_TOPK = 5  # ZeroSearch's top-k


def _error(exc: ext.InputError) -> JSONResponse:
    if exc.field and exc.field.lower().startswith(ext.HEADER_PREFIX):
        loc: list[str | int] = ["header", exc.field]
    else:
        parts = exc.field.replace("]", "").replace("[", ".").split(".") if exc.field else []
        loc = ["body", *(int(part) if part.isdigit() else part for part in parts)]
    return JSONResponse({"detail": [{"type": "value_error", "loc": loc, "msg": exc.message, "input": None}]},
                        status_code=422)


def _count(value: Any, *, name: str, default: int) -> int:
    k = ext.parse_int(value, name=name, default=default)
    assert k is not None
    if k < 1:
        raise ext.InputError(f"'{name}' must be at least 1, got {k}.", field=name)
    return min(k, MAX_K)


def _document(doc: Any) -> dict[str, str]:
    return {"id": doc.id, "contents": retriever_contents(doc)}


_ZEROSEARCH = {"type": "object", "description": "Optional curriculum extensions: question, answers, noise, step, "
               "seed, mode (see docs/dialects.md)."}
_BODY = {"anyOf": [
    {"title": "Search-R1 batch", "type": "object", "required": ["queries"], "properties": {
        "queries": {"type": "array", "items": {"type": "string"}},
        "topk": {"type": ["integer", "null"], "default": DEFAULT_TOPK},
        "return_scores": {"type": "boolean", "default": False},
        "zerosearch": {"anyOf": [_ZEROSEARCH, {"type": "array", "items": _ZEROSEARCH}]}}},
    {"title": "ZeroSearch wiki", "type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "top_k": {"type": "integer", "default": DEFAULT_WIKI_TOPK},
        "zerosearch": _ZEROSEARCH}}]}


@router.post("/retrieve", summary="Search-R1 / veRL retriever (batch) or ZeroSearch wiki form",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}})
async def retrieve(request: Request, engine: EngineDep) -> JSONResponse:
    """`{"queries": [...], "topk": 3, "return_scores": false}` -> `{"result": [[...], ...]}`;
    `{"query": "...", "top_k": 5}` -> `[{"text": "..."}]`."""
    body, _ = await ext.read_body(request)
    try:
        ext.check_api_key(request, ext.bearer_token(request), required=False)
    except ext.AuthError:
        return JSONResponse({"detail": "Invalid API key: send one of ZS_API_KEYS as 'Authorization: Bearer KEY'."},
                            status_code=401)
    try:
        obj = ext.require_object(body)
        if "query" in obj and "queries" not in obj:
            return await _wiki(request, engine, obj)
        return await _batch(request, engine, obj)
    except ext.InputError as exc:
        return _error(exc)


async def _batch(request: Request, engine: Any, obj: dict[str, Any]) -> JSONResponse:
    queries = obj.get("queries")
    if queries is None:
        raise ext.InputError("'queries' is required: a list of search queries.", field="queries")
    if isinstance(queries, str):
        queries = [queries]
    if not isinstance(queries, list):
        raise ext.InputError("'queries' must be a list of strings.", field="queries")
    topk = _count(obj.get("topk"), name="topk", default=DEFAULT_TOPK)
    return_scores = ext.parse_bool(obj.get("return_scores", False) or False, name="return_scores")
    base = ext.from_headers(request.headers)
    per_query = obj.get(ext.BODY_KEY)
    if isinstance(per_query, list):
        if len(per_query) != len(queries):
            raise ext.InputError(f"'{ext.BODY_KEY}' as a list needs one object per query ({len(queries)}), "
                                 f"got {len(per_query)}.", field=ext.BODY_KEY)
        overrides = [ext.from_object(o, where=f"{ext.BODY_KEY}[{i}]") for i, o in enumerate(per_query)]
    else:
        overrides = [ext.from_object(per_query)] * len(queries)
    requests = [ext.native_request(ext.query_text(q, name=f"queries[{i}]"), topk, base.merged(over),
                                   query_field=f"queries[{i}]", k_field="topk")
                for i, (q, over) in enumerate(zip(queries, overrides, strict=True))]
    responses = await ext.search_all(engine, requests)
    if return_scores:
        result = [[{"document": _document(d), "score": _score(i)} for i, d in enumerate(r.documents)]
                  for r in responses]
    else:
        result = [[_document(d) for d in r.documents] for r in responses]
    return JSONResponse({"result": result})


def _score(rank: int) -> float:
    """A retrieval-like score that falls with the rank (the simulator has no real similarity)."""
    return round(1.0 - 0.05 * rank, 4)


async def _wiki(request: Request, engine: Any, obj: dict[str, Any]) -> JSONResponse:
    query = ext.query_text(obj.get("query"), name="query")
    k = _count(obj.get("top_k"), name="top_k", default=DEFAULT_WIKI_TOPK)
    response = await engine.search(ext.native_request(query, k, ext.read_extensions(request, obj), k_field="top_k"))
    return JSONResponse([{"text": d.snippet} for d in response.documents])
