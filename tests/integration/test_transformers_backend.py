"""The transformers backend with the real bundled model: conversion, continuous batching, stop, errors.

The first run on a machine converts the bundled GGUF once (about a minute on 2 cores) into the
user's cache directory; later runs reuse it. Generations are kept to a few tokens.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from zerosearch_core import models as model_store
from zerosearch_core.errors import BackendError
from zerosearch_core.models import cache_dir, resolve_model
from zerosearch_simulator.backends.base import GenerationRequest
from zerosearch_simulator.backends.transformers import TransformersBackend
from zerosearch_simulator.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _settings(**overrides) -> Settings:
    return Settings(backend="transformers", model=None, device="cpu", dtype="auto", **overrides)


def _request(topic: str, max_new_tokens: int = 8, **kwargs) -> GenerationRequest:
    messages = ({"role": "user", "content": f"Write one short sentence about {topic}."},)
    return GenerationRequest(messages=messages, max_new_tokens=max_new_tokens, **kwargs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend():
    backend = TransformersBackend(_settings(max_batch=4, max_wait_ms=50))
    await backend.start()
    yield backend
    await backend.shutdown()


@pytest.fixture
def batches(backend) -> list[int]:
    seen: list[int] = []
    backend.on_batch = seen.append
    yield seen
    backend.on_batch = None


async def test_bundled_checkpoint_is_converted_once_and_reused(backend, monkeypatch):
    def no_second_conversion(gguf, out):
        raise AssertionError("converted again")

    monkeypatch.setattr(model_store, "_convert", no_second_conversion)
    started = time.perf_counter()
    first, second = resolve_model(None), resolve_model("bundled")
    assert time.perf_counter() - started < 1.0
    assert first == second
    path = Path(first.path)
    assert path.parent == cache_dir() / "models"
    assert path.name.startswith("SmolLM2-135M-Instruct-")
    assert (path / "config.json").is_file()
    assert list(path.glob("*.safetensors"))
    assert first.model_id == model_store.BUNDLED_MODEL_ID
    # the backend serves the default: the shipped tuned adapter merged over this same bundled checkpoint
    assert backend.model_id.endswith(f"(adapter over {model_store.BUNDLED_MODEL_ID})"), backend.model_id


def _prompt_ids(backend, request: GenerationRequest) -> list[int]:
    tokenizer = backend._tokenizer
    prompt = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


async def test_single_generation_matches_model_generate(backend, batches):
    """One row through the decode loop gives exactly what `model.generate` gives (greedy), whether its prompt
    was prefilled whole (the first) or from a cached prefix (the second shares the chat template's)."""
    for topic in ("Paris", "London"):
        request = _request(topic, max_new_tokens=12, temperature=0.0)
        generation = await backend.generate(request)
        ids = _prompt_ids(backend, request)
        inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        reference = backend._model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, len(ids):]
        assert generation.text == backend._tokenizer.decode(reference, skip_special_tokens=True)
        assert generation.text.strip()
        assert generation.prompt_tokens == len(ids)
        assert generation.completion_tokens == len(reference)
        assert generation.batch_size == 1 and generation.backend_seconds > 0
    assert batches == [1, 1]
    assert await backend.check_health()


async def test_a_repeated_prompt_is_prefilled_from_its_cached_prefix(backend):
    request = _request("the moon", max_new_tokens=8, temperature=0.0)
    first = await backend.generate(request)
    prefixes = backend._loop.prefixes
    ids = _prompt_ids(backend, request)
    cached, layers = prefixes.lookup(ids)
    assert len(ids) - prefixes.block <= cached < len(ids)
    assert len(layers) == backend._model.config.num_hidden_layers and layers[0][0].shape[2] == cached
    assert (await backend.generate(request)).text == first.text


async def test_concurrent_requests_share_one_batch_and_get_their_solo_text(backend, batches):
    topics = ("cats", "rain", "tea", "jazz")
    # Mixed settings share the batch: every row samples on its own, with its own seed.
    requests = [_request("cats", temperature=0.0), _request("rain", max_new_tokens=6, seed=1),
                _request("tea", seed=2), _request("jazz", temperature=0.0, max_new_tokens=10)]
    together = await asyncio.gather(*(backend.generate(r) for r in requests))
    assert [g.batch_size for g in together] == [4, 4, 4, 4]
    assert batches == [4]
    alone = [await backend.generate(r) for r in requests]
    # The same text alone as in the batch: greedy rows, and sampled rows through their own seeds.
    assert [g.text for g in together] == [g.text for g in alone], topics
    assert together[1].completion_tokens <= 6 and together[3].completion_tokens <= 10


