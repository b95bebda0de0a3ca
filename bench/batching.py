"""Batching: 16 concurrent distinct misses vs the same 16 one after another.

One `zerosearch serve` (transformers backend, the bundled SmolLM2-135M-Instruct; ZS_MAX_BATCH=16,
ZS_MAX_WAIT_MS=50, ZS_MAX_NEW_TOKENS=--max-new-tokens), warmed up once, then --reps rounds of the
sequential arm and the concurrent arm (alternating which goes first). Every request sends
`cache: false`, so each is a miss; both arms send the same 16 queries with the same seeds.
ratio = sequential wall time / concurrent wall time (medians over the rounds); goal >= 3.
Generated tokens/s come from `zerosearch_generated_tokens_total` deltas over each arm; "joins" counts the times
rows were added to the backend's batch (`zerosearch_batch_size` observations) and "rows at join" is the mean
number of rows decoding together right after each.
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
    add_model_options,
    machine_line,
    median,
    model_env,
    result_line,
    start_simulator,
    table,
)

GOAL = 3.0
QUERIES = [
    "history of the printing press", "how do vaccines work", "tallest mountain in africa",
    "who wrote pride and prejudice", "boiling point of water at altitude", "causes of the french revolution",
    "speed of light in vacuum", "largest desert in the world", "inventor of the telephone",
    "photosynthesis in plants", "capital of australia", "first moon landing",
    "how do tides form", "origin of the olympic games", "deepest point in the ocean", "what is a black hole",
]


def body(query: str, index: int, k: int) -> dict:
    return {"query": query, "k": k, "noise": 0.0, "seed": 1000 + index, "cache": False}


async def post(client: httpx.AsyncClient, payload: dict) -> dict:
    r = await client.post("/v1/search", json=payload)
    r.raise_for_status()
    return r.json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="distinct queries per arm (at most 16; default: 16)")
    parser.add_argument("--k", type=int, default=5, help="documents per search (default: 5)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="ZS_MAX_NEW_TOKENS (default: 96)")
    parser.add_argument("--max-batch", type=int, default=16, help="ZS_MAX_BATCH (default: 16)")
    parser.add_argument("--max-wait-ms", type=float, default=50, help="ZS_MAX_WAIT_MS (default: 50)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="ZS_TEMPERATURE; 0 (greedy) makes both arms do the same work (default: 0)")
    parser.add_argument("--reps", type=int, default=1, help="rounds of (sequential, concurrent) (default: 1)")
    add_model_options(parser)
    args = parser.parse_args()
    queries = QUERIES[: max(1, min(args.n, len(QUERIES)))]

    print(machine_line())
    env = {"ZS_MAX_BATCH": str(args.max_batch), "ZS_MAX_WAIT_MS": str(args.max_wait_ms),
           "ZS_MAX_NEW_TOKENS": str(args.max_new_tokens), "ZS_TEMPERATURE": str(args.temperature)} | model_env(args)
    print("server: zerosearch serve (transformers, bundled model) " + " ".join(f"{k}={v}" for k, v in env.items()),
          flush=True)
    server = start_simulator(env=env, name="batching")
    rows = []
    times: dict[str, list[float]] = {"sequential": [], "concurrent": []}
    try:
        def counters() -> tuple[float, float, float, float]:
            text = server.metrics_text()
            return (server.metric("zerosearch_generated_tokens_total", text=text),
                    server.metric("zerosearch_generations_total", text=text),
                    server.metric("zerosearch_batch_size_count", text=text),
                    server.metric("zerosearch_batch_size_sum", text=text))

        async def run() -> None:
            limits = httpx.Limits(max_connections=len(queries) + 4)
            async with httpx.AsyncClient(base_url=server.url, timeout=900, limits=limits) as client:
                await post(client, {"query": "warm-up query", "k": args.k, "noise": 0.0, "cache": False})
                for rep in range(1, args.reps + 1):
                    arms = ["sequential", "concurrent"] if rep % 2 else ["concurrent", "sequential"]
                    for arm in arms:
                        if arm == "concurrent":
                            # Open the connections first, so the 16 requests reach the backend together.
                            await asyncio.gather(*(client.get("/healthz") for _ in queries))
                        tokens0, gens0, batches0, rows0 = counters()
                        started = time.perf_counter()
                        if arm == "sequential":
                            answers = [await post(client, body(q, i, args.k)) for i, q in enumerate(queries)]
                        else:
                            answers = await asyncio.gather(*(post(client, body(q, i, args.k))
                                                             for i, q in enumerate(queries)))
                        wall = time.perf_counter() - started
                        tokens1, gens1, batches1, rows1 = counters()
                        assert not any(a["cached"] for a in answers)
                        docs = sum(len(a["documents"]) for a in answers)
                        tokens, gens, batches = tokens1 - tokens0, gens1 - gens0, batches1 - batches0
                        times[arm].append(wall)
                        rows.append((rep, arm, wall, len(queries) / wall, tokens, tokens / wall, int(gens),
                                     int(batches), (rows1 - rows0) / max(batches, 1), docs,
                                     sum(a["partial"] for a in answers)))
                        print(f"  round {rep} {arm:10s} {wall:7.2f} s, {int(gens)} generations, "
                              f"{int(batches)} joins", flush=True)

        try:
            asyncio.run(run())
        except (httpx.HTTPError, AssertionError) as exc:
            detail = exc.response.text[:300] if isinstance(exc, httpx.HTTPStatusError) else repr(exc)
            print(f"ERROR: the benchmark stopped: {exc} {detail}\nserver log tail:\n{server.log_tail(10)}")
    finally:
        server.stop()
    if not times["sequential"] or not times["concurrent"]:
        print(result_line("batching", float("nan"), f">={GOAL:g}", False))
        return 0

    seq, conc = median(times["sequential"]), median(times["concurrent"])
    ratio = seq / conc
    print()
    print(table(["round", "arm", "wall s", "searches/s", "tokens", "tokens/s", "generations", "joins",
                 "rows at join", "documents", "partial"], rows))
    print()
    print(table(["arm", "median wall s", "searches/s"],
                [("sequential", seq, len(queries) / seq), ("concurrent", conc, len(queries) / conc)]))
    print("generations > searches: the engine retried searches whose first generation had too few documents")
    print(result_line("batching", ratio, f">={GOAL:g}", ratio >= GOAL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
