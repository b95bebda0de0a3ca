"""`zerosearch serve --backend corpus`: the real engine (bm25s over the Factbook) behind the native API, the
batch endpoint, every dialect and MCP; `hybrid`: useful sets from the corpus, noisy ones from a model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ServeProcess
from zerosearch_core.corpus import BM25Index, load_corpus
from zerosearch_simulator.app import create_app
from zerosearch_simulator.backends.corpus import CorpusRetriever
from zerosearch_simulator.backends.scripted import ScriptedBackend
from zerosearch_simulator.settings import Settings

QUERY = "capital of Kenya"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zs-cache")


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess("--backend", "corpus", env={"ZS_CACHE_DIR": str(cache_dir)}, drop_env=("ZS_REDIS_URL",),
                        startup_s=180, log_prefix="zerosearch-corpus")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def http(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_native_search_answers_from_the_factbook(http: httpx.Client) -> None:
    r = http.post("/v1/search", json={"query": QUERY, "k": 5, "noise": 1.0, "question": "q", "answers": ["x"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"].startswith("bm25:factbook@") and len(body["model"]) == len("bm25:factbook@") + 12
    assert body["noise"] == 1.0 and body["noisy"] is False  # the curriculum is echoed and changes nothing
    top = body["documents"][0]
    assert "Nairobi" in top["snippet"] and top["title"] == "Kenya - Capital - name"
    assert top["url"] == "https://www.cia.gov/the-world-factbook/countries/kenya/"
    assert {(d["source"], d["label"]) for d in body["documents"]} == {("real", "useful")}
    assert top["id"] == "factbook:ke:government/capital/name"
    again = http.post("/v1/search", json={"query": QUERY, "k": 5}).json()
    assert again["cached"] is True and again["documents"] == body["documents"]
    nothing = http.post("/v1/search", json={"query": "xqzzyv wrrrb", "k": 3}).json()
    assert nothing["documents"] == [] and nothing["partial"] is True


def test_batch_and_readyz(http: httpx.Client, server: ServeProcess) -> None:
    r = http.post("/v1/search/batch", json={"requests": [{"query": QUERY, "k": 2},
                                                         {"query": "highest point of Nepal", "k": 1}]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert "Nairobi" in results[0]["documents"][0]["snippet"] and "Everest" in results[1]["documents"][0]["snippet"]
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"].startswith("bm25:factbook@")
    assert server.metric("zerosearch_results_total", 'label="useful"') >= 3


def test_every_dialect_finds_nairobi(http: httpx.Client) -> None:
    retrieve = http.post("/retrieve", json={"queries": [QUERY, "highest point of Nepal"], "topk": 3,
                                            "return_scores": True}).json()["result"]
    assert "Nairobi" in retrieve[0][0]["document"]["contents"] and retrieve[0][0]["score"] > 0
    assert retrieve[0][0]["document"]["contents"].startswith('"Kenya - Capital - name"\n')
    texts = {
        "tavily": http.post("/search", json={"query": QUERY, "max_results": 3},
                            headers={"Authorization": "Bearer t"}).json()["results"][0]["content"],
        "serper": http.post("/search", json={"q": QUERY, "num": 3}).json()["organic"][0]["snippet"],
        "serpapi": http.get("/search.json", params={"q": QUERY, "num": 3}).json()["organic_results"][0]["snippet"],
        "searxng": http.get("/search", params={"q": QUERY, "format": "json"}).json()["results"][0]["content"],
        "brave": http.get("/res/v1/web/search", params={"q": QUERY, "count": 3}).json()["web"]["results"][0][
            "description"],
        "google": http.get("/customsearch/v1", params={"q": QUERY, "num": 3, "cx": "c"}).json()["items"][0]["snippet"],
        "exa": http.post("/search", json={"query": QUERY, "numResults": 3, "contents": {"text": True}},
                         headers={"x-api-key": "k"}).json()["results"][0]["text"],
    }
    assert {name: "Nairobi" in text for name, text in texts.items()} == dict.fromkeys(texts, True)


def test_mcp(http: httpx.Client) -> None:
    r = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                "params": {"name": "web_search", "arguments": {"query": QUERY, "count": 2}}},
                  headers=MCP_HEADERS)
    assert r.status_code == 200, r.text
    text = r.text if not r.headers["content-type"].startswith("application/json") else None
    result = r.json()["result"] if text is None else json.loads(text.split("data: ", 1)[1])["result"]
    payload = json.loads(result["content"][0]["text"])
    assert "Nairobi" in payload["results"][0]["content"] and len(payload["results"]) == 2


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such corpus file"),
    ('{"id": 1, "text": "fine"}\n{"id": 2, "title": "no text here"}\n', ":2: no text"),
])  # every other bad input: tests/unit/test_corpus.py
def test_serve_refuses_a_bad_corpus_at_once(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "corpus.jsonl"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([str(Path(sys.executable).parent / "zerosearch"), "serve", "--backend", "corpus",
                           "--corpus", str(path), "--port", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_serve_a_jsonl_corpus(tmp_path: Path) -> None:
    path = tmp_path / "wiki.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "contents": f'"{t}"\n{x}'}) + "\n" for i, (t, x) in enumerate([
        ("Hamlet", "Hamlet is a tragedy written by William Shakespeare."),
        ("Paris", "Paris is the capital of France."), ("Rome", "Rome is the capital of Italy.")])))
    server = ServeProcess("--backend", "corpus", "--corpus", str(path), env={"ZS_CACHE_DIR": str(tmp_path)},
                          drop_env=("ZS_REDIS_URL",), startup_s=120, log_prefix="zerosearch-corpus-jsonl")
    try:
        r = httpx.post(server.url + "/retrieve", json={"queries": ["who wrote hamlet"], "topk": 10}).json()
        assert r["result"][0][0] == {"id": "0", "contents": '"Hamlet"\nHamlet is a tragedy written by '
                                                             'William Shakespeare.'}
        assert len(r["result"][0]) == 1  # k clamped, passages that match nothing left out
        assert httpx.get(server.url + "/readyz").json()["model"].startswith("bm25:wiki@")
    finally:
        server.stop()


# --- hybrid ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hybrid(cache_dir: Path) -> Iterator[tuple[TestClient, ScriptedBackend]]:
    model = ScriptedBackend()
    retriever = CorpusRetriever(index=BM25Index.open(load_corpus(None), cache_dir))
    with TestClient(create_app(Settings(backend="hybrid", hybrid_backend="scripted"), backend=model,
                               retriever=retriever)) as c:
        yield c, model


def test_hybrid_useful_from_the_corpus_noisy_from_the_model(hybrid: tuple[TestClient, ScriptedBackend]) -> None:
    client, model = hybrid
    useful = client.post("/v1/search", json={"query": QUERY, "k": 3, "noise": 0.0}).json()
    assert useful["noisy"] is False and "Nairobi" in useful["documents"][0]["snippet"]
    assert {d["source"] for d in useful["documents"]} == {"real"}
    assert useful["model"].startswith("bm25:factbook@") and useful["model"].endswith("+scripted")
    assert model.calls == []
    noisy = client.post("/v1/search", json={"query": QUERY, "k": 3, "noise": 1.0}).json()
    assert noisy["noisy"] is True and len(model.calls) == 1
    assert all(d["label"] == "noisy" and d["source"] != "real" for d in noisy["documents"])
    # the draw is the simulator's: about half of many queries at noise 0.5 are noisy
    draws = [client.post("/v1/search", json={"query": f"{QUERY} {i}", "k": 1, "noise": 0.5}).json()["noisy"]
             for i in range(40)]
    assert 8 <= sum(draws) <= 32
    metrics = client.get("/metrics").text
    assert all(f'zerosearch_results_total{{label="{label}"}}' in metrics for label in ("useful", "noisy"))


def test_hybrid_over_http(tmp_path: Path) -> None:
    server = ServeProcess("--backend", "hybrid", env={"ZS_CACHE_DIR": str(tmp_path), "ZS_HYBRID_BACKEND": "scripted"},
                          drop_env=("ZS_REDIS_URL",), startup_s=180, log_prefix="zerosearch-hybrid")
    try:
        useful = httpx.post(server.url + "/v1/search", json={"query": QUERY, "k": 2, "noise": 0.0}).json()
        noisy = httpx.post(server.url + "/v1/search", json={"query": QUERY, "k": 2, "noise": 1.0}).json()
        assert "Nairobi" in useful["documents"][0]["snippet"] and useful["documents"][0]["source"] == "real"
        assert noisy["noisy"] is True and "Nairobi" not in json.dumps(noisy["documents"])
    finally:
        server.stop()
