"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs too much on the cache-hit path).

- request id: taken from `X-Request-ID` or made up, echoed back, set in every log line;
- body limit: bodies over ZS_MAX_BODY_BYTES get 413 before they are read whole;
- header limit: more than MAX_HEADER_BYTES of headers get 431 (uvicorn's parser sets no limit; nginx in front
  refuses far less, see deploy/nginx);
- metrics and an access log line per request, labelled by route template (bounded cardinality).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import secrets
import time
from typing import Any

from zerosearch_simulator.metrics import Metrics

logger = logging.getLogger("zerosearch_simulator.access")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Made-up request ids: a random prefix per process and a counter, unique across replicas and cheaper than uuid4.
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)
MAX_HEADER_BYTES = 64 * 1024


class RequestContextMiddleware:
    def __init__(self, app: Any, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # Labelled children by (route, status): `.labels()` costs more than the observation itself.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = declared = None
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
            elif name == b"content-length":
                declared = value
        request_id = request_id or f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        received = 0
        too_large = False

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if too_large:
                # A streamed body went over the limit: whatever the app answered, the answer is 413.
                if message["type"] == "http.response.start":
                    status = 413
                    await _too_large(send, limit, request_id)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        async def limited_receive() -> dict:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        try:
            if header_bytes > MAX_HEADER_BYTES:
                status = 431
                await _refuse(send, 431, "headers_too_large",
                              f"The request headers are larger than {MAX_HEADER_BYTES} bytes.", request_id)
            elif declared is not None and declared.isdigit() and int(declared) > limit:
                status = 413
                await _too_large(send, limit, request_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            children = self._children.get((route, status))
            if children is None:
                children = self._children[(route, status)] = (
                    self.metrics.requests.labels(route=route, status=str(status)),
                    self.metrics.request_duration.labels(route=route))
            children[0].inc()
            children[1].observe(elapsed)
            logger.info("%s %s -> %d in %.1f ms", scope["method"], scope["path"], status, elapsed * 1000)
            request_id_var.reset(token)


async def _too_large(send: Any, limit: int, request_id: str) -> None:
    await _refuse(send, 413, "payload_too_large",
                  f"The request body is larger than {limit} bytes (ZS_MAX_BODY_BYTES).", request_id)


async def _refuse(send: Any, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": body})
