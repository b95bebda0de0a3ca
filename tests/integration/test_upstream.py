"""ZS_BACKEND=upstream over real HTTP: the upstream is a second `zerosearch serve --backend scripted` (its SerpAPI,
Tavily, Brave, Serper, SearXNG, Google, Exa and /retrieve dialects, with ZS_API_KEYS set), or, for the answers a
simulator never gives (429, garbage, a slow answer), a tiny HTTP server of this module. The fronts run in this
process (uvicorn on a loopback port) unless a test needs the command itself."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.conftest import ServeProcess, free_port, serve_in_thread
from zerosearch_simulator.app import create_app
from zerosearch_simulator.settings import Settings

KEY = "sk-upstream-7f3a9c2e51"  # what the upstream accepts; must never show on the front's side
WRONG_KEY = "sk-wrong-0b8d4e6a93"
ODD_KEY = "sk+up/str=eam&c8e1"  # a key that URL-encoding changes: its encoded form must not leak either
APIS = ("serpapi", "tavily", "brave", "serper", "searxng", "google_cse", "exa", "retrieve")
KEYED_APIS = ("serpapi", "tavily", "brave", "serper", "google_cse", "exa")
# The upstream's route for each API (its requests counter is how a test sees what reached it).
ROUTES = {"serpapi": "/search.json", "tavily": "/search", "brave": "/res/v1/web/search", "serper": "/search",
          "searxng": "/search", "google_cse": "/customsearch/v1", "exa": "/search", "retrieve": "/retrieve"}
ZEROSEARCH = Path(sys.executable).parent / "zerosearch"


def metric(url: str, name: str, must_contain: str = "") -> float:
    text = httpx.get(url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if (line.startswith(name + " ") or line.startswith(name + "{")) and must_contain in line)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServeProcess]:
    """The 'real API': a scripted simulator that checks keys as each API does."""
    server = ServeProcess("--backend", "scripted", env={"ZS_LOG_LEVEL": "warning", "ZS_API_KEYS": f"{KEY},{ODD_KEY}"},
                          drop_env=("ZS_REDIS_URL",), log_prefix="zs-upstream")
    yield server
    server.stop()


def upstream_calls(upstream: ServeProcess, route: str) -> float:
    return upstream.metric("zerosearch_requests_total", f'route="{route}"')


class _Misbehaving(BaseHTTPRequestHandler):
    """Answers by the first path segment: /ratelimited (429 + Retry-After), /garbage (200, HTML), /wrongshape
    (200, JSON of another shape), /unavailable (503), /slow (answers after 1.5 s), /echo (400 repeating the
    request line, key included, as a careless API might)."""

    hits: Counter[str] = Counter()

    def _answer(self) -> None:
        mode = self.path.strip("/").split("/", 1)[0]
        self.hits[mode] += 1
        if mode == "slow":
            time.sleep(1.5)
        status, body, headers = {
            "ratelimited": (429, json.dumps({"error": "Your account has run out of searches."}), {"Retry-After": "7"}),
            "garbage": (200, "<html><body>Service temporarily moved</body></html>", {}),
            "wrongshape": (200, json.dumps({"items": "none", "status": "ok"}), {}),
            "unavailable": (503, json.dumps({"error": "maintenance"}), {"Retry-After": "0"}),
            "echo": (400, json.dumps({"error": f"bad request {self.command} {self.path}"}), {}),
        }.get(mode, (200, json.dumps({"search_metadata": {"status": "Success"}, "organic_results": []}), {}))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if mode == "garbage" else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def front(api: str, url: str, *, key: str | None = KEY, **settings: Any) -> Iterator[str]:
    """A front (ZS_BACKEND=upstream) for `api` at `url`, served over HTTP; yields its base URL."""
    fields: dict[str, Any] = {"backend": "upstream", "upstream": api, "upstream_url": url, "upstream_key": key,
                              "upstream_cx": "017576662512468239146:omuauf_lfve", "upstream_retries": 0,
                              "redis_url": None} | settings
    with serve_in_thread(create_app(Settings(**fields)), lifespan="on") as base:
        yield base


def search(base: str, query: str, k: int = 3, **fields: Any) -> httpx.Response:
    return httpx.post(base + "/v1/search", json={"query": query, "k": k, **fields}, timeout=30)


# --- every upstream: the request it gets, the documents its answer becomes --------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_each_upstream_answers_as_real_documents(api: str, upstream: ServeProcess) -> None:
    query = f"who wrote hamlet via {api}"
    before = upstream_calls(upstream, ROUTES[api])
    with front(api, upstream.url, key=KEY if api in KEYED_APIS else None) as base:
        r = search(base, query, k=3, noise=1.0)  # a real engine does not take the noise curriculum
        assert r.status_code == 200, r.text
        body = r.json()
        # The same documents the upstream itself gives for the query (its scripted backend is deterministic).
        direct = httpx.post(upstream.url + "/v1/search", json={"query": query, "k": 3}).json()["documents"]
    assert upstream_calls(upstream, ROUTES[api]) == before + 1  # the API's own route, once
    assert body["model"].startswith(f"upstream:{api}@127.0.0.1:{upstream.port}") and not body["noisy"]
    docs = body["documents"]
    assert [d["snippet"] for d in docs] == [d["snippet"] for d in direct]
    assert all(d["source"] == "real" and d["label"] == "useful" and d["title"] for d in docs)
    if api == "retrieve":  # Search-R1 passages have ids and titles, no URLs
        assert [d["title"] for d in docs] == [d["title"] for d in direct]
        assert [d["id"] for d in docs] == [d["id"] for d in direct]
    else:
        assert [d["url"] for d in docs] == [d["url"] for d in direct]
    assert body["text"].startswith("Doc 1: " + direct[0]["snippet"])


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A real retriever (`--backend corpus`, bm25s over a few passages) as a Search-R1 /retrieve upstream."""
    folder = tmp_path_factory.mktemp("zs-upstream-corpus")
    passages = [("kenya-capital", "Kenya", "Nairobi is the capital and largest city of Kenya."),
                ("peru-capital", "Peru", "Lima is the capital of Peru, on the Pacific coast."),
                ("nile", "Nile", "The Nile flows north through eleven countries into the Mediterranean.")]
    corpus = folder / "passages.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in passages))
    server = ServeProcess("--backend", "corpus", "--corpus", str(corpus),
                          env={"ZS_CACHE_DIR": str(folder), "ZS_LOG_LEVEL": "warning"}, drop_env=("ZS_REDIS_URL",),
                          startup_s=180, log_prefix="zs-upstream-corpus")
    yield server
    server.stop()


