"""The search engine: request -> useful/noisy decision -> cache -> backend -> parse -> documents.

Every dialect router calls `SearchEngine.search` and nothing else; all decisions live here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pydantic_core

from zerosearch_core.curriculum import is_noisy
from zerosearch_core.errors import BackendError, GenerationTimeoutError, QueueFullError, ZeroSearchError
from zerosearch_core.protocol import render_paper
from zerosearch_core.schemas import Document, Label, SearchRequest, SearchResponse
from zerosearch_simulator import parsing, prompts
from zerosearch_simulator.backends.base import Backend, GenerationRequest, Hit, Retriever
from zerosearch_simulator.cache import Cache
from zerosearch_simulator.curriculum import CurriculumStore, noise_at
from zerosearch_simulator.metrics import Metrics
from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)

# One retry when the model writes fewer than k usable documents, then return what there is.
GENERATION_ATTEMPTS = 2
MIN_NEW_TOKENS = 48
RETRY_TEMPERATURE = 0.7


def normalize_query(query: str) -> str:
    return " ".join(query.lower().split())


def cache_key(*, model: str, mode: str, template_version: str, label: Label, query: str,
              question: str | None, answers: list[str] | None, k: int, seed: int) -> str:
    """Everything that changes the generated text, and nothing else."""
    # A JSON list in a fixed order (json's fast path; sort_keys would take its slow one).
    fields = [model, mode, template_version, label, normalize_query(query), question, answers, k, seed]
    return hashlib.sha256(json.dumps(fields).encode("utf-8")).hexdigest()


def real_cache_key(*, engine: str, query: str, k: int) -> str:
    """A real engine's answer depends on the query and k only: question, answers, seed and noise stay out, so
    every run and every curriculum step shares one entry (and, upstream, one paid query)."""
    return hashlib.sha256(json.dumps(["real", engine, normalize_query(query), k]).encode("utf-8")).hexdigest()


@dataclass(slots=True)
class _Found:
    """A cached or generated value, with the per-request facts the response adds to it."""

    value: bytes  # the JSON of {"documents": [...], "partial": bool, "text": str}
    noise: float
    noisy: bool
    cached: bool
    started: float

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class SearchEngine:
    """Routes each search to the model (`backend`, which writes documents) or to a real engine (`retriever`, which
    finds them). With only a backend: the simulator. With only a retriever: a real engine behind the same front
    (corpus, upstream); the curriculum is echoed but every set is what the engine found. With both (hybrid):
    useful sets are real, noisy ones are written by the model."""

    def __init__(self, *, settings: Settings, backend: Backend | None, cache: Cache, curriculum: CurriculumStore,
                 metrics: Metrics, retriever: Retriever | None = None) -> None:
        if backend is None and retriever is None:
            raise ValueError("the engine needs a generation backend, a retriever, or both")
        self.settings = settings
        self.backend = backend
        self.retriever = retriever
        self.cache = cache
        self.curriculum = curriculum
        self.metrics = metrics
        self._pending = 0  # generations waiting or running (bounded by ZS_MAX_QUEUE)
        self._results = {label: metrics.results.labels(label=label) for label in ("useful", "noisy")}

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def model_id(self) -> str:
        """What answers: the model, the real engine, or both (hybrid: `engine+model`)."""
        return "+".join(part.model_id for part in (self.retriever, self.backend) if part is not None)

    async def check_health(self) -> bool:
        parts = [part for part in (self.retriever, self.backend) if part is not None]
        return all([await part.check_health() for part in parts])

    async def decide(self, request: SearchRequest) -> tuple[float, bool, int]:
        """(noise probability, noisy?, seed) for a request: noise, else step, else the server's state."""
        step = request.step
        if request.noise is not None:
            noise = request.noise
        else:
            state = await self.curriculum.get()
            step = state.step if step is None else step
            noise = noise_at(state, step)
        seed = self.settings.seed if request.seed is None else request.seed
        if self.backend is None:  # a real engine alone: nothing can write a noisy set
            return noise, False, seed
        return noise, is_noisy(noise, seed=seed, query=normalize_query(request.query), step=step), seed

    async def search(self, request: SearchRequest) -> SearchResponse:
        """The documents for one request, as the model every dialect reads."""
        found = await self._lookup(request)
        value = pydantic_core.from_json(found.value)
        # The values were validated when they were generated: construct without validating again.
        return SearchResponse.model_construct(
            query=request.query, documents=[Document.model_construct(**d) for d in value["documents"]],
            noisy=found.noisy, noise=found.noise, cached=found.cached, partial=value["partial"],
            model=self.model_id, latency_ms=found.latency_ms(), text=value["text"])

    async def search_json(self, request: SearchRequest) -> bytes:
        """The same answer as `search`, as JSON bytes: the native API's cache-hit path, where building six models
        and serialising them was most of the cost. The per-request fields are serialised, and the cached
        JSON object (documents, partial, text) is spliced in as it is; a test checks both paths agree."""
        found = await self._lookup(request)
        head = pydantic_core.to_json({"query": request.query, "noisy": found.noisy, "noise": found.noise,
                                      "cached": found.cached, "model": self.model_id,
                                      "latency_ms": found.latency_ms()})
        return head[:-1] + b"," + found.value[1:]

    async def _lookup(self, request: SearchRequest) -> _Found:
        started = time.perf_counter()
        noise, noisy, seed = await self.decide(request)
        label: Label = "noisy" if noisy else "useful"
        real = label == "useful" and self.retriever is not None
        if real:
            key = real_cache_key(engine=self.retriever.model_id, query=request.query, k=request.k)

            async def generate() -> bytes:
                return pydantic_core.to_json(await self._retrieve(request))
        else:
            template = prompts.load_template(request.mode)
            key = cache_key(model=self._backend.model_id, mode=request.mode, template_version=template.version,
                            label=label, query=request.query, question=request.question, answers=request.answers,
                            k=request.k, seed=seed)

            async def generate() -> bytes:
                return pydantic_core.to_json(await self._generate(request, label, seed))

        if request.cache:
            value, cached = await self.cache.get_or_compute(key, generate)
        else:
            value, cached = await generate(), False
        if cached and real and self.retriever is not None:
            self.retriever.on_cache_hit()
        self._results[label].inc()
        return _Found(value=value, noise=noise, noisy=noisy, cached=cached, started=started)

    async def search_many(self, requests: list[SearchRequest]) -> list[SearchResponse | ZeroSearchError]:
        """Many searches, concurrently but at most a quarter of ZS_MAX_QUEUE at a time, so that one large batch
        (a training step sends hundreds of queries) waits its turn instead of filling the queue and failing
        with 503. A failed search is returned, as its exception, in its place."""
        limit = asyncio.Semaphore(max(1, self.settings.max_queue // 4))

        async def one(request: SearchRequest) -> SearchResponse | ZeroSearchError:
            async with limit:
                try:
                    return await self.search(request)
                except ZeroSearchError as exc:
                    return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    @property
    def _backend(self) -> Backend:
        assert self.backend is not None, "only called when the engine has a generation backend"
        return self.backend

    async def _retrieve(self, request: SearchRequest) -> dict[str, Any]:
        """A real engine's result set (the cached value has the same shape as a generated one)."""
        assert self.retriever is not None
        try:
            hits = await asyncio.wait_for(self.retriever.retrieve(request.query, request.k),
                                          timeout=self.settings.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.backend_errors.inc()
            raise GenerationTimeoutError(
                f"the search engine took longer than ZS_TIMEOUT_S={self.settings.timeout_s:g} s") from None
        except BackendError:
            self.metrics.backend_errors.inc()
            raise
        except Exception as exc:
            self.metrics.backend_errors.inc()
            logger.exception("retriever failed")
            raise BackendError(f"search failed: {type(exc).__name__}: {exc}") from exc
        documents = [_real_document(hit) for hit in hits[: request.k]]
        return {"documents": [d.model_dump() for d in documents], "partial": len(documents) < request.k,
                "text": render_paper(documents)}

    async def _generate(self, request: SearchRequest, label: Label, seed: int) -> dict[str, Any]:
        messages = prompts.build_messages(request.mode, label=label, query=request.query,
                                          question=request.question, answers=request.answers, k=request.k)
        # ZS_MAX_NEW_TOKENS is the budget for five documents; other counts get a proportional share (the stop
        # string `Doc {k+1}:` ends most generations earlier anyway).
        budget = max(MIN_NEW_TOKENS, self.settings.max_new_tokens * request.k // 5)
        snippets: list[str] = []
        for attempt in range(GENERATION_ATTEMPTS):
            # Greedy decoding would write the same text again: the retry samples.
            temperature = self.settings.temperature
            if attempt > 0 and temperature == 0:
                temperature = RETRY_TEMPERATURE
            generation_request = GenerationRequest(
                messages=messages, max_new_tokens=budget, temperature=temperature,
                top_p=self.settings.top_p, seed=seed + attempt, stop=(f"Doc {request.k + 1}:",))
            text = await self._run_backend(generation_request)
            snippets = parsing.split_snippets(text, request.k)
            if len(snippets) >= request.k:
                break
            logger.info("model wrote %d of %d usable documents (attempt %d)", len(snippets), request.k, attempt + 1)
        documents = parsing.to_documents(snippets, query=request.query, label=label)
        # The cached value: everything about the answer that does not depend on the request.
        return {"documents": [d.model_dump() for d in documents], "partial": len(documents) < request.k,
                "text": render_paper(documents)}

    async def _run_backend(self, request: GenerationRequest) -> str:
        if self._pending >= self.settings.max_queue:
            raise QueueFullError(f"{self._pending} generations are queued (ZS_MAX_QUEUE={self.settings.max_queue}); "
                                 "retry shortly or add replicas", retry_after_s=1.0)
        self._pending += 1
        self.metrics.queue_depth.set(self._pending)
        try:
            generation = await asyncio.wait_for(self._backend.generate(request), timeout=self.settings.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.backend_errors.inc()
            raise GenerationTimeoutError(
                f"generation took longer than ZS_TIMEOUT_S={self.settings.timeout_s:g} s") from None
        except BackendError:
            self.metrics.backend_errors.inc()
            raise
        except Exception as exc:
            self.metrics.backend_errors.inc()
            logger.exception("backend failed")
            raise BackendError(f"generation failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._pending -= 1
            self.metrics.queue_depth.set(self._pending)
        self.metrics.generations.inc()
        self.metrics.generated_tokens.inc(generation.completion_tokens)
        self.metrics.generation_duration.observe(generation.backend_seconds)
        return generation.text


def _real_document(hit: Hit) -> Document:
    return Document(id=hit.id, title=hit.title, url=hit.url, snippet=" ".join(hit.text.split()), label="useful",
                    source="real")
