"""`zerosearch serve` with the bundled SmolLM2 model, real Redis and real HTTP: the CPU default end to end."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import PrivateRedis, ServeProcess, free_port

pytestmark = pytest.mark.slow
on_module_loop = pytest.mark.asyncio(loop_scope="module")
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 600  # the first start converts the bundled GGUF into a checkpoint
SLOW_S = 900  # searches whose sets may be continued and re-checked: ZS_TIMEOUT_S on a loaded 2-core machine


class Server(ServeProcess):
    def __init__(self, redis_url: str, **env: str) -> None:
        # 200 tokens for five documents -> 80 for k=2; a generous deadline: a loaded 2-core machine is slow.
        super().__init__("--redis-url", redis_url, startup_s=STARTUP_TIMEOUT_S,
                         env={"ZS_MAX_NEW_TOKENS": "200", "ZS_MAX_BATCH": "8", "ZS_MAX_WAIT_MS": "150",
                              "ZS_TEMPERATURE": "0.7", "ZS_TIMEOUT_S": "900", "ZS_LOG_LEVEL": "info"} | env)


@pytest.fixture(scope="module")
def redis_server():
    server = PrivateRedis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(redis_server):
    srv = Server(redis_server.url)
    yield srv
    srv.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
        yield client


@on_module_loop
async def test_real_model_answers_with_k_documents(http, server):
    r = await http.post("/v1/search", json={"query": "capital of France", "k": 3, "noise": 0,
                                            "question": "What is the capital of France?", "answers": ["Paris"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "SmolLM2" in body["model"]
    # The structure is enforced: a reply that stops early is continued, so the untuned model gives k.
    assert len(body["documents"]) == 3 and not body["partial"]
    assert body["verification"] in ("passed", "repaired", "failed")
    for doc in body["documents"]:
        assert doc["label"] == "useful" and doc["url"].startswith("https://") and ".example/" in doc["url"]
        assert len(doc["snippet"].split()) >= 4 and doc["title"]
    assert body["text"].startswith("Doc 1: ")
    again = (await http.post("/v1/search", json={"query": "capital of  france", "k": 3, "noise": 0,
                                                 "question": "What is the capital of France?",
                                                 "answers": ["Paris"]})).json()
    assert again["cached"] and again["documents"] == body["documents"]


@on_module_loop
async def test_results_live_in_redis(http, redis_server):
    import redis

    await http.post("/v1/search", json={"query": "largest ocean", "k": 2, "noise": 0})
    assert redis.Redis.from_url(redis_server.url).keys("zerosearch:v2:doc:*")
    assert (await http.get("/readyz")).json()["cache"] == "redis"


@on_module_loop
async def test_concurrent_misses_are_batched(http, server):
    batches_before = server.metric("zerosearch_batch_size_count")
    generations_before = server.metric("zerosearch_generations_total")
    queries = [f"history of the {thing}" for thing in ("bicycle", "telescope", "printing press", "compass")]
    rs = await asyncio.gather(*(http.post("/v1/search", json={"query": q, "k": 2, "noise": 0}) for q in queries))
    assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
    generations = server.metric("zerosearch_generations_total") - generations_before
    batches = server.metric("zerosearch_batch_size_count") - batches_before
    assert generations >= 4
    assert batches < generations  # several generations shared a batch


@on_module_loop
async def test_identical_concurrent_misses_generate_once(http, server):
    before = server.metric("zerosearch_generations_total")
    body = {"query": "who invented the telephone", "k": 2, "noise": 0, "seed": 7}
    rs = await asyncio.gather(*(http.post("/v1/search", json=body) for _ in range(16)))
    assert [r.status_code for r in rs] == [200] * 16, rs[0].text
    assert sum(not r.json()["cached"] for r in rs) == 1
    # one search = one generation, and up to k more when the model stopped early and was continued
    assert 1 <= server.metric("zerosearch_generations_total") - before <= 3


@on_module_loop
@pytest.mark.timeout(SLOW_S + 300)  # its searches may take SLOW_S each (concurrently): above the suite's 600 s
async def test_five_documents_and_verified_labels_from_the_default_model(http, server):
    """The sft prompt with question and answer, k = 5: both sets have five documents, or say `partial` only after
    the engine continued the reply from the next marker (the budget ran out: this server's is 200 tokens); the
    label check either holds or says it failed; a noisy set that passed or was repaired leaks no answer."""
    question, answers = "In which country is Chichen Itza?", ["Mexico"]
    checks_before = server.metric("zerosearch_label_checks_total")
    rs = await asyncio.gather(*(http.post("/v1/search", json={
        "query": question, "question": question, "answers": answers, "k": 5, "noise": noise, "seed": 3,
        "cache": False}, timeout=SLOW_S) for noise in (0.0, 1.0)))
    useful, noisy = (r.json() for r in rs)
    for body in (useful, noisy):
        full = len(body["documents"]) == 5 and not body["partial"]
        assert full or (body["partial"] and body["continued"] >= 1 and len(body["documents"]) >= 3), body
        assert body["regenerated"] <= 5 * 2  # ZS_LABEL_RETRIES per violating document
        assert all(isinstance(d["has_answer"], bool) for d in body["documents"])
    assert not useful["noisy"] and noisy["noisy"]
    if useful["verification"] != "failed":
        assert any(d["has_answer"] for d in useful["documents"])
    if noisy["verification"] != "failed":
        assert not any(d["has_answer"] for d in noisy["documents"])
    assert server.metric("zerosearch_label_checks_total") - checks_before == 2


@on_module_loop
@pytest.mark.timeout(3 * SLOW_S)  # three searches in turn, each allowed SLOW_S
async def test_dialect_clients_asking_for_k_results_get_k(http):
    """Drop-in clients ask for 3 to 5 results: the default model gives that many."""
    tavily = await http.post("/search", json={"query": "history of the bicycle", "max_results": 4}, timeout=SLOW_S)
    assert tavily.status_code == 200, tavily.text
    assert len(tavily.json()["results"]) == 4
    serper = await http.post("/search", json={"q": "history of the telescope", "num": 3}, timeout=SLOW_S)
    assert serper.status_code == 200, serper.text
    assert len(serper.json()["organic"]) == 3
    retrieve = await http.post("/retrieve", json={"queries": ["history of the compass"], "topk": 5},
                               timeout=SLOW_S)
    assert retrieve.status_code == 200, retrieve.text
    assert [len(docs) for docs in retrieve.json()["result"]] == [5]


BAD_BODIES = [b'{"query": ""}', b'{"query": "a\\u0000b"}', b'{"query": "q", "k": 99}', b'{"query": "q", "noise": "x"}',
              b"\xff\xfe\x00", b"{", b'{"query": "q", "mode": 1}']


@on_module_loop
@pytest.mark.parametrize("content", BAD_BODIES)
async def test_bad_input_over_http_is_4xx(http, content):
    r = await http.post("/v1/search", content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    assert set(r.json()["error"]) == {"code", "message", "field"}


def test_search_cli_prints_documents(server):
    out = subprocess.run([str(VENV_BIN / "zerosearch"), "search", "capital of France", "-k", "3", "--noise", "0",
                          "--question", "What is the capital of France?", "--answer", "Paris",
                          "--url", f"http://127.0.0.1:{free_port()},{server.url}", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["cached"] and body["documents"]  # same request as the first test: served from Redis


@on_module_loop
async def test_redis_loss_mid_run_keeps_answering(http, server, redis_server):
    redis_server.stop()
    try:
        r = await http.post("/v1/search", json={"query": "tallest building", "k": 2, "noise": 0})
        assert r.status_code == 200 and not r.json()["cached"]
        assert (await http.get("/readyz")).json()["status"] == "degraded"
        assert server.metric("zerosearch_cache_errors_total") >= 1
    finally:
        redis_server.start()
    await asyncio.sleep(1.2)
    assert (await http.get("/readyz")).json()["status"] == "ready"


def test_graceful_shutdown_finishes_in_flight_requests(redis_server):
    srv = Server(redis_server.url)
    with httpx.Client(base_url=srv.url, timeout=300) as client:
        import threading

        result = {}

        def slow_search():
            result["response"] = client.post("/v1/search", json={"query": "longest river", "k": 3, "cache": False})

        thread = threading.Thread(target=slow_search)
        thread.start()
        time.sleep(1.0)  # the generation is running
        srv.proc.send_signal(signal.SIGTERM)
        thread.join(120)
    assert result["response"].status_code == 200
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete: exit by that signal is the clean exit.
    assert srv.proc.wait(60) in (0, -signal.SIGTERM)
    assert '"stopped"' in srv.log.read_text()