def test_a_search_r1_retriever_upstream_keeps_passage_ids_and_titles(corpus_server: ServeProcess) -> None:
    with front("retrieve", corpus_server.url, key=None) as base:
        r = search(base, "capital of kenya", k=2)
    assert r.status_code == 200, r.text
    top = r.json()["documents"][0]
    assert (top["id"], top["title"], top["source"]) == ("kenya-capital", "Kenya", "real")
    assert "Nairobi" in top["snippet"]
    assert upstream_calls(corpus_server, "/retrieve") == 1


def test_dialects_of_the_front_serve_upstream_results(upstream: ServeProcess) -> None:
    """The front's own dialects answer from the upstream too (here: Tavily's API in front of Brave's)."""
    with front("brave", upstream.url) as base:
        r = httpx.post(base + "/search", json={"query": "tallest mountain", "max_results": 2})
        direct = httpx.post(upstream.url + "/v1/search", json={"query": "tallest mountain", "k": 2}).json()
    assert r.status_code == 200
    assert [x["url"] for x in r.json()["results"]] == [d["url"] for d in direct["documents"]]


# --- the cache: each query reaches the upstream once --------------------------------------------------------------


def test_each_query_reaches_the_upstream_once(upstream: ServeProcess) -> None:
    before = upstream_calls(upstream, "/search.json")
    with front("serpapi", upstream.url, upstream_price_per_1k=15.0) as base:
        first = search(base, "capital of kenya", question="What is the capital of Kenya?", answers=["Nairobi"])
        # Noise, step, seed, question and answers stay out of the key: another run, another step, same entry.
        again = [search(base, "Capital of  Kenya", step=s, seed=s, noise=0.3, question="Kenya?") for s in (1, 50)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:  # identical concurrent misses: one upstream call
            together = list(pool.map(lambda _: search(base, "longest river in africa"), range(6)))
        more = search(base, "capital of kenya", k=5)  # another k is another upstream answer
        assert first.status_code == 200 and not first.json()["cached"]
        assert all(r.status_code == 200 and r.json()["cached"] for r in again)
        assert [r.json()["documents"] for r in again] == [first.json()["documents"]] * 2
        assert all(r.status_code == 200 for r in together) and more.status_code == 200
        assert upstream_calls(upstream, "/search.json") == before + 3
        assert metric(base, "zerosearch_upstream_requests_total", 'outcome="ok"') == 3
        assert metric(base, "zerosearch_upstream_cache_savings_total") == 2 + 5
        assert metric(base, "zerosearch_upstream_spend_dollars_total") == pytest.approx(3 * 0.015)
        assert metric(base, "zerosearch_upstream_request_duration_seconds_count") == 3


def test_cache_false_asks_the_upstream_again(upstream: ServeProcess) -> None:
    before = upstream_calls(upstream, "/search.json")
    with front("serpapi", upstream.url) as base:
        assert search(base, "uncached query").status_code == 200
        assert search(base, "uncached query", cache=False).json()["cached"] is False
    assert upstream_calls(upstream, "/search.json") == before + 2


# --- failures -----------------------------------------------------------------------------------------------------


def test_an_upstream_that_is_down_is_502_after_the_retries() -> None:
    with front("serpapi", f"http://127.0.0.1:{free_port()}", upstream_retries=2) as base:
        r = search(base, "anything")
        assert r.status_code == 502
        error = r.json()["error"]
        assert error["code"] == "upstream_error"
        assert "serpapi" in error["message"] and "unreachable" in error["message"] and "3 attempts" in error["message"]
        assert metric(base, "zerosearch_upstream_requests_total", 'outcome="unreachable"') == 3
        assert httpx.get(base + "/healthz").status_code == 200  # the front stays up


@pytest.mark.parametrize("api", KEYED_APIS)
def test_a_refused_key_is_502_naming_the_upstream_and_its_status(api: str, upstream: ServeProcess) -> None:
    status = {"brave": 422, "serper": 403, "google_cse": 400}.get(api, 401)  # each API's own way to say it
    with front(api, upstream.url, key=WRONG_KEY) as base:
        r = search(base, "who painted the mona lisa")
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "upstream_auth_failed"
        assert f"upstream {api}" in error["message"] and f"HTTP {status}" in error["message"]
        assert "ZS_UPSTREAM_KEY" in error["message"] and WRONG_KEY not in r.text
        assert metric(base, "zerosearch_upstream_requests_total", 'outcome="auth_error"') == 1  # not retried


def test_upstream_429_is_passed_on_with_its_retry_after(misbehaving: str) -> None:
    hits = _Misbehaving.hits["ratelimited"]
    with front("serpapi", misbehaving + "/ratelimited", upstream_retries=3) as base:
        r = search(base, "anything")
        assert r.status_code == 429 and r.headers["Retry-After"] == "7"
        assert r.json()["error"]["code"] == "upstream_rate_limited" and "serpapi" in r.json()["error"]["message"]
        # Through a dialect as well (errors keep the native shape on every route).
        r = httpx.get(base + "/search.json", params={"q": "anything else"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert _Misbehaving.hits["ratelimited"] == hits + 2  # never retried: the caller waits as told


@pytest.mark.parametrize("mode", ["garbage", "wrongshape"])
def test_a_malformed_answer_is_502_and_not_cached(mode: str, misbehaving: str) -> None:
    hits = _Misbehaving.hits[mode]
    with front("serpapi", f"{misbehaving}/{mode}") as base:
        for _ in range(2):
            r = search(base, "same query")
            assert r.status_code == 502
            assert r.json()["error"]["code"] == "upstream_bad_response"
            assert "not a serpapi answer" in r.json()["error"]["message"]
        assert metric(base, "zerosearch_upstream_requests_total", 'outcome="malformed"') == 2
    assert _Misbehaving.hits[mode] == hits + 2  # the bad answer was not cached


def test_503_is_retried_then_502(misbehaving: str) -> None:
    hits = _Misbehaving.hits["unavailable"]
    with front("tavily", misbehaving + "/unavailable", upstream_retries=2) as base:
        r = search(base, "anything")
        assert r.status_code == 502 and "HTTP 503" in r.json()["error"]["message"]
    assert _Misbehaving.hits["unavailable"] == hits + 3


def test_a_slow_upstream_times_out_with_504(misbehaving: str) -> None:
    hits = _Misbehaving.hits["slow"]
    with front("serpapi", misbehaving + "/slow", upstream_timeout_s=0.3, upstream_retries=2) as base:
        r = search(base, "anything")
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        assert "ZS_UPSTREAM_TIMEOUT_S=0.3" in r.json()["error"]["message"]
    assert _Misbehaving.hits["slow"] == hits + 1  # it may have been served (and billed): not retried


# --- the daily budget ---------------------------------------------------------------------------------------------


def test_the_budget_is_shared_by_replicas_through_redis(upstream: ServeProcess, redis_url: str) -> None:
    before = upstream_calls(upstream, "/search.json")
    with front("serpapi", upstream.url, redis_url=redis_url, upstream_max_queries=2) as one, \
            front("serpapi", upstream.url, redis_url=redis_url, upstream_max_queries=2) as two:
        assert search(one, "budget query a").status_code == 200
        assert search(two, "budget query b").status_code == 200
        refused = search(one, "budget query c")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "upstream_budget_spent"
        assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600
        assert "ZS_UPSTREAM_MAX_QUERIES" in refused.json()["error"]["message"]
        assert search(two, "budget query a").json()["cached"]  # what is cached still answers
        assert metric(one, "zerosearch_upstream_budget_refused_total") == 1
    assert upstream_calls(upstream, "/search.json") == before + 2


def test_the_budget_without_redis_counts_in_the_process_and_failures_give_back(upstream: ServeProcess) -> None:
    with front("serpapi", f"http://127.0.0.1:{free_port()}", upstream_max_queries=1) as base:
        assert [search(base, f"q{i}").status_code for i in range(3)] == [502] * 3  # no answer, nothing spent
    with front("serpapi", upstream.url, upstream_max_queries=1) as base:
        assert search(base, "in-process budget 1").status_code == 200
        assert search(base, "in-process budget 2").status_code == 429


# --- the key stays secret -----------------------------------------------------------------------------------------


def test_the_key_is_never_in_logs_errors_responses_or_metrics(upstream: ServeProcess, misbehaving: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for api, url, key in (("serpapi", upstream.url, KEY), ("google_cse", upstream.url, KEY),
                          ("serpapi", upstream.url, ODD_KEY), ("serpapi", misbehaving + "/echo", KEY),
                          ("serpapi", misbehaving + "/echo", ODD_KEY), ("serpapi", misbehaving + "/garbage", KEY),
                          ("serpapi", misbehaving + "/ratelimited", KEY),
                          ("serpapi", f"http://127.0.0.1:{free_port()}", KEY)):
        with front(api, url, key=key, upstream_retries=1) as base:
            for r in (search(base, "secret test"), httpx.get(base + "/search.json", params={"q": "secret"}),
                      httpx.post(base + "/v1/search/batch", json={"requests": [{"query": "secret b"}]}),
                      httpx.get(base + "/metrics"), httpx.get(base + "/readyz")):
                seen.append(f"{r.status_code} {r.headers} {r.text}")
    assert any(s.startswith("200") for s in seen) and any(s.startswith("502") for s in seen)
    assert any("bad request GET /echo/search.json" in s for s in seen)  # the upstream echoed the URL...
    assert any("api_key=***" in s for s in seen)  # ...and the front masked the key in it
    assert any("HTTP Request: GET" in r.getMessage() for r in caplog.records)  # httpx logs each URL...
    logged = "\n".join(r.getMessage() for r in caplog.records)
    everything = logged + "\n".join(seen)
    assert sum("api_key=***" in r.getMessage() for r in caplog.records) >= 3  # both keys' request lines, masked
    for secret in (KEY, ODD_KEY, quote(ODD_KEY, safe=""), quote_plus(ODD_KEY), str(httpx.QueryParams(k=ODD_KEY))[2:]):
        assert secret not in everything  # ...without the key, in any form


@pytest.fixture(scope="module")
def served_front(upstream: ServeProcess) -> Iterator[ServeProcess]:
    """`zerosearch serve --backend upstream --upstream serpapi --upstream-url ...`, the key from the environment."""
    server = ServeProcess("--backend", "upstream", "--upstream", "serpapi", "--upstream-url", upstream.url,
                          env={"ZS_UPSTREAM_KEY": KEY, "ZS_LOG_LEVEL": "debug"},
                          drop_env=("ZS_REDIS_URL", "ZS_UPSTREAM_KEY_FILE"), log_prefix="zs-upstream-front")
    yield server
    server.stop()


def test_the_served_front_keeps_the_key_out_of_its_log(served_front: ServeProcess) -> None:
    r = httpx.get(served_front.url + "/search.json", params={"q": "who discovered penicillin", "num": 2})
    assert r.status_code == 200 and len(r.json()["organic_results"]) == 2
    metrics = httpx.get(served_front.url + "/metrics").text
    log = served_front.log.read_text()
    assert "upstream serpapi" in log and "api_key=***" in log  # the request line is logged, masked
    assert KEY not in log and KEY not in metrics and KEY not in r.text


# --- what the other commands get through it ------------------------------------------------------------------------


def test_the_trainers_search_path_is_served_and_paid_once(served_front: ServeProcess, upstream: ServeProcess) -> None:
    """`zerosearch eval/train --search_url FRONT` search through SearchService (POST /v1/search/batch): a second
    run at another step, with the same questions, costs no upstream call."""
    from zerosearch_trainer.rollout import SearchService

    questions = [("capital of france", "Paris"), ("author of hamlet", "Shakespeare")]
    before = upstream_calls(upstream, "/search.json")
    with SearchService(served_front.url, retries=0) as service:
        for step in (0, 7):  # two evaluation runs
            outcomes = service.search_batch([{"query": q, "k": 3, "question": f"What is the {q}?", "answers": [a],
                                              "step": step, "noise": 0.0} for q, a in questions])
            assert all(o.error is None and o.text and o.text.startswith("Doc 1: ") for o in outcomes)
    assert upstream_calls(upstream, "/search.json") == before + 2
    assert served_front.metric("zerosearch_upstream_cache_savings_total") >= 2


# --- start-up mistakes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--upstream", "bing"], {}, "ZS_UPSTREAM"),
    (["--upstream", "serpapi"], {}, "ZS_UPSTREAM=serpapi needs an API key"),
])
def test_start_up_mistakes_exit_with_one_clear_message(args: list[str], env: dict[str, str], says: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZS_")} | env
    done = subprocess.run([str(ZEROSEARCH), "serve", "--backend", "upstream", "--port", str(free_port()), *args],
                          env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert says in " ".join(done.stderr.split()) and "Traceback" not in done.stderr


@pytest.mark.parametrize(("fields", "says"), [
    ({}, "ZS_BACKEND=upstream needs ZS_UPSTREAM: one of serpapi, tavily"),
    ({"upstream": "exa"}, "ZS_UPSTREAM=exa needs an API key (sent as the x-api-key header)"),
    ({"upstream": "google_cse", "upstream_key": KEY}, "ZS_UPSTREAM_CX"),
    ({"upstream": "searxng"}, "ZS_UPSTREAM=searxng has no public address: set ZS_UPSTREAM_URL"),
    ({"upstream": "retrieve", "upstream_url": "ftp://user:pw@host"}, "must be an http:// or https:// URL"),
    ({"upstream": "tavily", "upstream_key_file": "/nonexistent/key"}, "ZS_UPSTREAM_KEY_FILE='/nonexistent/key'"),
])
def test_incomplete_upstream_settings_are_refused(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(backend="upstream", **fields)
    assert says in str(caught.value) and KEY not in str(caught.value) and "pw@" not in str(caught.value)


def test_the_key_can_come_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "upstream_key"
    secret.write_text(KEY + "\n")
    settings = Settings(backend="upstream", upstream="brave", upstream_key_file=str(secret))
    assert settings.upstream_key is not None and settings.upstream_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    with pytest.raises(ValueError, match="not both"):
        Settings(backend="upstream", upstream="brave", upstream_key_file=str(secret), upstream_key="other")
    secret.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        Settings(backend="upstream", upstream="brave", upstream_key_file=str(secret))
