"""Single-flight: 64 identical concurrent misses (same query, seed and noise) should cost ONE search.

One `zerosearch serve` (transformers backend, the bundled model) with Redis (database 14, flushed first),
or with `--no-redis` the in-process cache. 64 identical requests are sent at once; the script reports the
deltas of `zerosearch_generations_total` and `zerosearch_cache_requests_total{result=...}` and how many
responses said `cached: false`. Goal: one search, i.e. one cache miss and one `cached: false` response,
with 1 generation (2 when the model wrote fewer than k documents and the engine retried once: reported as
"1 search, 2 generations (one retry)"). ratio = generations delta.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import (  # noqa: E402
    DEFAULT_REDIS_URL,
    add_model_options,
    flush_redis,
    machine_line,
    model_env,
    result_line,
    start_simulator,
    table,
)

BODY = {"query": "who invented the telephone", "k": 5, "noise": 0.0, "seed": 7}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="identical concurrent requests (default: 64)")
    parser.add_argument("--no-redis", action="store_true", help="use the in-process cache instead of Redis")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="Redis database to use; FLUSHED first (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="ZS_MAX_NEW_TOKENS (default: 96)")
    add_model_options(parser)
    args = parser.parse_args()

    print(machine_line())
    redis_url = None if args.no_redis else args.redis_url
    if redis_url:
        flush_redis(redis_url)
    env = {"ZS_MAX_NEW_TOKENS": str(args.max_new_tokens)} | model_env(args)
    cache = "in-process cache" if args.no_redis else f"Redis {redis_url}"
    print(f"server: zerosearch serve (transformers, bundled model), {cache}, "
          + " ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    server = start_simulator(env=env, redis_url=redis_url, name="single-flight")
    names = {"generations": ("zerosearch_generations_total", None),
             "cache misses": ("zerosearch_cache_requests_total", {"result": "miss"}),
             "cache hits": ("zerosearch_cache_requests_total", {"result": "hit"})}
    try:
        def counters() -> dict[str, float]:
            text = server.metrics_text()
            return {key: server.metric(name, labels, text) for key, (name, labels) in names.items()}

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=args.n + 4, max_keepalive_connections=args.n + 4)
            async with httpx.AsyncClient(base_url=server.url, timeout=900, limits=limits) as client:
                return await asyncio.gather(*(client.post("/v1/search", json=BODY) for _ in range(args.n)))

        before = counters()
        started = time.perf_counter()
        responses = asyncio.run(burst())
        wall = time.perf_counter() - started
        after = counters()
    finally:
        server.stop()
        if redis_url:
            flush_redis(redis_url)

    delta = {key: after[key] - before[key] for key in names}
    ok = [r for r in responses if r.status_code == 200]
    uncached = sum(not r.json()["cached"] for r in ok)
    distinct = len({tuple(d["snippet"] for d in r.json()["documents"]) for r in ok})
    print()
    print(table(["measure", "value"], [
        ("requests sent at once", args.n), ("HTTP 200 responses", len(ok)),
        ("responses with cached: false", uncached), ("distinct document lists", distinct),
        ("generations (delta)", int(delta["generations"])), ("cache misses (delta)", int(delta["cache misses"])),
        ("cache hits (delta)", int(delta["cache hits"])), ("wall time, s", wall)]))
    generations, misses = int(delta["generations"]), int(delta["cache misses"])
    met = len(ok) == args.n and misses == 1 and uncached == 1 and generations in (1, 2)
    if met and generations == 2:
        summary = "1 search, 2 generations (one retry: the model wrote fewer than k documents)"
    elif met:
        summary = "1 search, 1 generation"
    else:
        summary = f"{misses} searches (cache misses), {generations} generations, {uncached} uncached responses"
    print(f"{cache}: {summary}")
    print(result_line("single_flight" + ("_memory" if args.no_redis else "_redis"), generations,
                      "1 search (1 generation, or 2 with one retry)", met))
    return 0


if __name__ == "__main__":
    sys.exit(main())
