"""What every dialect shares: the ZeroSearch curriculum extensions, the API-key check and request parsing.

Curriculum extensions (optional; without them the server's curriculum applies):

    header                 body (`"zerosearch": {...}`)   native field
    X-ZeroSearch-Question  question                       question (str)
    X-ZeroSearch-Answers   answers                        answers (JSON list, or comma-separated in the header)
    X-ZeroSearch-Noise     noise                          noise (0..1)
    X-ZeroSearch-Step      step                           step (int >= 0)
    X-ZeroSearch-Seed      seed                           seed (int >= 0)
    X-ZeroSearch-Mode      mode                           mode ("sft" | "prompt")

A field in the body object overrides the same header. A bad value raises `InputError` naming the
header or field; each dialect renders it in its own error shape.

API keys: with `ZS_API_KEYS` set, each dialect passes its own credential to `check_api_key`; without it,
any key or none is accepted.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pydantic_core
from fastapi import Request
from pydantic import ValidationError

from zerosearch_core.schemas import MAX_SEED, MAX_STEP, SearchRequest, SearchResponse

HEADER_PREFIX = "x-zerosearch-"
BODY_KEY = "zerosearch"
FIELDS = ("question", "answers", "noise", "step", "seed", "mode")
MODES = ("sft", "prompt")
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n", ""})


class InputError(Exception):
    """The client sent something this dialect cannot use. `field` is the name the client used."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class AuthError(Exception):
    """A missing or unknown API key while `ZS_API_KEYS` is set. `missing`: no key was sent at all."""

    def __init__(self, *, missing: bool) -> None:
        super().__init__("missing API key" if missing else "invalid API key")
        self.missing = missing


# --- API keys -----------------------------------------------------------------------------------------


def check_api_key(request: Request, supplied: str | None, *, required: bool = True) -> None:
    """Raise AuthError unless `supplied` is one of ZS_API_KEYS (or no keys are configured).
    `required=False` (dialects without a credential of their own): no key is fine, a wrong one is not."""
    keys = request.app.state.settings.api_key_set
    if not keys:
        return
    if not supplied:
        if required:
            raise AuthError(missing=True)
        return
    given = supplied.encode("utf-8")
    if not any(hmac.compare_digest(given, key.encode("utf-8")) for key in keys):  # constant time per key
        raise AuthError(missing=False)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, else None."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# --- request parsing --------------------------------------------------------------------------------