async def test_a_request_joins_a_running_batch_and_leaves_when_done(backend, batches):
    alone = await backend.generate(_request("the history of Rome", max_new_tokens=40, temperature=0.0))
    batches.clear()
    long = asyncio.create_task(backend.generate(_request("the history of Rome", max_new_tokens=40, temperature=0.0)))
    await asyncio.sleep(0.5)  # the long one is decoding by now
    short = await backend.generate(_request("tea", max_new_tokens=3, temperature=0.0))
    assert not long.done()  # the short one did not wait for the long one's batch to end
    joined = await long
    assert short.batch_size == 2 and joined.batch_size == 1
    assert batches == [1, 2]
    assert joined.text == alone.text  # merging another row's cache into the batch changed nothing


async def test_a_row_cancelled_mid_decode_leaves_and_the_others_are_unchanged(backend):
    """Dropping a row (and the cache columns only it used) must not disturb the rows that stay."""
    stays = _request("the history of Rome", max_new_tokens=30, temperature=0.0)
    alone = await backend.generate(stays)
    # The cancelled row has the longer prompt, so its cache columns reach further left than the other's.
    leaves = asyncio.create_task(backend.generate(_request("the long and complicated history of the "
                                                           "Byzantine Empire and its many neighbours",
                                                           max_new_tokens=30, temperature=0.0)))
    kept = asyncio.create_task(backend.generate(stays))
    await asyncio.sleep(0.4)  # both are decoding by now
    leaves.cancel()
    result = await kept
    assert result.batch_size == 2 and result.text == alone.text
    assert leaves.cancelled()


async def test_a_model_whose_cache_cannot_be_merged_batches_what_arrives_together(backend, batches, monkeypatch):
    """Sliding-window caches cannot take rows mid-batch: rows are prefilled together (left-padded), and a
    request that arrives while a batch runs waits for it to end. The texts are still the solo texts."""
    monkeypatch.setattr(backend._loop, "can_merge", False)
    requests = [_request("cats", temperature=0.0), _request("the history of Rome", max_new_tokens=20,
                                                            temperature=0.0)]
    together = await asyncio.gather(*(backend.generate(r) for r in requests))
    assert [g.batch_size for g in together] == [2, 2] and batches == [2]
    first = asyncio.create_task(backend.generate(_request("tea", max_new_tokens=20, temperature=0.0)))
    await asyncio.sleep(0.3)
    late = await backend.generate(_request("jazz", max_new_tokens=3, temperature=0.0))
    assert first.done()  # the late one started only after the running batch ended
    assert late.batch_size == 1 and (await first).batch_size == 1
    monkeypatch.undo()
    assert [(await backend.generate(r)).text for r in requests] == [g.text for g in together]


async def test_cancelled_request_is_dropped(backend, batches):
    keep = [asyncio.create_task(backend.generate(_request(t))) for t in ("cats", "rain")]
    dropped = asyncio.create_task(backend.generate(_request("tea")))
    await asyncio.sleep(0)
    dropped.cancel()  # as the engine's timeout would, while the batch is still gathering
    generations = await asyncio.gather(*keep)
    assert [g.batch_size for g in generations] == [2, 2]
    assert batches == [2]
    with pytest.raises(asyncio.CancelledError):
        await dropped


async def test_stop_cuts_the_text(backend):
    full = await backend.generate(_request("Paris", max_new_tokens=16, temperature=0.0))
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[2]
    cut = await backend.generate(_request("Paris", max_new_tokens=16, temperature=0.0, stop=(stop,)))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.completion_tokens < full.completion_tokens  # generation itself ended at the stop string


async def test_a_failing_batch_fails_its_requests_not_the_loop(backend, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend._model, "forward", out_of_memory)
    results = await asyncio.gather(*(backend.generate(_request(t)) for t in ("cats", "rain")),
                                   return_exceptions=True)
    assert all(isinstance(r, BackendError) and r.recoverable for r in results), results
    assert "out of memory" in str(results[0])
    monkeypatch.undo()
    assert (await backend.generate(_request("tea", max_new_tokens=4))).completion_tokens > 0
    assert await backend.check_health()


