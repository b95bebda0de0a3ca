"""Liveness, readiness, metrics and the playground page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zerosearch_simulator.api.deps import EngineDep

router = APIRouter(tags=["system"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(engine: EngineDep) -> JSONResponse:
    """Ready to serve: the model is loaded; the cache is reachable ('ready') or not ('degraded': answering
    uncached). 503 only when the backend cannot generate."""
    backend_ok = await engine.check_health()
    cache = await engine.cache.status()
    status = "unavailable" if not backend_ok else ("ready" if cache == "ok" else "degraded")
    body = {"status": status, "backend": "ok" if backend_ok else "unavailable", "model": engine.model_id,
            "cache": engine.cache.kind, "cache_status": cache, "queue_depth": engine.pending}
    return JSONResponse(body, status_code=200 if backend_ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def playground_page() -> HTMLResponse:
    """The playground: a query box, a noise slider and the documents with their labels."""
    return HTMLResponse(resources.files("zerosearch_simulator").joinpath("static/index.html").read_text("utf-8"))


# `GET /` is shared with SearXNG's `/?format=json`; the dialects module decides who answers it.
playground_router = APIRouter(include_in_schema=False)
playground_router.add_api_route("/", playground_page, methods=["GET"])
