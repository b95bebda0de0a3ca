"""A canned backend for fast tests and demos: writes `Doc i: ...` text derived from the prompt.

It runs no model. Tests that need real generation use the transformers backend with the
bundled model; this one makes the engine, cache and API testable in milliseconds.
"""

from __future__ import annotations

import asyncio
import re

from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest

_QUERY = re.compile(r"Query:\s*(.+)")
_LABEL = re.compile(r"generate five (\w+) documents")


class ScriptedBackend(Backend):
    model_id = "scripted"

    def __init__(self, *, delay_s: float = 0.0, documents: int = 5, reply: str | None = None) -> None:
        self.delay_s = delay_s
        self.documents = documents
        self.reply = reply  # a fixed reply overrides the canned documents (garbage-text tests)
        self.calls: list[GenerationRequest] = []
        self.fail_next = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            from zerosearch_core.errors import BackendError

            self.fail_next -= 1
            raise BackendError("scripted failure")
        if self.reply is not None:
            return Generation(text=self.reply, completion_tokens=len(self.reply.split()))
        prompt = request.messages[-1]["content"]
        query = (m.group(1).strip() if (m := _QUERY.search(prompt)) else "the query")
        label = (m.group(1) if (m := _LABEL.search(prompt)) else "useful")
        text = " ".join(
            f"Doc {i}: {label.capitalize()} document {i} about {query}, written by the scripted backend "
            f"so that tests can check titles, snippets and urls."
            for i in range(1, self.documents + 1)
        )
        return Generation(text=text, prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()),
                          backend_seconds=self.delay_s)
