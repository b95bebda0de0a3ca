"""Cache-hit throughput of POST /v1/search vs a bare FastAPI endpoint doing one Redis GET.

A: `zerosearch serve --backend scripted --redis-url redis://127.0.0.1:6379/14`, warmed so that the request
   is a cache hit (the body sends `noise`, so no curriculum read either).
B: bench/bare_redis_app.py: one POST endpoint, one Redis GET of a fixed key holding A's response bytes.
Both: uvicorn, 1 worker, log level warning, no access log. Load: wrk (POST body from a small Lua script),
A and B alternated --reps times each; the median requests/s of each side gives ratio = A / B (goal >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import (  # noqa: E402
    DEFAULT_REDIS_URL,
    flush_redis,
    machine_line,
    median,
    result_line,
    start_bare_app,
    start_simulator,
    table,
)

GOAL = 0.8
BARE_KEY = "bench:bare:value"
BODY = {"query": "history of the printing press", "k": 5, "noise": 0.0, "seed": 1}


def redis_mget_calls(url: str) -> int:
    import redis

    with redis.Redis.from_url(url) as r:
        return int(r.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))


def run_wrk(url: str, body: str, *, threads: int, connections: int, duration_s: float) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx + socket errors) from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n'
                     'wrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(body)}\n")
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "-s", script.name,
                              url + "/v1/search"], capture_output=True, text=True, check=True).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return rps, requests, errors


def run_python(url: str, body: str, *, connections: int, duration_s: float) -> tuple[float, int, int]:
    """Fallback load generator (asyncio + httpx): the client, not the server, may be the bottleneck."""

    async def main() -> tuple[float, int, int]:
        done = errors = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            deadline = time.perf_counter() + duration_s

            async def worker() -> None:
                nonlocal done, errors
                while time.perf_counter() < deadline:
                    r = await client.post("/v1/search", content=body, headers={"content-type": "application/json"})
                    done += 1
                    errors += r.status_code != 200

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return done / (time.perf_counter() - started), done, errors

    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis database to use; FLUSHED first "
                        "(default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each side, alternated (default: 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default: 5)")
    parser.add_argument("--connections", type=int, default=16, help="open connections (default: 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default: 1)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator; auto: wrk if installed, else Python (default: auto)")
    args = parser.parse_args()

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if client == "python":
        print("WARNING: using the Python asyncio/httpx load generator (wrk not used): the client may be the "
              "bottleneck, so the ratio understates the server's own throughput difference.", flush=True)

    def load(url: str, body: str, seconds: float) -> tuple[float, int, int]:
        if client == "wrk":
            return run_wrk(url, body, threads=args.threads, connections=args.connections, duration_s=seconds)
        return run_python(url, body, connections=args.connections, duration_s=seconds)

    print(machine_line())
    flush_redis(args.redis_url)
    body = json.dumps(BODY)
    sim = start_simulator(backend="scripted", redis_url=args.redis_url, name="cache-hit-sim")
    bare = None
    try:
        first = httpx.post(sim.url + "/v1/search", content=body, headers={"content-type": "application/json"})
        first.raise_for_status()
        warm = httpx.post(sim.url + "/v1/search", content=body, headers={"content-type": "application/json"})
        if not warm.json().get("cached"):
            raise RuntimeError(f"the warmed request is not a cache hit: {warm.text[:200]}")
        # The baseline returns the simulator's own response bytes: same body size on the wire.
        import redis

        r = redis.Redis.from_url(args.redis_url)
        r.set(BARE_KEY, warm.content)
        r.close()
        bare = start_bare_app(redis_url=args.redis_url, key=BARE_KEY, name="cache-hit-bare")
        check = httpx.post(bare.url + "/v1/search", content=body, headers={"content-type": "application/json"})
        check.raise_for_status()
        print(f"response body: simulator {len(warm.content)} bytes, bare {len(check.content)} bytes; "
              f"load: {client} -t{args.threads} -c{args.connections} -d{args.duration:g}s, {args.reps} runs each, "
              "alternated; both servers: uvicorn, 1 worker, log level warning, no access log", flush=True)

        mgets_before = redis_mget_calls(args.redis_url)
        hits_before = sim.metric("zerosearch_cache_requests_total", {"result": "hit"})
        misses_before = sim.metric("zerosearch_cache_requests_total", {"result": "miss"})
        gens_before = sim.metric("zerosearch_generations_total")
        # Warm-up of both (connections, code paths), not measured.
        load(sim.url, body, 1.0)
        load(bare.url, body, 1.0)
        rows = []
        sim_rps: list[float] = []
        bare_rps: list[float] = []
        sim_requests = 0
        for rep in range(1, args.reps + 1):
            # Alternate which side goes first so a drifting machine load does not favour one side.
            order = [("simulator", sim), ("bare", bare)] if rep % 2 else [("bare", bare), ("simulator", sim)]
            for name, server in order:
                rps, requests, errors = load(server.url, body, args.duration)
                rows.append((rep, name, rps, requests, errors))
                (sim_rps if name == "simulator" else bare_rps).append(rps)
                if name == "simulator":
                    sim_requests += requests
                print(f"  run {rep} {name:9s} {rps:9.1f} req/s ({requests} requests, {errors} errors)", flush=True)
        text = sim.metrics_text()
        hits = sim.metric("zerosearch_cache_requests_total", {"result": "hit"}, text) - hits_before
        misses = sim.metric("zerosearch_cache_requests_total", {"result": "miss"}, text) - misses_before
        gens = sim.metric("zerosearch_generations_total", text=text) - gens_before
        mgets = redis_mget_calls(args.redis_url) - mgets_before
    finally:
        sim.stop()
        if bare is not None:
            bare.stop()
        flush_redis(args.redis_url)

    ratio = median(sim_rps) / median(bare_rps)
    print()
    print(table(["run", "server", "req/s", "requests", "errors"], rows))
    print()
    print(table(["server", "median req/s"], [("simulator (cache hit)", median(sim_rps)),
                                             ("bare FastAPI + 1 Redis GET", median(bare_rps))]))
    print(f"simulator cache lookups during the load (warm-up included): {hits:.0f} hits, {misses:.0f} misses, "
          f"{gens:.0f} generations ({client}: {sim_requests} completed requests; some may be in flight at the end)")
    # The simulator coalesces the lookups of one event-loop iteration into one MGET (the bare app sends GETs).
    print(f"simulator Redis MGETs during the load: {mgets} for {hits + misses:.0f} lookups "
          f"({(hits + misses) / max(mgets, 1):.2f} keys per MGET)")
    print(result_line("cache_hit", ratio, f">={GOAL}", ratio >= GOAL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
