"""What answers a search, behind two interfaces (base.py): a generation Backend writes documents (transformers,
vllm, openai, scripted); a Retriever finds them (corpus, upstream). Each is imported only when chosen, so the
service never imports vllm, torch or bm25s unless configured to use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, Hit, Retriever

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

__all__ = ["Backend", "Generation", "GenerationRequest", "Hit", "Retriever", "build_backend", "build_retriever"]

#: The real engines: they answer from a retriever, with no model (hybrid has both).
REAL_ENGINES = ("corpus", "upstream")


def build_backend(settings: Settings) -> Backend | None:
    """The model that writes documents; None for a real engine alone."""
    name = settings.hybrid_backend if settings.backend == "hybrid" else settings.backend
    if name in REAL_ENGINES:
        return None
    if name == "transformers":
        from zerosearch_simulator.backends.transformers import TransformersBackend

        return TransformersBackend(settings)
    if name == "scripted":
        from zerosearch_simulator.backends.scripted import ScriptedBackend

        return ScriptedBackend(delay_s=settings.scripted_delay_s)
    if name == "vllm":
        from zerosearch_simulator.backends.vllm import VLLMBackend

        return VLLMBackend(settings)
    if name == "openai":
        from zerosearch_simulator.backends.openai import OpenAIBackend

        return OpenAIBackend(settings)
    raise ValueError(f"unknown backend {name!r}")


def build_retriever(settings: Settings) -> Retriever | None:
    """The real engine that finds documents; None for a simulator alone."""
    if settings.backend in ("corpus", "hybrid"):
        from zerosearch_simulator.backends.corpus import CorpusRetriever

        return CorpusRetriever(settings)
    if settings.backend == "upstream":
        from zerosearch_simulator.backends.upstream import UpstreamRetriever

        return UpstreamRetriever(settings)
    return None
