"""The native API: /v1/search, /v1/search/batch, /v1/curriculum."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from zerosearch_core.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    CurriculumResponse,
    CurriculumState,
    ErrorBody,
    ErrorDetail,
    SearchRequest,
    SearchResponse,
)
from zerosearch_simulator.api.deps import EngineDep
from zerosearch_simulator.curriculum import describe
from zerosearch_simulator.errors import describe_validation_error, read_json_body

router = APIRouter(prefix="/v1", tags=["native"])

_ERRORS = {422: {"model": ErrorBody, "description": "Malformed request"},
           503: {"model": ErrorBody, "description": "Queue full (Retry-After) or backend unavailable"},
           504: {"model": ErrorBody, "description": "Generation timed out"}}


# The hot path of the service (most training searches are cache hits): the body is validated from its raw bytes
# in one pass and the answer is serialised straight from the cached value, instead of FastAPI's parse-then-validate
# and six models built and serialised per hit. The schema is declared by hand so /docs still shows it.
@router.post("/search", response_model=SearchResponse, responses=_ERRORS, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": SearchRequest.model_json_schema()}}}})
async def search(request: Request) -> Response:
    """Simulated search results for one query."""
    search_request = await read_json_body(request, SearchRequest)
    engine = request.app.state.engine  # not a dependency: resolving one costs a third of a cache hit
    return Response(await engine.search_json(search_request), media_type="application/json")


@router.post("/search/batch", response_model=BatchSearchResponse, responses=_ERRORS)
async def search_batch(batch: BatchSearchRequest, engine: EngineDep) -> BatchSearchResponse:
    """Many searches in one call, run concurrently; results keep the order of `requests`, and a bad or
    failed item becomes an error item without failing the others."""

    results: list[SearchResponse | ErrorBody | None] = [None] * len(batch.requests)
    valid: dict[int, SearchRequest] = {}
    for index, raw in enumerate(batch.requests):
        try:
            valid[index] = SearchRequest.model_validate(raw)
        except ValidationError as exc:
            code, message, field = describe_validation_error(exc.errors()[0], located=False)
            results[index] = ErrorBody(error=ErrorDetail(
                code=code, message=message, field=f"requests[{index}].{field}" if field else f"requests[{index}]"))
    searched = await engine.search_many(list(valid.values()))
    for index, outcome in zip(valid, searched, strict=True):
        results[index] = outcome if isinstance(outcome, SearchResponse) else ErrorBody(
            error=ErrorDetail(code=getattr(outcome, "code", "search_failed"), message=str(outcome)))
    return BatchSearchResponse(results=results)


@router.get("/curriculum", response_model=CurriculumResponse)
async def get_curriculum(engine: EngineDep) -> CurriculumResponse:
    """The server's noise schedule and the noise level it gives now."""
    return describe(await engine.curriculum.get())


@router.put("/curriculum", response_model=CurriculumResponse, responses=_ERRORS)
async def put_curriculum(state: CurriculumState, engine: EngineDep) -> CurriculumResponse:
    """Set the schedule (every replica sharing the Redis sees it). Searches without `noise` or `step` use it."""
    return describe(await engine.curriculum.set(state))
