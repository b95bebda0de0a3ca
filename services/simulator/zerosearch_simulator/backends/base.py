"""The interface every generation backend implements.

Shaped after async engines (vLLM's EngineClient): the engine calls `generate` once per
search, concurrently; batching is the backend's business (the transformers backend and vLLM
both batch continuously; an OpenAI-compatible server does whatever it does).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: chat messages plus sampling settings.

    `continuation` is text the assistant has already written: the backend continues it (after the chat
    template's assistant header) instead of starting the reply, and returns only what it adds. The engine uses it
    to enforce the `Doc i:` structure: when a reply stops before k documents, it writes `Doc {n+1}:` and asks
    for the rest. `no_repeat_ngram` (n > 0): the reply, continuation included, never repeats a span of n
    tokens it has already written. `end_after`: the reply may not end (end of sequence) before it holds this text
    followed by `end_after_words` words; the engine passes `Doc k:` and the words a document needs, so that a
    model cannot stop one document short. `markers` (the k markers in order) with `marker_reserve` (n > 0): once
    the budget left would hold the documents still to come at no more than n tokens each, the document being
    written is ended (as soon as it holds `end_after_words` words) and the next marker written for the model,
    so that one runaway document cannot spend the budget of the rest. Backends that cannot do these three ignore
    them."""

    messages: tuple[dict[str, str], ...]
    max_new_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    continuation: str = ""
    no_repeat_ngram: int = 0
    end_after: str = ""
    end_after_words: int = 0
    markers: tuple[str, ...] = ()
    marker_reserve: int = 0


def chat_prompt(tokenizer: Any, request: GenerationRequest) -> str:
    """The prompt text a local model continues: the chat template with its assistant header, then whatever the
    assistant already wrote (the template's own `continue_final_message` may trim or close the message; this
    keeps the text exactly as written)."""
    text = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    return text + request.continuation


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the first stop string (backends stop at one, but may leave it, or part of what follows)."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(positions)] if positions else text


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Wall time the backend itself spent on the batch holding this request (service-overhead benchmark).
    backend_seconds: float = 0.0
    batch_size: int = 1
    # False when the backend could not continue `GenerationRequest.continuation` and wrote a fresh reply instead
    # (a server that refuses assistant prefills): the engine then merges the documents rather than appending.
    continued: bool = True
    extra: dict[str, object] = field(default_factory=dict)


class Backend(abc.ABC):
    """Async generation backend (writes documents). Implementations: transformers, vllm, openai, scripted."""

    #: Model id reported in responses and part of the cache key.
    model_id: str = "unknown"
    #: Called with the number of rows decoding together each time a batch forms or grows; the app wires it to
    #: the batch-size histogram. Backends whose batches form out of sight (a remote server) never call it.
    on_batch: Callable[[int], None] | None = None

    async def start(self) -> None:
        """Load the model / connect. Called once in the app's lifespan before serving."""

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate one completion. May raise BackendError."""

    async def check_health(self) -> bool:
        return True

    async def shutdown(self) -> None:
        """Release the model / connections. Called once when the app stops."""

    @property
    def queue_depth(self) -> int:
        """Generations waiting for a batch slot (for the queue-depth gauge)."""
        return 0


@dataclass(frozen=True)
class Hit:
    """One result a real engine found: a passage of a corpus, or an organic result of a real search API."""

    id: str
    title: str
    url: str
    text: str
    score: float = 0.0


class Retriever(abc.ABC):
    """A real search engine behind the simulator's front: it finds documents and writes none.

    Implementations: corpus (bm25s over local passages), upstream (a real search API, cached). The engine asks
    it for the useful result sets (all of them for `ZS_BACKEND=corpus`; the useful ones for `hybrid`). A
    real engine does not take the noise curriculum: it returns what it finds.
    """

    #: Engine id reported in responses and part of the cache key (for a corpus: its content hash).
    model_id: str = "unknown"

    def bind_metrics(self, metrics: Any) -> None:
        """Called once by the app, before `start`, with its Metrics (for engines that report their own)."""

    def on_cache_hit(self) -> None:
        """A search this engine would have answered came from the cache instead (upstream: a query not paid)."""

    async def start(self) -> None:
        """Load the index / open connections. Called once in the app's lifespan before serving."""

    @abc.abstractmethod
    async def retrieve(self, query: str, k: int) -> list[Hit]:
        """Up to k results for the query, best first; an empty list when nothing matches. May raise
        BackendError (recoverable when a retry may succeed)."""

    async def check_health(self) -> bool:
        return True

    async def shutdown(self) -> None:
        """Release the index / connections. Called once when the app stops."""
