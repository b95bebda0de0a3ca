"""The one exception tree of ZeroSearch.

    ZeroSearchError
     +-- RequestError          the caller sent something wrong (-> HTTP 4xx); carries code, message, field
     +-- BackendError          generation failed; `recoverable` says whether a retry may help
     |    +-- QueueFullError   too many generations waiting (-> 503 + Retry-After)
     |    +-- GenerationTimeoutError  a generation outlived its deadline (-> 504)
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


class CorpusError(ZeroSearchError):
    """A corpus that cannot be read: the message names the file and, for a bad line, its number."""
