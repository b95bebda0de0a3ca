"""The one place where exceptions become HTTP responses: `{"error": {"code", "message", "field"}}`.

Client mistakes are 4xx with a message saying what to fix; a full queue is 503 with
Retry-After; a generation past its deadline is 504; a real search API behind the front that fails is 502 (429
with its Retry-After when it rate-limits, or when the daily upstream budget is spent; 504 when it times out);
only a genuine bug is a 500.
"""

from __future__ import annotations

import logging
import math
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from zerosearch_core.errors import BackendError, GenerationTimeoutError, QueueFullError, RequestError, UpstreamError

logger = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def field_path(loc: tuple | list, *, located: bool = True) -> str | None:
    """('body', 'requests', 3, 'query') -> 'requests[3].query'. `located`: loc starts with FastAPI's
    location ('body', 'query', ...), which is not part of the field's name."""
    parts = list(loc)[1:] if located and loc and loc[0] in _LOCATIONS else list(loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def describe_validation_error(error: dict, *, located: bool = True) -> tuple[str, str, str | None]:
    """(code, message, field) for one pydantic error, in words a user can act on."""
    field = field_path(error.get("loc", ()), located=located)
    kind = error.get("type", "")
    if kind == "json_invalid":
        return "invalid_json", f"The request body is not valid JSON: {error.get('ctx', {}).get('error', kind)}.", None
    if kind == "missing":
        return "missing_field", f"'{field}' is required.", field
    if kind == "extra_forbidden":
        return "unknown_field", f"'{field}' is not a field of this request; check the spelling (see /docs).", field
    if kind in ("model_attributes_type", "model_type") and field is None:
        return "invalid_body", "The request body must be a JSON object (Content-Type: application/json).", None
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    return "invalid_value", f"'{field}': {message}." if field else f"{message}.", field


M = TypeVar("M", bound=BaseModel)


async def read_json_body(request: Request, model: type[M]) -> M:
    """The request body validated as `model` straight from its bytes; malformed bodies raise the same
    RequestValidationError (and so get the same 4xx) as FastAPI's own body parsing."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "msg": "not JSON"}])
    body = await request.body()
    if not body.strip():
        raise RequestError("The request body is empty: send a JSON object such as {\"query\": \"...\"}.",
                           code="empty_body")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "The request body could not be read: send UTF-8 encoded JSON.") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, field = describe_validation_error(exc.errors()[0])
        return error_response(400 if code == "invalid_json" else 422, code, message, field)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = "The request body could not be read: send UTF-8 encoded JSON."
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), message,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return error_response(503, exc.code, exc.message,
                              headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})

    @app.exception_handler(GenerationTimeoutError)
    async def _timeout(request: Request, exc: GenerationTimeoutError) -> JSONResponse:
        return error_response(504, exc.code, exc.message)

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, exc: UpstreamError) -> JSONResponse:
        headers = None if exc.retry_after_s is None else {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return error_response(exc.status, exc.code, exc.message, headers=headers)

    @app.exception_handler(BackendError)
    async def _backend(request: Request, exc: BackendError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.recoverable else None
        return error_response(503, exc.code, exc.message, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "Internal server error; see the server log.")
