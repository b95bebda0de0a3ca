"""The one exception tree of ZeroSearch.

    ZeroSearchError
     +-- RequestError          the caller sent something wrong (-> HTTP 4xx); carries code, message, field
     +-- BackendError          generation failed; `recoverable` says whether a retry may help
     |    +-- QueueFullError   too many generations waiting (-> 503 + Retry-After)
     |    +-- GenerationTimeoutError  a generation outlived its deadline (-> 504)
     |    +-- UpstreamError    a real search API behind the front failed (-> 502); names the API, never its key
     |         +-- UpstreamAuthError       it refused the key (its 401/403) (-> 502)
     |         +-- UpstreamRateLimitError  it answered 429 (-> 429 + its Retry-After)
     |         +-- UpstreamBudgetError     ZS_UPSTREAM_MAX_QUERIES is spent for today (-> 429 + Retry-After)
     |         +-- UpstreamTimeoutError    no answer within ZS_UPSTREAM_TIMEOUT_S, retries included (-> 504)
     |         +-- UpstreamResponseError   an answer that is not the API's shape (-> 502, not cached)
     +-- CacheError            the cache (Redis) failed; the simulator keeps answering uncached
     +-- SearchUnavailableError  the client tried every URL and every retry, and none answered

Services map these to HTTP responses in one place; the client raises them to its callers.
"""

from __future__ import annotations


class ZeroSearchError(Exception):
    """Base of every error raised on purpose by ZeroSearch."""


class RequestError(ZeroSearchError):
    """A malformed or impossible request. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str = "invalid_request", field: str | None = None,
                 status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status


class BackendError(ZeroSearchError):
    """The generation backend failed. A recoverable error may succeed if retried."""

    code = "backend_error"

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.recoverable = recoverable


class QueueFullError(BackendError):
    """More generations are waiting than the server allows (ZS_MAX_QUEUE)."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, recoverable=True)
        self.retry_after_s = retry_after_s


class GenerationTimeoutError(BackendError):
    """A generation took longer than the server's deadline (ZS_TIMEOUT_S)."""

    code = "generation_timeout"


class CacheError(ZeroSearchError):
    """The cache failed. Callers degrade to uncached answers rather than failing."""


class SearchUnavailableError(ZeroSearchError):
    """Every base URL failed after all retries. `attempts` lists what each try got."""

    def __init__(self, message: str, *, attempts: list[str] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class UpstreamError(BackendError):
    """A real search API behind the simulator's front (ZS_BACKEND=upstream) failed: down, 5xx, refused.
    `upstream` names the API, `upstream_status` is the HTTP status it answered (None: no answer), `status` the one
    the front answers with. Messages never hold the API key."""

    code = "upstream_error"
    status = 502

    def __init__(self, message: str, *, upstream: str, upstream_status: int | None = None,
                 recoverable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message, recoverable=recoverable)
        self.upstream = upstream
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s


class UpstreamAuthError(UpstreamError):
    """The upstream refused the key (ZS_UPSTREAM_KEY): an operator's fix, not the caller's, hence 502."""

    code = "upstream_auth_failed"

    def __init__(self, message: str, *, upstream: str, upstream_status: int | None = None) -> None:
        super().__init__(message, upstream=upstream, upstream_status=upstream_status, recoverable=False)


class UpstreamRateLimitError(UpstreamError):
    """The upstream answered 429; its Retry-After is passed on."""

    code = "upstream_rate_limited"
    status = 429


class UpstreamBudgetError(UpstreamError):
    """ZS_UPSTREAM_MAX_QUERIES upstream queries were spent today (UTC); Retry-After points at midnight."""

    code = "upstream_budget_spent"
    status = 429


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer within ZS_UPSTREAM_TIMEOUT_S, on any attempt."""

    code = "upstream_timeout"
    status = 504


class UpstreamResponseError(UpstreamError):
    """The upstream answered 2xx with a body that is not its API's shape (never cached)."""

    code = "upstream_bad_response"


class CorpusError(ZeroSearchError):
    """A corpus that cannot be read: the message names the file and, for a bad line, its number."""
