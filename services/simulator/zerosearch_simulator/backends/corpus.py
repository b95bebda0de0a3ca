"""`ZS_BACKEND=corpus`: BM25 (bm25s) over a local corpus, the CIA World Factbook by default.

The index is opened in a worker thread at start-up (built and saved the first time, memory-mapped after:
`zerosearch_core.corpus.BM25Index`). Searches arriving together are answered by one bm25s call: each
`retrieve` joins a queue, and one drain task at a time hands everything queued to a worker thread, so a
512-query `/retrieve` batch costs a few bm25s calls rather than 512 thread hops.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from zerosearch_core.corpus import BM25Index, Corpus, load_corpus
from zerosearch_core.errors import BackendError
from zerosearch_simulator.backends.base import Hit, Retriever

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)

#: Most queries handed to bm25s in one call (bounds one call's latency for the queries queued behind it).
MAX_BATCH = 1024


def check_corpus(settings: Settings) -> Corpus:
    """Read the configured corpus (CorpusError naming the file and line if it is bad). `zerosearch serve`
    calls it before uvicorn starts; load_corpus keeps the result, so a single-process server reads it once."""
    return load_corpus(settings.corpus)


class CorpusRetriever(Retriever):
    """A real engine over a local corpus. `model_id` is `bm25:<corpus name>@<content hash, 12 digits>`."""

    def __init__(self, settings: Settings | None = None, *, corpus: str | None = None,
                 cache_dir: str | Path | None = None, index: BM25Index | None = None) -> None:
        self._corpus_path = settings.corpus if settings is not None else corpus
        self._cache_dir = Path(settings.cache_dir) if settings is not None and settings.cache_dir else (
            Path(cache_dir) if cache_dir else None)
        self.index = index
        if index is not None:
            self.model_id = self._model_id(index.corpus)
        self._queue: list[tuple[str, int, asyncio.Future[list[Hit]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    @staticmethod
    def _model_id(corpus: Corpus) -> str:
        return f"bm25:{corpus.name}@{corpus.content_hash[:12]}"

    def _open(self) -> BM25Index:
        return BM25Index.open(load_corpus(self._corpus_path), self._cache_dir)

    async def start(self) -> None:
        if self.index is None:
            self.index = await asyncio.to_thread(self._open)  # the event loop stays free while it loads
            self.model_id = self._model_id(self.index.corpus)
        logger.info("corpus engine ready: %s, %d passages", self.model_id, len(self.index))

    async def check_health(self) -> bool:
        return self.index is not None

    async def retrieve(self, query: str, k: int) -> list[Hit]:
        if self.index is None:
            raise BackendError("the corpus index is not loaded yet", recoverable=True)
        future: asyncio.Future[list[Hit]] = asyncio.get_running_loop().create_future()
        self._queue.append((query, k, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Answer everything queued, a batch at a time, until the queue is empty."""
        await asyncio.sleep(0)  # let the other searches of the same request join the first batch
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            batch = [item for item in batch if not item[2].done()]  # drop searches that timed out meanwhile
            if not batch:
                continue
            try:
                found = await asyncio.to_thread(self._search, [q for q, _, _ in batch], max(k for _, k, _ in batch))
            except Exception as exc:  # noqa: BLE001 - every waiting search gets the failure
                logger.exception("bm25 search failed")
                error = BackendError(f"search failed: {type(exc).__name__}: {exc}", recoverable=False)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, k, future), hits in zip(batch, found, strict=True):
                if not future.done():
                    future.set_result(hits[:k])

    def _search(self, queries: list[str], k: int) -> list[list[Hit]]:
        assert self.index is not None
        return [[Hit(id=p.id, title=p.title, url=p.url, text=p.text, score=score) for p, score in results]
                for results in self.index.search_batch(queries, k)]

    async def shutdown(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            await asyncio.wait([self._drainer], timeout=5)
