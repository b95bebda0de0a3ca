"""A canned backend for fast tests and demos: writes `Doc i: ...` text derived from the prompt.

It runs no model. Tests that need real generation use the transformers backend with the
bundled model; this one makes the engine, cache and API testable in milliseconds.

When the prompt names a gold answer, the first document of a useful reply mentions it and no other document
does, so a set has a document that contains the answer and one that does not. Directives in the query make it
misbehave the way small models do, deterministically:

- `[short N]`: each reply stops after N documents (a model that ends early);
- `[leak]`: every document mentions the gold answer, whatever the label;
- `[hide]`: no document mentions it; `[hide N]`: not in the first N replies to this query;
- `[repeat]`: a continuation repeats the document before it (a model caught in a loop), and each fresh reply
  after the first to this query names its number, so that its documents are new.

A request that continues an assistant message (`continuation` ending in `Doc n:`) gets the rest of document n
and the documents after it. A one-document request (a label regeneration) gets a document that names its seed,
so that regenerations differ from each other.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, cut_at_stop

_QUERY = re.compile(r"Query:\s*(.+)")
_LABEL = re.compile(r"generate \w+ (\w+) documents")
_ANSWER = re.compile(r"whose answer is (.+?)\.\n")
_SHORT = re.compile(r"\[short (\d+)\]")
_HIDE = re.compile(r"\[hide(?: (\d+))?\]")
_LAST_MARKER = re.compile(r"Doc (\d+):\s*$")


class ScriptedBackend(Backend):
    model_id = "scripted"

    def __init__(self, *, delay_s: float = 0.0, documents: int = 5, reply: str | None = None) -> None:
        self.delay_s = delay_s
        self.documents = documents
        self.reply = reply  # a fixed reply overrides the canned documents (garbage-text tests)
        self.calls: list[GenerationRequest] = []
        self.fail_next = 0
        self._replies: Counter[str] = Counter()  # replies written per query (for `[hide N]`)

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
        named = _ANSWER.findall(prompt)  # the last one: the few-shot prompt names its examples' answers first
        answer = named[-1] if named else None
        seen = self._replies[query]
        self._replies[query] += 1
        if (hide := _HIDE.search(query)) and (hide.group(1) is None or seen < int(hide.group(1))):
            answer = None
        leak = "[leak]" in query
        if "[repeat]" in query and request.continuation:
            previous = request.continuation.rsplit("\n", 2)[-2] if "\n" in request.continuation else ""
            text = " " + previous.split(":", 1)[-1].strip()
            return Generation(text=text, completion_tokens=len(text.split()))
        reply = f", reply {seen + 1}," if "[repeat]" in query and seen else ""
        count = int(m.group(1)) if (m := _SHORT.search(query)) else self.documents
        first = int(m.group(1)) if (m := _LAST_MARKER.search(request.continuation)) else 1

        def body(i: int) -> str:
            name = f"{label.capitalize()} document {i}{reply}"
            if request.stop == ("Doc 2:",):
                name += f" (seed {request.seed})"
            text = (f"{name} about {query}, written by the scripted backend so that "
                    "tests can check titles, snippets and urls.")
            if answer and (leak or (label == "useful" and i == 1)):
                text += f" It says the answer is {answer}."
            return text

        parts = [body(first)] + [f"Doc {i}: {body(i)}" for i in range(first + 1, first + count)]
        text = " ".join(parts) if request.continuation else f"Doc {first}: " + " ".join(parts)
        if request.continuation:
            text = " " + text
        text = cut_at_stop(text, request.stop)
        return Generation(text=text, prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()),
                          backend_seconds=self.delay_s)
