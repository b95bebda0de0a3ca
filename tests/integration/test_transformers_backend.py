"""The transformers backend with the real bundled model: conversion, dynamic batching, stop, errors.

The first run on a machine converts the bundled GGUF once (about a minute on 2 cores) into the
user's cache directory; later runs reuse it. Generations are kept to a few tokens.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio

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
def batches(backend) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    backend.on_batch = lambda size, tokens: seen.append((size, tokens))
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
    assert backend.model_id == first.model_id == model_store.BUNDLED_MODEL_ID


async def test_single_generation(backend, batches):
    generation = await backend.generate(_request("Paris", max_new_tokens=12))
    assert generation.text.strip()
    assert generation.prompt_tokens > 10
    assert 0 < generation.completion_tokens <= 12
    assert generation.batch_size == 1
    assert generation.backend_seconds > 0
    assert batches == [(1, generation.completion_tokens)]
    assert await backend.check_health()


async def test_concurrent_requests_share_one_batch(backend, batches):
    generations = await asyncio.gather(*(backend.generate(_request(t)) for t in ("cats", "rain", "tea", "jazz")))
    assert [g.batch_size for g in generations] == [4, 4, 4, 4]
    assert batches == [(4, sum(g.completion_tokens for g in generations))]
    assert len({g.backend_seconds for g in generations}) == 1
    assert all(g.text.strip() for g in generations)


async def test_different_sampling_settings_are_not_mixed(backend, batches):
    requests = [_request("cats", temperature=0.0), _request("rain", temperature=0.0),
                _request("tea", max_new_tokens=6, seed=1), _request("jazz", max_new_tokens=6, seed=2)]
    tasks = [asyncio.create_task(backend.generate(r)) for r in requests]
    await asyncio.sleep(0)
    assert backend.queue_depth == 4
    generations = await asyncio.gather(*tasks)
    assert [g.batch_size for g in generations] == [2, 2, 2, 2]
    assert [size for size, _ in batches] == [2, 2]  # the oldest request's settings go first
    assert all(g.completion_tokens <= 6 for g in generations[2:])
    assert backend.queue_depth == 0


async def test_cancelled_request_is_dropped_before_its_batch(backend, batches):
    keep = [asyncio.create_task(backend.generate(_request(t))) for t in ("cats", "rain")]
    dropped = asyncio.create_task(backend.generate(_request("tea")))
    await asyncio.sleep(0)
    dropped.cancel()  # as the engine's timeout would, while the batch is still gathering
    generations = await asyncio.gather(*keep)
    assert [g.batch_size for g in generations] == [2, 2]
    assert [size for size, _ in batches] == [2]
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


async def test_a_failing_batch_fails_its_requests_not_the_worker(backend, monkeypatch):
    def out_of_memory(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend._model, "generate", out_of_memory)
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
    assert other.queue_depth == 1
    await other.shutdown()
    with pytest.raises(BackendError, match="shutting down") as info:
        await waiting
    assert info.value.recoverable
    with pytest.raises(BackendError, match="shutting down"):
        await other.generate(_request("rain"))
    assert not await other.check_health()
