"""Load and soak: a steady mix of searches held for N minutes against `zerosearch serve` with Redis, and against
two replicas behind nginx (scripts/replicas.sh), watching for errors, latency and leaks.

The mix, per request (closed loop, --concurrency workers): mostly cache hits over a hot set of --hot queries,
--miss-share new queries (a generation each), --batch-share batch calls (`/v1/search/batch` of 8, or Search-R1's
`/retrieve` with 4 queries), spread over the native API and the Tavily, SerpAPI, Serper, Brave, Google, Exa,
SearXNG and Search-R1 dialects.

The scripted backend answers, with ZS_SCRIPTED_DELAY_S (--delay-s) standing in for a generation: the soak
measures the service (HTTP, cache, Redis, queue, memory), and on a small CPU the bundled model would turn the
run into a measure of the model (a few misses a second) instead.

Reported per target: requests, throughput, p50/p95/p99 latency, errors (anything but 200) and 503s from the
queue (documented backpressure, counted apart), and at the end of warm-up and at the end: server RSS, open file
descriptors, Redis used memory and keys. A private redis-server on a free port is started for the run (so its
memory is the soak's alone) unless --redis-url is given (that database is flushed).

    .venv/bin/python bench/soak.py --minutes 10            # the benchmark (docs/reliability.md)
    .venv/bin/python bench/soak.py --minutes 1 --json out.json

Final line: RESULT soak ratio=<largest RSS end / RSS after warm-up over the servers> goal=<=1.10, met when also
no request failed. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import free_port, machine_line, result_line, start_simulator, table  # noqa: E402

RSS_GOAL = 1.10


# -- the mix ------------------------------------------------------------------------------------------

def _native(q: str) -> tuple[str, str, dict]:
    return "POST", "/v1/search", {"json": {"query": q, "k": 5, "noise": 0.3, "seed": 1}}


DIALECTS = {
    "native": _native,
    "tavily": lambda q: ("POST", "/search", {"json": {"query": q, "max_results": 5}}),
    "serpapi": lambda q: ("GET", "/search.json", {"params": {"q": q, "num": 5}}),
    "serper": lambda q: ("POST", "/search", {"json": {"q": q, "num": 5}}),
    "brave": lambda q: ("GET", "/res/v1/web/search", {"params": {"q": q, "count": 5}}),
    "google": lambda q: ("GET", "/customsearch/v1", {"params": {"q": q, "num": 5}}),
    "exa": lambda q: ("POST", "/search", {"json": {"query": q, "numResults": 5}}),
    "searxng": lambda q: ("GET", "/search", {"params": {"q": q, "format": "json"}}),
    "searchr1": lambda q: ("POST", "/retrieve", {"json": {"queries": [q], "topk": 3}}),
}


@dataclass
class Mix:
    hot: list[str]
    miss_share: float
    batch_share: float
    rng: random.Random
    misses: int = 0

    def _query(self) -> str:
        if self.rng.random() < self.miss_share:
            self.misses += 1
            return f"soak miss {os.getpid()} {self.misses} {self.rng.random():.12f}"
        return self.rng.choice(self.hot)

    def next(self) -> tuple[str, str, str, dict]:
        """(kind, method, path, request kwargs)."""
        if self.rng.random() < self.batch_share:
            if self.rng.random() < 0.5:
                items = [{"query": self._query(), "k": 5, "noise": 0.3, "seed": 1} for _ in range(8)]
                return "batch", "POST", "/v1/search/batch", {"json": {"requests": items}}
            return "batch", "POST", "/retrieve", {"json": {"queries": [self._query() for _ in range(4)], "topk": 3}}
        name = self.rng.choice(list(DIALECTS))
        return name, *DIALECTS[name](self._query())


# -- what is watched ----------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def redis_memory(url: str) -> tuple[float, int]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.info("memory")["used_memory"] / (1 << 20), client.dbsize()
    finally:
        client.close()


@dataclass
class Snapshot:
    rss_mb: list[float]
    fds: list[int]
    redis_mb: float
    redis_keys: int


def snapshot(pids: list[int], redis_url: str) -> Snapshot:
    mb, keys = redis_memory(redis_url)
    return Snapshot([round(rss_mb(p), 1) for p in pids], [open_fds(p) for p in pids], round(mb, 2), keys)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # transport errors by type
    by_kind: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # the first few failures, in words


async def hold(url: str, *, seconds: float, concurrency: int, mix: Mix, tally: Tally) -> None:
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def worker() -> None:
            while time.monotonic() < deadline:
                kind, method, path, kwargs = mix.next()
                started = time.perf_counter()
                try:
                    response = await http.request(method, path, **kwargs)
                except httpx.HTTPError as exc:
                    tally.failures[type(exc).__name__] = tally.failures.get(type(exc).__name__, 0) + 1
                    if len(tally.examples) < 5:
                        tally.examples.append(f"{kind} {method} {path} after {time.perf_counter() - started:.3f} s: "
                                              f"{type(exc).__name__}: {exc!r} (cause {exc.__cause__!r})")
                    continue
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
                tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- targets ------------------------------------------------------------------------------------------

class PrivateRedis:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            sys.exit("error: redis-server is not on PATH (apt-get install redis-server), or pass --redis-url")
        self.dir = tempfile.mkdtemp(prefix="zerosearch-soak-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis_memory(self.url)
                return
            except Exception:
                time.sleep(0.05)
        sys.exit("error: the private redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_target(name: str, url: str, pids: list[int], redis_url: str, args: argparse.Namespace) -> dict:
    mix = Mix(hot=[f"soak hot query {i}" for i in range(args.hot)], miss_share=args.miss_share,
              batch_share=args.batch_share, rng=random.Random(args.seed))
    total_s = args.minutes * 60
    warmup_s = min(args.warmup_s, total_s / 4)
    print(f"[{name}] warm-up {warmup_s:.0f} s, then {total_s - warmup_s:.0f} s measured, "
          f"{args.concurrency} workers -> {url}", flush=True)
    warm = Tally()
    asyncio.run(hold(url, seconds=warmup_s, concurrency=args.concurrency, mix=mix, tally=warm))
    start = snapshot(pids, redis_url)
    tally = Tally()
    started = time.monotonic()
    asyncio.run(hold(url, seconds=total_s - warmup_s, concurrency=args.concurrency, mix=mix, tally=tally))
    elapsed = time.monotonic() - started
    end = snapshot(pids, redis_url)
    ok = tally.statuses.get(200, 0)
    backpressure = tally.statuses.get(503, 0)
    errors = sum(n for s, n in tally.statuses.items() if s not in (200, 503)) + sum(tally.failures.values())
    warm_errors = sum(n for s, n in warm.statuses.items() if s not in (200, 503)) + sum(warm.failures.values())
    growth = max(e / s for s, e in zip(start.rss_mb, end.rss_mb, strict=True))
    return {"target": name, "seconds": round(elapsed, 1), "requests": len(tally.latencies) + sum(
        tally.failures.values()), "ok": ok, "backpressure_503": backpressure, "errors": errors,
        "warmup_errors": warm_errors, "statuses": tally.statuses, "failures": tally.failures,
        "failure_examples": warm.examples + tally.examples,
        "by_kind": tally.by_kind, "throughput_rps": round(len(tally.latencies) / elapsed, 1),
        "p50_ms": round(percentile(tally.latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(tally.latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 2),
        "start": start.__dict__, "end": end.__dict__, "rss_growth": round(growth, 4), "misses_sent": mix.misses}


def single(args: argparse.Namespace, redis_url: str) -> dict:
    env = {"ZS_SCRIPTED_DELAY_S": str(args.delay_s)}
    with start_simulator(backend="scripted", redis_url=redis_url, env=env, name="soak") as server:
        return run_target("single", server.url, [server.proc.pid], redis_url, args)


def replicas(args: argparse.Namespace, redis_url: str) -> dict:
    state = Path(tempfile.mkdtemp(prefix="zerosearch-soak-replicas-"))
    script = ROOT / "scripts" / "replicas.sh"
    base = free_port()
    while True:  # two consecutive free ports
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", base + 1))
            break
        except OSError:
            base = free_port()
    env = {**os.environ, "ZS_SCRIPTED_DELAY_S": str(args.delay_s), "VENV": str(Path(sys.executable).parent.parent)}
    start = subprocess.run([str(script), "start", "--replicas", "2", "--port", str(base), "--lb-port",
                            str(free_port()), "--backend", "scripted", "--redis-url", redis_url, "--state-dir",
                            str(state), "--wait", "120", "--", "--log-level", "warning"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    try:
        if start.returncode != 0:
            raise RuntimeError(f"replicas.sh start failed:\n{start.stdout}\n{start.stderr}")
        urls = dict(line.split("=", 1) for line in (state / "urls.env").read_text().split())
        pids = [int((state / f"replica-{i}.pid").read_text()) for i in range(2)]
        result = run_target("2 replicas + nginx", urls["ZS_LB_URL"], pids, redis_url, args)
        log = (state / "nginx-error.log").read_text(errors="replace")
        result["nginx_error_lines"] = sum(1 for line in log.splitlines() if "[error]" in line)
        return result
    finally:
        subprocess.run([str(script), "stop", "--state-dir", str(state)], cwd=ROOT, env=env, capture_output=True,
                       timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each target's run, warm-up included")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="warm-up (at most a quarter of the run)")
    parser.add_argument("--target", choices=["single", "replicas", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--hot", type=int, default=200, help="queries in the hot (cached) set")
    parser.add_argument("--miss-share", type=float, default=0.05, help="share of queries never seen before")
    parser.add_argument("--batch-share", type=float, default=0.1, help="share of batch calls")
    parser.add_argument("--delay-s", type=float, default=0.05, help="ZS_SCRIPTED_DELAY_S: one generation's time")
    parser.add_argument("--redis-url", default=None, help="an existing Redis database (flushed); default: a "
                                                          "private redis-server on a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    print(machine_line())
    results = []
    for target in (["single", "replicas"] if args.target == "both" else [args.target]):
        private = PrivateRedis() if args.redis_url is None else None
        redis_url = private.url if private else args.redis_url
        if private is None:
            import redis

            redis.Redis.from_url(redis_url).flushdb()
        try:
            results.append(single(args, redis_url) if target == "single" else replicas(args, redis_url))
        finally:
            if private:
                private.stop()

    print(table(["target", "s", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "503", "RSS MB start",
                 "RSS MB end", "growth", "fds start", "fds end", "Redis MB start", "Redis MB end", "keys end"],
                [[r["target"], r["seconds"], r["requests"], r["throughput_rps"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
                  r["errors"], r["backpressure_503"], "/".join(map(str, r["start"]["rss_mb"])),
                  "/".join(map(str, r["end"]["rss_mb"])), f"{(r['rss_growth'] - 1) * 100:+.1f}%",
                  "/".join(map(str, r["start"]["fds"])), "/".join(map(str, r["end"]["fds"])),
                  r["start"]["redis_mb"], r["end"]["redis_mb"], r["end"]["redis_keys"]] for r in results]))
    for r in results:
        print(f"[{r['target']}] statuses {r['statuses']} transport failures {r['failures']} mix {r['by_kind']}")
        for example in r["failure_examples"]:
            print(f"[{r['target']}] failed: {example}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()}, "results": results}, indent=1))
    growth = max(r["rss_growth"] for r in results)
    clean = all(r["errors"] == 0 and r["warmup_errors"] == 0 for r in results)
    print(result_line("soak", growth, f"<={RSS_GOAL:.2f} and no errors", growth <= RSS_GOAL and clean))


if __name__ == "__main__":
    main()
