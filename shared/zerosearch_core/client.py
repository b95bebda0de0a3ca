"""Async HTTP client of the simulator's native API, with retries and failover across replicas.

    async with SearchClient("http://a:8000,http://b:8000") as client:
        response = await client.search("who wrote hamlet", k=5, step=10)

Each attempt goes to the next base URL (the first one rotates per call to spread load).
Connection errors, timeouts, 5xx and 429 are retried with capped exponential backoff and
jitter; any other 4xx is the caller's fault and raises `RequestError` at once. When every
attempt fails, `SearchUnavailableError` says what each URL answered.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from zerosearch_core.errors import RequestError, SearchUnavailableError
from zerosearch_core.schemas import (
    BatchSearchResponse,
    CurriculumResponse,
    ErrorBody,
    SearchRequest,
    SearchResponse,
)

__all__ = ["SearchClient", "parse_retry_after", "search_sync"]

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

_USER_AGENT = "zerosearch-client"
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
_HINT = "Check that the simulator is running (`zerosearch serve`) and that the URL is right."


class _AttemptFailed(Exception):
    """One attempt failed in a way another attempt (same or other URL) may fix."""

    def __init__(self, url: str, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.retry_after_s = retry_after_s


def _split_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    cleaned = tuple(p.strip().rstrip("/") for p in parts if p and p.strip().rstrip("/"))
    if not cleaned:
        raise ValueError("SearchClient needs at least one base URL of a running simulator, "
                         "e.g. 'http://127.0.0.1:8000' or 'http://a:8000,http://b:8000'")
    for url in cleaned:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {url!r} must start with http:// or https:// "
                             "(e.g. 'http://127.0.0.1:8000')")
    return cleaned


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds a Retry-After header asks to wait (either form of RFC 9110), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # The other form allowed by RFC 9110 is an HTTP date.
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _describe_transport_error(exc: httpx.TransportError, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout_s:g}s ({type(exc).__name__})"
    # httpx words a refused connection as "All connection attempts failed"; the OSError underneath says more.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_detail(response: httpx.Response) -> ErrorBody | None:
    try:
        return ErrorBody.model_validate(response.json())
    except (ValueError, ValidationError):
        return None


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class SearchClient:
    """Async client of one or more simulator replicas. Use as `async with`, or call `aclose()`."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 256,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0 (0 means a single attempt), got {retries}")
        if backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0 seconds")
        self.urls = _split_urls(urls)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._next_start = 0
        self._backoff = wait_exponential_jitter(initial=self.backoff_s, max=self.max_backoff_s,
                                                jitter=self.backoff_s)
        # One pooled client for every call: the trainer sends many small concurrent requests.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            headers={"User-Agent": _USER_AGENT, **(headers or {})},
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(64, max_connections)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"SearchClient({','.join(self.urls)!r}, timeout_s={self.timeout_s:g}, retries={self.retries})"

    async def __aenter__(self) -> SearchClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---- public API -------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        k: int | None = 5,
        noise: float | None = None,
        step: int | None = None,
        question: str | None = None,
        answers: Sequence[str] | None = None,
        mode: str | None = None,
        seed: int | None = None,
        cache: bool | None = None,
    ) -> SearchResponse:
        """One search (`POST /v1/search`). Fields left as None are not sent: the server decides."""
        body = _drop_none({"query": query, "k": k, "noise": noise, "step": step, "question": question,
                           "answers": list(answers) if answers is not None else None,
                           "mode": mode, "seed": seed, "cache": cache})
        return await self._call("POST", "/v1/search", body, SearchResponse)

    async def search_batch(
        self, requests: Sequence[SearchRequest | Mapping[str, Any]]
    ) -> list[SearchResponse | ErrorBody]:
        """Many searches in one `POST /v1/search/batch`; results keep the order of `requests`, and a
        request the server refused comes back as an `ErrorBody` in its place."""
        items = [
            r.model_dump(mode="json", exclude_unset=True, exclude_none=True) if isinstance(r, BaseModel)
            else _drop_none(r)
            for r in requests
        ]
        if not items:
            return []
        batch = await self._call("POST", "/v1/search/batch", {"requests": items}, BatchSearchResponse)
        if len(batch.results) != len(items):
            raise SearchUnavailableError(
                f"the simulator answered {len(batch.results)} results to a batch of {len(items)}; "
                "is the URL a ZeroSearch simulator of the same version?")
        return list(batch.results)

    async def get_curriculum(self) -> CurriculumResponse:
        """The server-side noise schedule (`GET /v1/curriculum`)."""
        return await self._call("GET", "/v1/curriculum", None, CurriculumResponse)

    async def set_curriculum(self, **fields: Any) -> CurriculumResponse:
        """Update the server-side schedule (`PUT /v1/curriculum`), e.g. `set_curriculum(step=120)`."""
        return await self._call("PUT", "/v1/curriculum", fields, CurriculumResponse)

    async def health(self) -> bool:
        """True when at least one base URL answers `GET /readyz` with 200 (no retries)."""
        for url in self.urls:
            try:
                response = await self._http.get(f"{url}/readyz")
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                return True
        return False

    # ---- retries and failover ---------------------------------------------------------

    async def _call(self, method: str, path: str, body: Any, model: type[_Model]) -> _Model:
        start = self._next_start
        self._next_start = (start + 1) % len(self.urls)
        failures: list[_AttemptFailed] = []
        attempts = self.retries + 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_AttemptFailed),
            before_sleep=lambda state: self._log_retry(state, method, path, attempts),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    url = self.urls[(start + attempt.retry_state.attempt_number - 1) % len(self.urls)]
                    try:
                        return await self._attempt(method, url, path, body, model)
                    except _AttemptFailed as exc:
                        failures.append(exc)
                        raise
        except _AttemptFailed:
            pass
        raise SearchUnavailableError(self._unavailable_message(method, path, failures),
                                     attempts=[str(f) for f in failures])

    async def _attempt(self, method: str, url: str, path: str, body: Any, model: type[_Model]) -> _Model:
        try:
            response = await self._http.request(method, f"{url}{path}", json=body)
        except httpx.TransportError as exc:
            raise _AttemptFailed(url, _describe_transport_error(exc, self.timeout_s)) from exc
        status = response.status_code
        if status in _RETRY_STATUSES:
            detail = _error_detail(response)
            reason = f"HTTP {status}" + (f" ({detail.error.code}: {detail.error.message})" if detail else "")
            raise _AttemptFailed(url, reason, retry_after_s=parse_retry_after(response))
        if status >= 400:
            raise self._request_error(url, path, response)
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            # A 2xx we cannot read means the URL is not (this version of) the simulator; another may be.
            raise _AttemptFailed(url, f"HTTP {status} with a body that is not a {model.__name__} "
                                      "(is this a ZeroSearch simulator?)") from exc

    @staticmethod
    def _request_error(url: str, path: str, response: httpx.Response) -> RequestError:
        status = response.status_code
        detail = _error_detail(response)
        if detail is not None:
            return RequestError(detail.error.message, code=detail.error.code, field=detail.error.field,
                                status=status)
        hint = " (is this a ZeroSearch simulator?)" if status in (404, 405) else ""
        text = response.text.strip()[:200]
        return RequestError(f"{url}{path}: HTTP {status}{hint}" + (f": {text}" if text else ""),
                            code=f"http_{status}", status=status)

    def _wait(self, state: RetryCallState) -> float:
        # The first pass over the URL list fails over at once: another replica need not wait for this one.
        if state.attempt_number < len(self.urls):
            return 0.0
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _AttemptFailed) and exc.retry_after_s is not None:
            # The server said when to come back; still capped so that a bad header cannot stall training.
            delay = max(delay, min(exc.retry_after_s, self.max_backoff_s))
        return delay

    @staticmethod
    def _log_retry(state: RetryCallState, method: str, path: str, attempts: int) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("%s %s attempt %d/%d failed (%s); retrying in %.2fs",
                       method, path, state.attempt_number, attempts, exc, sleep)

    @staticmethod
    def _unavailable_message(method: str, path: str, failures: list[_AttemptFailed]) -> str:
        # Group by URL, keeping order, so that "a, b, a, b" reads as one line per replica.
        reasons: dict[str, list[str]] = {}
        for failure in failures:
            seen = reasons.setdefault(failure.url, [])
            if failure.reason not in seen:
                seen.append(failure.reason)
        tried = "; ".join(f"{url}: {', '.join(why)}" for url, why in reasons.items())
        return (f"no simulator answered {method} {path} after {len(failures)} attempt(s): {tried}. "
                f"{_HINT}")


def search_sync(urls: str | Sequence[str], query: str, **kwargs: Any) -> SearchResponse:
    """Blocking one-off search, for scripts; not for use inside a running event loop."""
    client_keys = {"timeout_s", "retries", "backoff_s", "max_backoff_s", "headers"}
    client_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in client_keys}

    async def _run() -> SearchResponse:
        async with SearchClient(urls, **client_kwargs) as client:
            return await client.search(query, **kwargs)

    return asyncio.run(_run())
