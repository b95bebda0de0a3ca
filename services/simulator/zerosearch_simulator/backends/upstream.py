"""ZS_BACKEND=upstream: a real search API behind the simulator's front, so that every dialect, the cache, the
metrics and the limits of the front serve it, and a query is paid for once across runs, replicas and people.

Each search becomes the upstream's own request (`upstream_apis`); its answer becomes hits, which the engine turns
into documents marked `source: real` and caches under a key without the noise fields (`real_cache_key`).

Failures, each named after the upstream and its status, never with the key:

    upstream                          front                     retried here
    no connection                     502 upstream_error        yes (the request never left)
    502, 503, 504                     502 upstream_error        yes (the API says it did not serve it)
    500, other 4xx                    502 upstream_error        no
    401, 403 (and each API's own)     502 upstream_auth_failed  no
    429 (Tavily: 432, 433)            429 + its Retry-After     no (the caller waits as told)
    no answer in ZS_UPSTREAM_TIMEOUT_S 504 upstream_timeout     no (the API may have served, and billed, it)
    2xx that is not the API's shape   502 upstream_bad_response no; never cached
    ZS_UPSTREAM_MAX_QUERIES spent     429 + Retry-After (to midnight UTC)
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from zerosearch_core.client import parse_retry_after
from zerosearch_core.errors import (
    UpstreamAuthError,
    UpstreamBudgetError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamResponseError,
    UpstreamTimeoutError,
)
from zerosearch_simulator.backends.base import Hit, Retriever
from zerosearch_simulator.backends.upstream_apis import APIS, MalformedAnswer
from zerosearch_simulator.backends.upstream_budget import DailyBudget, seconds_to_next_day

if TYPE_CHECKING:
    from zerosearch_simulator.metrics import Metrics
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_WAIT_S = 4.0
_BACKOFF = wait_exponential_jitter(initial=0.25, max=MAX_WAIT_S)
# The loggers that may print a request URL (SerpAPI and Google take the key as a URL parameter).
HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")
MAX_DETAIL_CHARS = 200
USER_AGENT = "zerosearch-upstream/0.1"


class _Retryable(Exception):
    """An attempt that failed where another attempt is safe; carries the error to raise when none is left."""

    def __init__(self, error: UpstreamError, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s


def secret_forms(secret: str | None) -> tuple[str, ...]:
    """The key as it may appear in text: raw, and URL-encoded as in a logged request URL."""
    if not secret:
        return ()
    in_query = str(httpx.QueryParams({"k": secret}))[2:]  # exactly as httpx writes it into a URL
    return tuple(dict.fromkeys((secret, in_query, quote(secret, safe=""), quote_plus(secret))))


def mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _Redact(logging.Filter):
    """Masks the key in every record of the logger it is attached to."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _detail(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """A short, key-free excerpt of an error answer for the message."""
    return mask(" ".join(response.text.split()), secrets)[:MAX_DETAIL_CHARS]


class UpstreamRetriever(Retriever):
    """Forwards each search to ZS_UPSTREAM at ZS_UPSTREAM_URL (default: the API's public address)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.upstream is not None, "checked by Settings"
        self.api = APIS[settings.upstream]
        self.name = self.api.name
        url = settings.upstream_url or self.api.default_url
        assert url is not None, "checked by Settings"
        self.base_url = url.rstrip("/")
        parts = urlsplit(self.base_url)
        # Host and path only: a URL may carry credentials. The id is part of the cache key, so two upstreams (or
        # two Google engines) never share entries.
        self.where = (parts.netloc.rpartition("@")[2] + parts.path).rstrip("/")
        engine = ""
        if self.name == "google_cse" and settings.upstream_cx:
            engine = "#" + hashlib.sha256(settings.upstream_cx.encode("utf-8")).hexdigest()[:8]
        self.model_id = f"upstream:{self.name}@{self.where}{engine}"
        self._key = settings.upstream_key.get_secret_value() if settings.upstream_key is not None else None
        self._secrets = secret_forms(self._key)
        self._cx = settings.upstream_cx
        self.timeout_s = settings.upstream_timeout_s
        self.retries = settings.upstream_retries
        self.price = settings.upstream_price_per_1k / 1000.0
        self.budget = DailyBudget(limit=settings.upstream_max_queries, scope=self.model_id,
                                  redis_url=settings.redis_url)
        self._http: httpx.AsyncClient | None = None
        self._filters: list[tuple[logging.Logger, logging.Filter]] = []
        self._metrics: Metrics | None = None

    def __repr__(self) -> str:
        return f"UpstreamRetriever({self.model_id})"

    def bind_metrics(self, metrics: Metrics) -> None:
        self._metrics = metrics
        metrics.upstream_requests.labels(upstream=self.name, outcome="ok", status="200")
        metrics.upstream_cache_savings.labels(upstream=self.name)
        metrics.upstream_spend.labels(upstream=self.name)
        metrics.upstream_budget_refused.labels(upstream=self.name)

    async def start(self) -> None:
        if self._secrets:
            for name in HTTP_LOGGERS:
                log, redact = logging.getLogger(name), _Redact(self._secrets)
                log.addFilter(redact)
                self._filters.append((log, redact))
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 5.0)),
            # No redirects: a header key (X-API-KEY, x-api-key) would follow one to whatever host it names.
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"}, follow_redirects=False)
        budget = f", budget {self.budget.limit}/day ({'shared' if self.budget.shared else 'this process'})" \
            if self.budget.limit is not None else ""
        logger.info("upstream %s at %s%s", self.name, self.where, budget)

    async def shutdown(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self.budget.close()
        for log, redact in self._filters:
            log.removeFilter(redact)
        self._filters.clear()

    def on_cache_hit(self) -> None:
        if self._metrics is not None:
            self._metrics.upstream_cache_savings.labels(upstream=self.name).inc()

    async def retrieve(self, query: str, k: int) -> list[Hit]:
        if not await self.budget.take():
            if self._metrics is not None:
                self._metrics.upstream_budget_refused.labels(upstream=self.name).inc()
            raise UpstreamBudgetError(
                f"the daily budget of {self.budget.limit} {self.name} queries (ZS_UPSTREAM_MAX_QUERIES) is spent; "
                "cached queries still answer, new ones from midnight UTC", upstream=self.name,
                retry_after_s=seconds_to_next_day())
        try:
            return await self._with_retries(query, min(k, self.api.max_k))
        except BaseException:
            await self.budget.give_back()
            raise

    async def _with_retries(self, query: str, k: int) -> list[Hit]:
        attempts = self.retries + 1
        retrying = AsyncRetrying(stop=stop_after_attempt(attempts), wait=self._wait, reraise=True,
                                 retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
                                 before_sleep=lambda state: self._log_retry(state, attempts))
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(query, k)
        except _Retryable as exc:
            if attempts > 1:
                exc.error.message += f" ({attempts} attempts)"
                exc.error.args = (exc.error.message,)
            raise exc.error from None
        raise AssertionError("unreachable")

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        delay = _BACKOFF(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, MAX_WAIT_S))  # capped: ZS_TIMEOUT_S bounds the whole search
        return delay

    def _log_retry(self, state: RetryCallState, attempts: int) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("upstream %s attempt %d/%d failed (%s); retrying in %.2fs", self.name,
                       state.attempt_number, attempts, exc, sleep)

    def _count(self, outcome: str, status: int | None, seconds: float) -> None:
        if self._metrics is None:
            return
        self._metrics.upstream_requests.labels(upstream=self.name, outcome=outcome,
                                               status=str(status) if status is not None else "none").inc()
        self._metrics.upstream_duration.labels(upstream=self.name).observe(seconds)
        if outcome == "ok" and self.price:
            self._metrics.upstream_spend.labels(upstream=self.name).inc(self.price)

    async def _attempt(self, query: str, k: int) -> list[Hit]:
        assert self._http is not None, "start() opens the HTTP client"
        request = self.api.request(self.base_url, query, k, key=self._key, cx=self._cx)
        where = f"the upstream {self.name} ({self.where})"
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._count("unreachable", None, time.perf_counter() - started)
            reason = "connection refused" if "refused" in str(exc).lower() or "connection attempts" in str(exc) \
                else type(exc).__name__
            raise _Retryable(UpstreamError(f"{where} is unreachable: {reason}", upstream=self.name)) from None
        except httpx.TimeoutException as exc:
            self._count("timeout", None, time.perf_counter() - started)
            raise UpstreamTimeoutError(f"{where} did not answer within ZS_UPSTREAM_TIMEOUT_S={self.timeout_s:g} s "
                                       f"({type(exc).__name__})", upstream=self.name) from None
        except httpx.HTTPError as exc:  # the connection broke mid-answer, or a protocol error
            self._count("unreachable", None, time.perf_counter() - started)
            raise UpstreamError(f"{where} failed: {type(exc).__name__}", upstream=self.name) from None
        seconds = time.perf_counter() - started
        status = response.status_code
        body = self._json(response)
        if 200 <= status < 300:
            try:
                if body is _NOT_JSON:
                    raise MalformedAnswer("not JSON")
                hits = self.api.read(body, k)
            except MalformedAnswer as exc:
                self._count("malformed", status, seconds)
                message = mask(str(exc), self._secrets)
                raise UpstreamResponseError(f"{where} answered HTTP {status} with a body that is not a {self.name} "
                                            f"answer: {message}", upstream=self.name, upstream_status=status) from None
            self._count("ok", status, seconds)
            return hits
        detail = _detail(response, self._secrets)
        if self.api.auth_failed(status, body):
            self._count("auth_error", status, seconds)
            hint = " (a SearXNG instance answers 403 when its json format is off: add it to search.formats)" \
                if self.name == "searxng" and status == 403 else ""
            raise UpstreamAuthError(f"{where} refused the API key with HTTP {status}: check ZS_UPSTREAM_KEY{hint}. "
                                    f"It said: {detail}", upstream=self.name, upstream_status=status)
        if self.api.rate_limited(status, body):
            self._count("rate_limited", status, seconds)
            retry_after = parse_retry_after(response)
            raise UpstreamRateLimitError(f"{where} is rate-limiting (HTTP {status}); retry later. It said: {detail}",
                                         upstream=self.name, upstream_status=status,
                                         retry_after_s=retry_after if retry_after is not None else 1.0)
        if status in RETRY_STATUSES:
            self._count("server_error", status, seconds)
            raise _Retryable(UpstreamError(f"{where} answered HTTP {status}: {detail}", upstream=self.name,
                                           upstream_status=status), retry_after_s=parse_retry_after(response))
        outcome = "server_error" if status >= 500 else "rejected"
        self._count(outcome, status, seconds)
        raise UpstreamError(f"{where} answered HTTP {status}: {detail}", upstream=self.name, upstream_status=status,
                            recoverable=status >= 500)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return _NOT_JSON


_NOT_JSON = object()