class InvalidBody:
    """Stands for a body that could not be parsed, so that the dialect answers in its own error shape."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


async def read_body(request: Request) -> tuple[Any, dict[str, str] | None]:
    """(json_body, form): json_body is None for an empty body, an `InvalidBody` for bad JSON; `form` is the
    parsed body of a form-encoded request (SearXNG's POST), else None."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            return None, dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return InvalidBody("the form body is not UTF-8"), None
    if not raw.strip():
        return None, None
    try:
        # pydantic-core's parser, not json.loads: it stops at 200 levels of nesting with a ValueError, where
        # json.loads recurses until Python's RecursionError (a 500 for a body of a few hundred kilobytes of '[').
        return pydantic_core.from_json(raw), None
    except ValueError as exc:
        return InvalidBody(f"the request body is not valid JSON ({exc})"), None


def require_object(body: Any) -> dict[str, Any]:
    """The JSON body as an object ({} when empty); InputError otherwise."""
    if body is None:
        return {}
    if isinstance(body, InvalidBody):
        raise InputError(body.reason[0].upper() + body.reason[1:] + ".")
    if not isinstance(body, dict):
        raise InputError("The request body must be a JSON object.")
    return body


def parse_bool(value: Any, *, name: str) -> bool:
    """Booleans from JSON or a query string ('True', 'true', '1', ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"'{name}' must be a boolean (true or false), got {value!r}.", field=name)


def parse_int(value: Any, *, name: str, default: int | None = None) -> int | None:
    """An integer from JSON or a query string; None/'' gives `default`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise InputError(f"'{name}' must be an integer, got {value!r}.", field=name)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InputError(f"'{name}' must be an integer, got {value!r}.", field=name)


def query_text(value: Any, *, name: str) -> str:
    """A required, non-empty query string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"'{name}' is required: send the search query.", field=name)
    if not isinstance(value, str):
        raise InputError(f"'{name}' must be a string, got {type(value).__name__}.", field=name)
    return value


def documented_query(**params: str) -> dict[str, Any]:
    """`openapi_extra` declaring query parameters a dialect reads by hand (name=JSON type), for /docs and for
    the schema fuzzing; none is required, so a client that sends none still matches the schema."""
    return {"parameters": [{"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                           for name, kind in params.items()]}


# --- batches ------------------------------------------------------------------------------------------


async def search_all(engine: Any, natives: list[SearchRequest]) -> list[SearchResponse]:
    """engine.search_many, raising the first failure (the dialects answer a batch whole)."""
    results = await engine.search_many(natives)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


# --- curriculum extensions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Extensions:
    """Per-request overrides of the server's curriculum; unset fields are left to the server."""

    question: str | None = None
    answers: list[str] | None = None
    noise: float | None = None
    step: int | None = None
    seed: int | None = None
    mode: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # native field -> header / body field it came from

    def merged(self, other: Extensions) -> Extensions:
        """`other`'s fields over this one's."""
        values = {name: getattr(other, name) if getattr(other, name) is not None else getattr(self, name)
                  for name in FIELDS}
        return Extensions(**values, sources={**self.sources, **other.sources})


def _header_name(name: str) -> str:
    return "X-ZeroSearch-" + name.capitalize()


def _parse_field(name: str, value: Any, where: str, *, from_header: bool) -> Any:
    if value is None:
        return None
    if name == "question":
        if not isinstance(value, str):
            raise InputError(f"{where} must be a string.", field=where)
        return value
    if name == "answers":
        if from_header and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise InputError(f"{where} is not a valid JSON list of strings.", field=where) from None
            else:
                value = [a.strip() for a in text.split(",") if a.strip()]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise InputError(f"{where} must be a list of strings (in a header: a JSON list or comma-separated).",
                             field=where)
        return value
    if name == "noise":
        if isinstance(value, bool):
            raise InputError(f"{where} must be a number between 0 and 1.", field=where)
        try:
            noise = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where} must be a number between 0 and 1, got {value!r}.", field=where) from None
        if not 0.0 <= noise <= 1.0:
            raise InputError(f"{where} must be between 0 and 1, got {value!r}.", field=where)
        return noise
    if name in ("step", "seed"):
        limit = MAX_STEP if name == "step" else MAX_SEED
        number = parse_int(value, name=where)
        if number is None or not 0 <= number <= limit:
            raise InputError(f"{where} must be an integer between 0 and {limit}, got {value!r}.", field=where)
        return number
    if name == "mode":
        mode = value.strip().lower() if isinstance(value, str) else value
        if mode not in MODES:
            raise InputError(f"{where} must be 'sft' or 'prompt', got {value!r}.", field=where)
        return mode
    raise AssertionError(name)


def from_headers(headers: Mapping[str, str]) -> Extensions:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        raw = headers.get(HEADER_PREFIX + name)
        if raw is None:
            continue
        where = _header_name(name)
        values[name] = _parse_field(name, raw, where, from_header=True)
        sources[name] = where
    return Extensions(**values, sources=sources)


def from_object(obj: Any, *, where: str = BODY_KEY) -> Extensions:
    """The `"zerosearch": {...}` body object (unknown keys are ignored)."""
    if obj is None:
        return Extensions()
    if not isinstance(obj, dict):
        raise InputError(f"'{where}' must be an object with any of {', '.join(FIELDS)}.", field=where)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        if name in obj:
            path = f"{where}.{name}"
            values[name] = _parse_field(name, obj[name], path, from_header=False)
            sources[name] = path
    return Extensions(**values, sources=sources)


def read_extensions(request: Request, body: Any = None) -> Extensions:
    """Headers, then the body's `zerosearch` object over them (when the body is a JSON object)."""
    ext = from_headers(request.headers)
    if isinstance(body, dict) and BODY_KEY in body:
        ext = ext.merged(from_object(body[BODY_KEY]))
    return ext


def native_request(query: str, k: int, ext: Extensions, *, query_field: str = "query",
                   k_field: str = "k") -> SearchRequest:
    """The engine's SearchRequest; a value the engine refuses becomes an InputError naming the client's field."""
    fields: dict[str, Any] = {"query": query, "k": k}
    for name in FIELDS:
        value = getattr(ext, name)
        if value is not None:
            fields[name] = value
    try:
        return SearchRequest(**fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        native = str(error["loc"][0]) if error.get("loc") else "query"
        names = {"query": query_field, "k": k_field, **ext.sources}
        where = names.get(native, native)
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        raise InputError(f"{where}: {message}.", field=where) from None
