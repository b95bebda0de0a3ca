"""What the simulator and the trainer both speak: schemas, curriculum, scoring, renderings, the HTTP client.

Nothing here imports a service package.
"""

from zerosearch_core.client import SearchClient, search_sync
from zerosearch_core.curriculum import is_noisy, noise_probability
from zerosearch_core.errors import (
    BackendError,
    CacheError,
    GenerationTimeoutError,
    QueueFullError,
    RequestError,
    SearchUnavailableError,
    UpstreamError,
    ZeroSearchError,
)
from zerosearch_core.protocol import render_paper, render_searchr1, retriever_contents, split_contents
from zerosearch_core.schemas import (
    CurriculumState,
    Document,
    ErrorBody,
    SearchRequest,
    SearchResponse,
)
from zerosearch_core.scoring import contains_answer, exact_match, f1_score, normalize_answer, sub_exact_match

__all__ = [
    "BackendError",
    "CacheError",
    "CurriculumState",
    "Document",
    "ErrorBody",
    "GenerationTimeoutError",
    "QueueFullError",
    "RequestError",
    "SearchClient",
    "SearchRequest",
    "SearchResponse",
    "SearchUnavailableError",
    "UpstreamError",
    "ZeroSearchError",
    "contains_answer",
    "exact_match",
    "f1_score",
    "is_noisy",
    "noise_probability",
    "normalize_answer",
    "render_paper",
    "render_searchr1",
    "retriever_contents",
    "search_sync",
    "split_contents",
    "sub_exact_match",
]
