"""Generation backends behind one interface (base.Backend). Each is imported only when chosen,
so the service never imports vllm or torch unless configured to use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

__all__ = ["Backend", "Generation", "GenerationRequest", "build_backend"]


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "transformers":
        from zerosearch_simulator.backends.transformers import TransformersBackend

        return TransformersBackend(settings)
    if settings.backend == "scripted":
        from zerosearch_simulator.backends.scripted import ScriptedBackend

        return ScriptedBackend()
    if settings.backend == "vllm":
        from zerosearch_simulator.backends.vllm import VLLMBackend

        return VLLMBackend(settings)
    if settings.backend == "openai":
        from zerosearch_simulator.backends.openai import OpenAIBackend

        return OpenAIBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")
