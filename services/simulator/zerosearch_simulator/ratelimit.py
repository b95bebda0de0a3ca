"""Rate limits (`ZS_RATE_LIMIT`, e.g. `60/minute`; off when unset), per API key or per client address.

Who is counted: with `ZS_API_KEYS` set, the key a request carries (in any header or query parameter a dialect
reads it from: `Authorization: Bearer`, `X-API-KEY`, `X-Subscription-Token`, `api_key`, `serp_api_key`, `key`,
`apiKey`), when it is one of the configured keys; otherwise the client address (behind a proxy, the address
uvicorn takes from `X-Forwarded-For` of a trusted proxy, see docs/reliability.md). A key sent in the body only
(older Tavily clients) is counted by address.

How: a fixed window per identity that opens at its first request and lasts the rate's period. With Redis the
count is one `INCR` (a Lua script, one round trip) shared by every replica; without Redis, or while Redis
fails, a count in this process. A request over the limit gets 429 with `Retry-After` (seconds until the window
closes) in the shape of the API it called, as the paid APIs answer theirs, and counts in
`zerosearch_rate_limited_total`. Liveness, readiness, metrics and the docs are never limited.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

from cachetools import TTLCache
from fastapi.responses import JSONResponse
from starlette.requests import Request

from zerosearch_simulator.settings import Rate, parse_rate  # noqa: F401  (parse_rate: part of this module's API)

logger = logging.getLogger(__name__)

KEY_PREFIX = "zerosearch:v2:rate:"
# Paths that are never limited: probes, metrics and the docs must answer an overloaded or abusive client too.
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
_KEY_HEADERS = (b"x-api-key", b"x-subscription-token")
_KEY_PARAMS = ("api_key", "serp_api_key", "key", "apiKey")
# After a Redis failure, count in this process for this long before trying Redis again.
RETRY_REDIS_AFTER_S = 1.0


_INCR = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return {n, redis.call('pttl', KEYS[1])}
"""


class RateLimiter:
    """Counts requests per identity in fixed windows; Redis when given (shared), else this process."""

    def __init__(self, rate: Rate, *, redis: Any = None, on_error: Any = None) -> None:
        self.rate = rate
        self.redis = redis
        self._on_error = on_error or (lambda: None)
        self._local: TTLCache[str, list[float]] = TTLCache(maxsize=100_000, ttl=rate.period_s)
        self._down_until = 0.0

    async def hit(self, identity: str) -> float | None:
        """Count one request; None when allowed, else the seconds until the identity may send again."""
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]  # no raw keys in Redis key names
        if self.redis is not None and time.monotonic() >= self._down_until:
            try:
                count, ttl_ms = await self.redis.eval(_INCR, 1, KEY_PREFIX + digest, self.rate.period_s * 1000)
            except Exception as exc:  # redis errors, timeouts: count here until Redis answers again
                self._on_error()
                logger.warning("rate limit: redis failed (%s: %s); counting in this process for %.0f s",
                               type(exc).__name__, exc, RETRY_REDIS_AFTER_S)
                self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            else:
                if int(count) <= self.rate.count:
                    return None
                return max(int(ttl_ms), 0) / 1000 if int(ttl_ms) >= 0 else float(self.rate.period_s)
        now = time.monotonic()
        window = self._local.get(digest)
        if window is None or window[1] <= now:
            window = self._local[digest] = [0, now + self.rate.period_s]
        window[0] += 1
        return None if window[0] <= self.rate.count else window[1] - now


def identity(scope: dict, api_keys: frozenset[str]) -> str:
    """The key of a configured API key the request carries, else its client address."""
    if api_keys:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip() in api_keys:
                    return "key:" + token.strip()
            elif name in _KEY_HEADERS and value.decode("latin-1") in api_keys:
                return "key:" + value.decode("latin-1")
        if scope.get("query_string"):
            params = Request(scope).query_params
            for name in _KEY_PARAMS:
                if params.get(name) in api_keys:
                    return "key:" + params[name]
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    """Pure ASGI: one counter call per request; the 429 body is built only for a refused request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None) if "app" in scope else None
        if scope["type"] != "http" or limiter is None or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        wait_s = await limiter.hit(identity(scope, settings.api_key_set))
        if wait_s is None:
            await self.app(scope, receive, send)
            return
        scope["app"].state.metrics.rate_limited.inc()
        request = Request(scope, receive)
        response = await limited_response(request, limiter.rate, wait_s)
        await response(scope, receive, send)


async def limited_response(request: Request, rate: Rate, wait_s: float) -> JSONResponse:
    """429 in the shape of the API the request called, with Retry-After."""
    from zerosearch_simulator.api import brave, exa, extensions, google, searxng, serpapi, serper, shared_paths, tavily
    from zerosearch_simulator.errors import error_response

    retry_after = str(max(1, math.ceil(wait_s)))
    message = (f"Rate limit exceeded: {rate.count} requests per {rate.period_s} s (ZS_RATE_LIMIT); "
               f"retry after {retry_after} s.")
    path, method = request.url.path, request.method
    dialect = "native"
    if path == "/search" and method == "POST":
        body, form = await extensions.read_body(request)
        dialect = shared_paths.post_dialect(request, body, form)
    elif path == "/search":
        dialect = shared_paths.get_dialect(request)
    elif path == "/" and (request.query_params.get("format") or "").lower() == "json":
        dialect = "searxng"
    else:
        dialect = {"/search.json": "serpapi", "/extract": "tavily", "/res/v1/web/search": "brave",
                   "/customsearch/v1": "google", "/retrieve": "searchr1"}.get(path, "native")
    if dialect == "tavily":
        response = tavily.error(429, message)
    elif dialect in ("serpapi", "searxng"):
        response = (serpapi if dialect == "serpapi" else searxng).error(429, message)
    elif dialect == "serper":
        response = serper.error(429, message)
    elif dialect == "brave":
        response = brave.error("RATE_LIMITED", message, status=429)
    elif dialect == "google":
        response = google.error(429, message, reason="rateLimitExceeded", state="RESOURCE_EXHAUSTED")
    elif dialect == "exa":
        response = exa.error(429, message, "RATE_LIMIT_EXCEEDED")
    elif dialect == "searchr1":
        response = JSONResponse({"detail": message}, status_code=429)
    else:
        response = error_response(429, "rate_limited", message)
    response.headers["Retry-After"] = retry_after
    return response
