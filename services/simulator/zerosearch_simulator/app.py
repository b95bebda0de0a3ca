"""The FastAPI app factory. The lifespan owns the backend and the cache: built before the first
request, closed after the last (uvicorn finishes in-flight requests before the lifespan ends)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zerosearch_core.models import ModelUnavailableError
from zerosearch_core.schemas import CurriculumState
from zerosearch_simulator.api import native, system
from zerosearch_simulator.api.dialects import dialects_lifespan, include_dialects
from zerosearch_simulator.backends import Backend, Retriever, build_backend, build_retriever
from zerosearch_simulator.cache import Cache, MemoryCache, RedisCache
from zerosearch_simulator.curriculum import CurriculumStore
from zerosearch_simulator.engine import SearchEngine
from zerosearch_simulator.errors import install_error_handlers
from zerosearch_simulator.metrics import Metrics
from zerosearch_simulator.middleware import RequestContextMiddleware
from zerosearch_simulator.ratelimit import RateLimiter, RateLimitMiddleware, parse_rate
from zerosearch_simulator.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def build_cache(settings: Settings, metrics: Metrics) -> Cache:
    hooks = {"on_result": lambda result: metrics.cache_requests.labels(result=result).inc(),
             "on_error": metrics.cache_errors.inc}
    if settings.redis_url:
        return RedisCache(settings.redis_url, ttl_s=settings.cache_ttl_s, lock_ttl_s=settings.lock_ttl_s,
                          wait_timeout_s=settings.timeout_s, **hooks)
    return MemoryCache(ttl_s=settings.cache_ttl_s, max_entries=settings.cache_max_entries, **hooks)


def create_app(settings: Settings | None = None, *, backend: Backend | None = None,
               retriever: Retriever | None = None) -> FastAPI:
    """Build the simulator app. `backend` / `retriever` inject ready-made parts (tests); else ZS_BACKEND picks."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        injected = backend is not None or retriever is not None
        engine_backend = backend if injected else build_backend(settings)
        engine_retriever = retriever if injected else build_retriever(settings)
        parts = [part for part in (engine_retriever, engine_backend) if part is not None]
        logger.info("starting %s", settings.backend if not injected else "+".join(type(p).__name__ for p in parts))
        if engine_backend is not None:
            engine_backend.on_batch = metrics.batch_size.observe
        if engine_retriever is not None:
            engine_retriever.bind_metrics(metrics)
        for part in parts:
            try:
                await part.start()
            except OSError as exc:  # a model neither on disk nor reachable on the hub, an unreadable file
                raise ModelUnavailableError(f"{type(part).__name__} could not start: {exc}") from None
        cache = build_cache(settings, metrics)
        initial = CurriculumState(total_steps=settings.curriculum_total_steps, start=settings.curriculum_start,
                                  end=settings.curriculum_end, base=settings.curriculum_base)
        curriculum = CurriculumStore(initial, redis=getattr(cache, "redis", None), on_error=metrics.cache_errors.inc)
        engine = SearchEngine(settings=settings, backend=engine_backend, retriever=engine_retriever, cache=cache,
                              curriculum=curriculum, metrics=metrics)
        app.state.engine = engine
        if settings.rate_limit:
            app.state.rate_limiter = RateLimiter(parse_rate(settings.rate_limit), redis=getattr(cache, "redis", None),
                                                 on_error=metrics.cache_errors.inc)
            logger.info("rate limit: %s per client (%s)", app.state.rate_limiter.rate,
                        "shared through Redis" if cache.kind == "redis" else "counted in this process")
        logger.info("ready: model=%s cache=%s (%s)", engine.model_id, cache.kind, await cache.status())
        try:
            async with dialects_lifespan(app):
                yield
        finally:
            for part in parts:
                await part.shutdown()
            await cache.close()
            logger.info("stopped")

    app = FastAPI(title="ZeroSearch simulator", version="0.1.0", lifespan=lifespan,
                  description="A simulated search engine for training search agents with RL. "
                              "Native API under /v1; drop-in dialects of common search APIs.")
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(system.router)
    include_dialects(app)
    if settings.rate_limit:  # off by default: no middleware, no cost
        app.add_middleware(RateLimitMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory zerosearch_simulator.app:app_from_env` (settings from ZS_* variables)."""
    return create_app(Settings())