async def test_shutdown_fails_waiting_requests(backend):
    # A backend of its own whose batch waits long, so the request is still queued at shutdown.
    other = TransformersBackend(_settings(max_batch=4, max_wait_ms=10_000))
    await other.start()
    waiting = asyncio.create_task(other.generate(_request("cats")))
    await asyncio.sleep(0.05)
    assert other.queue_depth == 1  # the idle loop waits for company before it takes it
    await other.shutdown()
    with pytest.raises(BackendError, match="shutting down") as info:
        await waiting
    assert info.value.recoverable
    with pytest.raises(BackendError, match="shutting down"):
        await other.generate(_request("rain"))
    assert not await other.check_health()


def _new_repeats(before: list[int], new: list[int], n: int) -> list[tuple[int, ...]]:
    """The spans of n tokens that end in `new` and already occurred earlier in before + new."""
    ids = before + new
    spans = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return [span for j, span in enumerate(spans) if j + n > len(before) and span in spans[:j]]


async def test_no_repeat_ngram_keeps_a_reply_from_repeating_itself(backend):
    """A reply that has written one sentence twice goes on repeating it (greedy); with no_repeat_ngram it cannot
    repeat a span of that many tokens of the reply, continuation included, while the prompt (which holds the
    sentence) may still be copied."""
    sentence = "The river runs to the sea."
    messages = ({"role": "user", "content": f"Repeat this sentence five times, one per line: {sentence}"},)
    tokenizer = backend._tokenizer

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def request(**kwargs) -> GenerationRequest:
        return GenerationRequest(messages=messages, max_new_tokens=32, temperature=0.0, **kwargs)

    twice = f"{sentence}\n{sentence}\n"
    free = await backend.generate(request(continuation=twice))
    assert sentence in free.text, free.text  # the model does repeat itself when let
    banned = await backend.generate(request(continuation=twice, no_repeat_ngram=4))
    assert banned.text.strip(), "the ban left the model nothing to write"
    assert _new_repeats(ids(twice), ids(free.text), 4)  # the check below can fail
    assert not _new_repeats(ids(twice), ids(banned.text), 4), banned.text
    assert sentence not in banned.text, banned.text
    first = await backend.generate(request(no_repeat_ngram=4))
    assert first.text.startswith("The river runs to the sea"), first.text  # copying the prompt is allowed


async def test_end_after_keeps_a_reply_going_until_it_holds_the_text(backend):
    """A short greedy reply ends by itself inside its budget; with end_after it cannot end before it has written
    that text (here one it will not write, so it runs to the budget), and once it holds the text it ends as
    before."""
    messages = ({"role": "user", "content": "Reply with the number 7 and nothing else."},)

    def request(**kwargs) -> GenerationRequest:
        return GenerationRequest(messages=messages, max_new_tokens=40, temperature=0.0, **kwargs)

    free = await backend.generate(request())
    assert free.completion_tokens < 40, free.text  # ended by itself
    held = await backend.generate(request(end_after="Doc 9:"))
    assert held.completion_tokens == 40 or "Doc 9:" in held.text, held
    assert held.text.startswith(free.text.rstrip()), (free.text, held.text)  # the same text until it would end
    # once the reply holds the text (a word it writes early), it ends where it would have
    word = free.text.split()[1]
    assert (await backend.generate(request(end_after=word))).text == free.text


async def test_marker_reserve_ends_a_runaway_document_and_writes_the_next_markers(backend):
    """A greedy model counting on never starts a second document by itself; with markers and a reserve, the
    decoder ends the document when the budget left is the reserve of those to come, and writes their markers."""
    messages = ({"role": "user", "content": "Count from 1 to 200, separated by commas."},)
    markers = ("Doc 1:", "Doc 2:", "Doc 3:")

    def request(**kwargs) -> GenerationRequest:
        return GenerationRequest(messages=messages, max_new_tokens=80, temperature=0.0, continuation="Doc 1: 1, 2, 3,",
                                 end_after_words=4, **kwargs)

    free = await backend.generate(request())
    assert "Doc 2:" not in free.text, free.text  # the check below can fail: left alone, one document runs on
    cut = await backend.generate(request(markers=markers, marker_reserve=20))
    assert cut.completion_tokens <= 80
    first, _, rest = cut.text.partition("\nDoc 2:")
    assert rest, cut.text
    assert free.text.startswith(first), (free.text, cut.text)  # the same text until the marker was due
    second, _, third = rest.partition("\nDoc 3:")
    assert len(second.split()) >= 4 and third.strip(), cut.text  # each document usable before the next marker
