"""The search engine: request -> useful/noisy decision -> cache -> backend -> parse -> documents.

Every dialect router calls `SearchEngine.search` and nothing else; all decisions live here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic_core

from zerosearch_core.curriculum import is_noisy
from zerosearch_core.errors import BackendError, GenerationTimeoutError, QueueFullError, ZeroSearchError
from zerosearch_core.protocol import render_paper
from zerosearch_core.schemas import Document, Label, SearchRequest, SearchResponse, Verification
from zerosearch_core.scoring import contains_answer
from zerosearch_simulator import parsing, prompts
from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, Hit, Retriever
from zerosearch_simulator.cache import Cache
from zerosearch_simulator.curriculum import CurriculumStore, noise_at
from zerosearch_simulator.metrics import Metrics
from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Without the structure enforced: one retry when the model writes fewer than k usable documents.
GENERATION_ATTEMPTS = 2
MIN_NEW_TOKENS = 48
# Fewer tokens than this left in the budget cannot hold another document: the set stays short (`partial`).
MIN_CONTINUE_TOKENS = 24
RETRY_TEMPERATURE = 0.7
MAX_SEED = 2**63


def document_share(max_new_tokens: int) -> int:
    """One document's tokens: `ZS_MAX_NEW_TOKENS` is the budget of five."""
    return max(1, max_new_tokens // 5)


def first_reply_budget(max_new_tokens: int, k: int) -> int:
    """The tokens a reply of k documents may use before the engine continues it."""
    return max(MIN_NEW_TOKENS, document_share(max_new_tokens) * k)


def marker_reserve(max_new_tokens: int) -> int:
    """The tokens the decoder keeps for each document still to come: half a document's share."""
    return document_share(max_new_tokens) // 2


def normalize_query(query: str) -> str:
    return " ".join(query.lower().split())


def cache_key(*, model: str, mode: str, template_version: str, label: Label, query: str,
              question: str | None, answers: list[str] | None, k: int, seed: int, verify: object = None) -> str:
    """Everything that changes the generated text, and nothing else (`verify`: how labels are checked, None: off)."""
    # A JSON list in a fixed order (json's fast path; sort_keys would take its slow one).
    fields = [model, mode, template_version, label, normalize_query(query), question, answers, k, seed,
              verify if answers else None]
    return hashlib.sha256(json.dumps(fields).encode("utf-8")).hexdigest()


def real_cache_key(*, engine: str, query: str, k: int) -> str:
    """A real engine's answer depends on the query and k only: question, answers, seed and noise stay out, so
    every run and every curriculum step shares one entry (and, upstream, one paid query)."""
    return hashlib.sha256(json.dumps(["real", engine, normalize_query(query), k]).encode("utf-8")).hexdigest()


@dataclass(slots=True)
class _Written:
    snippets: list[str]
    continued: int  # rounds that continued a reply which stopped before k documents


@dataclass(slots=True)
class _Found:
    """A cached or generated value, with the per-request facts the response adds to it."""

    value: bytes  # the JSON of {"documents": [...], "partial", "text", "continued", "regenerated"[, "verification"]}
    noise: float
    noisy: bool
    cached: bool
    started: float
    # A real engine's set is cached once for every question and answer: whether it was checked is per request.
    extra: dict[str, Any]

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class SearchEngine:
    """Routes each search to the model (`backend`, which writes documents) or to a real engine (`retriever`, which
    finds them). With only a backend: the simulator. With only a retriever: a real engine behind the same front
    (corpus, upstream); the curriculum is echoed but every set is what the engine found. With both (hybrid):
    useful sets are real, noisy ones are written by the model."""

    def __init__(self, *, settings: Settings, backend: Backend | None, cache: Cache, curriculum: CurriculumStore,
                 metrics: Metrics, retriever: Retriever | None = None, enforce_structure: bool = True) -> None:
        if backend is None and retriever is None:
            raise ValueError("the engine needs a generation backend, a retriever, or both")
        self.settings = settings
        self.backend = backend
        self.retriever = retriever
        self.cache = cache
        self.curriculum = curriculum
        self.metrics = metrics
        #: Continue replies that stop before k documents (off only to measure what it changes).
        self.enforce_structure = enforce_structure
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
        value = found.extra | value
        return SearchResponse.model_construct(
            query=request.query, documents=[Document.model_construct(**d) for d in value["documents"]],
            noisy=found.noisy, noise=found.noise, cached=found.cached, partial=value["partial"],
            model=self.model_id, latency_ms=found.latency_ms(), text=value["text"],
            verification=value.get("verification"), continued=value.get("continued", 0),
            regenerated=value.get("regenerated", 0))

    async def search_json(self, request: SearchRequest) -> bytes:
        """The same answer as `search`, as JSON bytes: the native API's cache-hit path, where building six models
        and serialising them was most of the cost. The per-request fields are serialised, and the cached
        JSON object (documents, partial, text, ...) is spliced in as it is; a test checks both paths agree."""
        found = await self._lookup(request)
        head = pydantic_core.to_json({"query": request.query, "noisy": found.noisy, "noise": found.noise,
                                      "cached": found.cached, "model": self.model_id,
                                      "latency_ms": found.latency_ms()} | found.extra)
        return head[:-1] + b"," + found.value[1:]

    async def _lookup(self, request: SearchRequest) -> _Found:
        started = time.perf_counter()
        noise, noisy, seed = await self.decide(request)
        label: Label = "noisy" if noisy else "useful"
        extra: dict[str, Any] = {}
        real = label == "useful" and self.retriever is not None
        if real:
            # Not verified: a real engine's results are what it found, answer or not.
            extra = {"verification": "skipped" if request.answers else None}
            key = real_cache_key(engine=self.retriever.model_id, query=request.query, k=request.k)

            async def generate() -> bytes:
                return pydantic_core.to_json(await self._retrieve(request))
        else:
            template = prompts.load_template(request.mode)
            key = cache_key(model=self._backend.model_id, mode=request.mode, template_version=template.version,
                            label=label, query=request.query, question=request.question, answers=request.answers,
                            k=request.k, seed=seed,
                            verify=self._verify_key())

            async def generate() -> bytes:
                return pydantic_core.to_json(await self._generate(request, label, seed))

        if request.cache:
            value, cached = await self.cache.get_or_compute(key, generate)
        else:
            value, cached = await generate(), False
        if cached and real and self.retriever is not None:
            self.retriever.on_cache_hit()
        self._results[label].inc()
        return _Found(value=value, noise=noise, noisy=noisy, cached=cached, started=started, extra=extra)

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

    def _verify_key(self) -> tuple[int, bool] | None:
        """The label-check settings that change a generated set, for its cache key."""
        if not self.settings.verify_labels:
            return None
        return self.settings.label_retries, self.settings.anchor_answers

    @property
    def _backend(self) -> Backend:
        assert self.backend is not None, "only called when the engine has a generation backend"
        return self.backend

    async def _bounded(self, work: Awaitable[T], *, what: str, late: str) -> T:
        """The model's or the real engine's work under ZS_TIMEOUT_S: a timeout is a 504, a known failure stays
        what it is, anything else becomes a BackendError (502); every failure is counted."""
        try:
            return await asyncio.wait_for(work, timeout=self.settings.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.backend_errors.inc()
            raise GenerationTimeoutError(f"{late} than ZS_TIMEOUT_S={self.settings.timeout_s:g} s") from None
        except BackendError:
            self.metrics.backend_errors.inc()
            raise
        except Exception as exc:
            self.metrics.backend_errors.inc()
            logger.exception("%s failed", what)
            raise BackendError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    async def _retrieve(self, request: SearchRequest) -> dict[str, Any]:
        """A real engine's result set (the cached value has the same shape as a generated one)."""
        assert self.retriever is not None
        hits = await self._bounded(self.retriever.retrieve(request.query, request.k), what="search",
                                   late="the search engine took longer")
        documents = [_real_document(hit) for hit in hits[: request.k]]
        return {"documents": [d.model_dump() for d in documents], "partial": len(documents) < request.k,
                "text": render_paper(documents), "continued": 0, "regenerated": 0}

    async def _generate(self, request: SearchRequest, label: Label, seed: int) -> dict[str, Any]:
        messages = prompts.build_messages(request.mode, label=label, query=request.query,
                                          question=request.question, answers=request.answers, k=request.k)
        written = await self._write(messages, k=request.k, seed=seed)
        snippets, verification, regenerated = written.snippets, None, 0
        if request.answers:
            if self.settings.verify_labels:
                snippets, verification, regenerated = await self._verify(snippets, request, label, seed)
            else:
                verification = "skipped"
        documents = parsing.to_documents(snippets, query=request.query, label=label)
        if request.answers:
            documents = [d.model_copy(update={"has_answer": contains_answer(d.snippet, request.answers)})
                         for d in documents]
        # The cached value: everything about the answer that does not depend on the request.
        return {"documents": [d.model_dump() for d in documents], "partial": len(documents) < request.k,
                "text": render_paper(documents), "verification": verification,
                "continued": written.continued, "regenerated": regenerated}

    async def _write(self, messages: tuple[dict[str, str], ...], *, k: int, seed: int,
                     anchors: tuple[str, ...] = ()) -> _Written:
        """Up to k snippets from the model, within the generation budget.

        With the structure enforced (the default), a reply that ends before k documents is continued: what was
        written, cleaned and numbered, is given back as the assistant's text with the next marker `Doc {n+1}:`
        appended, and the model writes on from there. Each missing document brings its own share of the budget
        (a fifth of ZS_MAX_NEW_TOKENS), so one long document cannot starve the rest. A continuation that adds
        nothing is followed by a fresh reply, whose new documents are merged. All rounds together stop at three
        times the first reply's budget, and a set is short (`partial`) only when that cannot hold k. The stop
        string `Doc {k+1}:` ends a reply that runs past k, and a reply may not end before it has written `Doc k:`
        and a usable document after it (where the backend can forbid it: transformers), so most short replies
        never happen; nor do most replies that spend the budget on one runaway document: once the budget left is
        down to half a share for each document still to come, the backend ends the current one and writes the
        next marker itself. `anchors` start the first document with given text (the model writes the rest), the next
        one for each round in which that came out too short. Without the structure enforced, a short reply is
        retried whole once and whatever the better attempt wrote is returned."""
        share = document_share(self.settings.max_new_tokens)
        budget = first_reply_budget(self.settings.max_new_tokens, k)
        stop = (parsing.marker(k + 1),)
        markers = tuple(parsing.marker(i) for i in range(1, k + 1))
        reserve = marker_reserve(self.settings.max_new_tokens)
        if not self.enforce_structure:
            return await self._write_with_retries(messages, k=k, seed=seed, budget=budget, stop=stop)
        snippets: list[str] = []
        left = 3 * budget
        temperature = self.settings.temperature
        rounds = 0
        fresh = False  # the next round writes a fresh reply instead of continuing
        # Each round adds a document or has its sampling changed: 2k rounds bound a model that keeps stopping.
        for rounds in range(2 * k):
            continuation = ""
            if anchors and not snippets:  # until the anchored document is written
                continuation = f"{parsing.marker(1)} {anchors[min(rounds, len(anchors) - 1)]}"
            elif rounds and not fresh:
                so_far = render_paper(parsing.to_documents(snippets, query="", label="useful"))
                continuation = (so_far + "\n" if so_far else "") + parsing.marker(len(snippets) + 1)
            wanted = budget if not continuation else max(MIN_CONTINUE_TOKENS, share * (k - len(snippets)))
            generation = await self._run_backend(GenerationRequest(
                messages=messages, max_new_tokens=min(wanted, left), temperature=temperature,
                top_p=self.settings.top_p, seed=seed + rounds, stop=stop, continuation=continuation,
                no_repeat_ngram=self.settings.no_repeat_ngram, end_after=parsing.marker(k),
                end_after_words=parsing.MIN_WORDS, markers=markers, marker_reserve=reserve))
            left -= max(1, generation.completion_tokens)
            text = generation.text
            if continuation and generation.continued:
                text = continuation.rsplit("\n", 1)[-1] + text  # the document the continuation started
            before = len(snippets)
            snippets = parsing.merge_snippets(snippets, parsing.split_snippets(text, k), k)
            if len(snippets) >= k or left < MIN_CONTINUE_TOKENS:
                break
            stalled = len(snippets) == before
            # A continuation that added nothing is followed by a fresh reply (then back to continuing): a small
            # model given its own documents back tends to write one of them again.
            fresh = stalled and bool(continuation)
            if stalled and temperature < RETRY_TEMPERATURE:
                temperature = RETRY_TEMPERATURE  # a (near-)greedy model would stop at the same place again
            logger.info("model wrote %d of %d documents; %s", len(snippets), k,
                        "writing a fresh reply" if fresh else f"continuing from {parsing.marker(len(snippets) + 1)}")
        if rounds:
            self.metrics.continuations.inc(rounds)
        return _Written(snippets, continued=rounds)

    async def _write_with_retries(self, messages: tuple[dict[str, str], ...], *, k: int, seed: int, budget: int,
                                  stop: tuple[str, ...]) -> _Written:
        """The structure not enforced: one retry of the whole reply when it is short (for comparison)."""
        best: list[str] = []
        for attempt in range(GENERATION_ATTEMPTS):
            # Greedy decoding would write the same text again: the retry samples.
            temperature = self.settings.temperature
            if attempt > 0 and temperature == 0:
                temperature = RETRY_TEMPERATURE
            generation = await self._run_backend(GenerationRequest(
                messages=messages, max_new_tokens=budget, temperature=temperature, top_p=self.settings.top_p,
                seed=seed + attempt, stop=stop, no_repeat_ngram=self.settings.no_repeat_ngram))
            snippets = parsing.split_snippets(generation.text, k)
            best = max(best, snippets, key=len)
            if len(snippets) >= k:
                break
            logger.info("model wrote %d of %d usable documents (attempt %d)", len(snippets), k, attempt + 1)
        return _Written(best, continued=0)

    async def _verify(self, snippets: list[str], request: SearchRequest, label: Label,
                      seed: int) -> tuple[list[str], Verification, int]:
        """Label verification: a useful set must have a document that contains a gold answer, a noisy set none.

        A violating document is regenerated alone, as a one-document set with the same label and prompt style,
        at most ZS_LABEL_RETRIES times: for a useful set that contains no answer, the first document (the one a
        reader sees first); for a noisy set, every document that contains one, and their regenerations are told
        the question but not the answer (a model cannot leak what it is not given). A regeneration that
        repeats another document of the set does not count as a repair.

        With ZS_ANCHOR_ANSWERS (the default), the last regeneration of a useful set's document starts it with the
        first gold answer (then, if the model stops right after it, with the question and the answer) and lets
        the model write the rest: a small model given the answer often does not copy it, and a useful set
        without the answer teaches the policy nothing. Such a set says `anchored`."""
        answers = request.answers

        def fits(snippet: str) -> bool:
            return contains_answer(snippet, answers) == (label == "useful")

        if label == "useful":
            slots = [] if any(contains_answer(s, answers) for s in snippets) else [0]
        else:
            slots = [i for i, s in enumerate(snippets) if contains_answer(s, answers)]
        if not slots:
            self.metrics.label_checks.labels(label=label, result="passed").inc()
            return snippets, "passed", 0
        messages = prompts.build_messages(request.mode, label=label, query=request.query,
                                          question=request.question,
                                          answers=answers if label == "useful" else None, k=1)
        spent = 0
        snippets = list(snippets)
        anchors: tuple[str, ...] = ()
        if label == "useful" and self.settings.anchor_answers:
            # The answer alone first; a model that ends the document right after it gets the question in front,
            # as a Q&A page's snippet reads ("What is the currency of Oman? - Omani rials ...").
            anchors = (answers[0], f"{request.question or request.query} - {answers[0]}")
        anchored = False
        retries = self.settings.label_retries

        async def regenerate(slot: int) -> bool:
            nonlocal spent, anchored
            for attempt in range(retries):
                spent += 1
                last = attempt == retries - 1
                written = await self._write(messages, k=1, seed=(seed + 1000 * (slot + 1) + attempt) % MAX_SEED,
                                            anchors=anchors if last else ())
                # Checked against the set as it is now: regenerations run concurrently and may repeat each other.
                others = {s.lower() for i, s in enumerate(snippets) if i != slot}
                if written.snippets and fits(written.snippets[0]) and written.snippets[0].lower() not in others:
                    if slot < len(snippets):
                        snippets[slot] = written.snippets[0]
                    else:
                        snippets.append(written.snippets[0])
                    anchored = anchored or bool(last and anchors)
                    return True
            return False

        repaired = await asyncio.gather(*(regenerate(slot) for slot in slots))
        result: Verification = ("anchored" if anchored else "repaired") if all(repaired) else "failed"
        if result == "failed":
            logger.info("label verification failed for a %s set after %d regenerations", label, spent)
        self.metrics.label_checks.labels(label=label, result=result).inc()
        return snippets, result, spent

    async def _run_backend(self, request: GenerationRequest) -> Generation:
        if self._pending >= self.settings.max_queue:
            raise QueueFullError(f"{self._pending} generations are queued (ZS_MAX_QUEUE={self.settings.max_queue}); "
                                 "retry shortly or add replicas", retry_after_s=1.0)
        self._pending += 1
        self.metrics.queue_depth.set(self._pending)
        try:
            generation = await self._bounded(self._backend.generate(request), what="generation",
                                             late="generation took longer")
        finally:
            self._pending -= 1
            self.metrics.queue_depth.set(self._pending)
        self.metrics.generations.inc()
        self.metrics.generated_tokens.inc(generation.completion_tokens)
        self.metrics.generation_duration.observe(generation.backend_seconds)
        return generation


def _real_document(hit: Hit) -> Document:
    return Document(id=hit.id, title=hit.title, url=hit.url, snippet=" ".join(hit.text.split()), label="useful",
                    source="real")
