"""What a cached evaluation run saves: the same `zerosearch eval` run twice through an upstream front.

The paid API is played by a scripted `zerosearch serve` with ZS_API_KEYS set (its SerpAPI dialect is what the
front speaks to it, exactly as to serpapi.com). The front is `zerosearch serve --backend upstream --upstream
serpapi` with Redis (database 14, flushed first) as its cache, and is restarted between the runs, so the
second run finds the first one's answers in Redis as a new replica, or a new day's run, would. Each run is
`zerosearch eval --search_url FRONT` on the same questions with the same policy, greedy; the script counts the
searches the policy made (the eval report) and the requests that reached the paid API (its own request
counter), and prices them at ZS_UPSTREAM_PRICE_PER_1K (default: the paper's SerpAPI cost, $586.7 for about
64,000 queries, i.e. $9.17 per 1,000). ratio = upstream calls of the last run / its searches (goal: 0).

A policy that searches is needed: the bundled SmolLM2-135M never writes <search> on its own; a warmed-up one
does (`zerosearch warmup --config configs/warmup-tiny-cpu.yaml --output_dir DIR`, a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import (  # noqa: E402
    DEFAULT_REDIS_URL,
    ROOT,
    VENV_BIN,
    Server,
    flush_redis,
    free_port,
    machine_line,
    result_line,
    start_simulator,
    table,
)

KEY = "bench-upstream-key"


def start_front(upstream_url: str, redis_url: str, price: float, run: int) -> Server:
    port = free_port()
    argv = [str(VENV_BIN / "zerosearch"), "serve", "--port", str(port), "--log-level", "warning",
            "--backend", "upstream", "--upstream", "serpapi", "--upstream-url", upstream_url,
            "--redis-url", redis_url]
    return Server(argv, port=port, env={"ZS_UPSTREAM_KEY": KEY, "ZS_UPSTREAM_PRICE_PER_1K": str(price)},
                  name=f"front-{run}", timeout_s=120)


def run_eval(args: argparse.Namespace, search_url: str, out: Path) -> dict:
    argv = [str(VENV_BIN / "zerosearch"), "eval", "--config", args.config, "--model", args.model,
            "--data", args.data, "--max_samples", str(args.max_samples), "--search_url", search_url,
            "--output", str(out), "--threads", str(args.threads)]
    env = {"TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1"}
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a policy that searches (a warmed-up checkpoint)")
    parser.add_argument("--config", default="configs/eval-tiny-cpu.yaml", help="eval recipe (default: %(default)s)")
    parser.add_argument("--data", default="data/sample_test.jsonl", help="QA data (default: %(default)s)")
    parser.add_argument("--max-samples", type=int, default=16, help="questions per run (default: 16)")
    parser.add_argument("--runs", type=int, default=2, help="identical eval runs (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the eval (default: 1)")
    parser.add_argument("--price-per-1k", type=float, default=586.7 / 64, help="dollars per 1,000 queries "
                        "(default: the paper's SerpAPI cost, 9.17)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed first (default: %(default)s)")
    args = parser.parse_args()

    print(machine_line())
    flush_redis(args.redis_url)
    rows = []
    last_calls = last_searches = 0
    with start_simulator(backend="scripted", env={"ZS_API_KEYS": KEY}, name="paid-api") as paid, \
            tempfile.TemporaryDirectory() as tmp:
        for run in range(1, args.runs + 1):
            calls_before = paid.metric("zerosearch_requests_total", {"route": "/search.json"})
            with start_front(paid.url, args.redis_url, args.price_per_1k, run) as front:
                started = time.perf_counter()
                report = run_eval(args, front.url, Path(tmp) / f"eval-{run}.json")
                seconds = time.perf_counter() - started
                text = front.metrics_text()
            calls = paid.metric("zerosearch_requests_total", {"route": "/search.json"}) - calls_before
            searches = sum(r["searches"] for r in report["results"])
            failed = sum(r["failed_searches"] for r in report["results"])
            saved = front.metric("zerosearch_upstream_cache_savings_total", text=text)
            spend = front.metric("zerosearch_upstream_spend_dollars_total", text=text)
            rows.append([run, report["overall"]["n"], searches, failed, int(calls), int(saved), f"${spend:.4f}",
                         f"{report['overall']['em']:.3f}", round(seconds, 1)])
            last_calls, last_searches = int(calls), searches
    print(f"policy {args.model}, data {args.data} ({args.max_samples} questions), recipe {args.config}, greedy; "
          f"price ${args.price_per_1k:.2f} per 1,000 queries")
    print(table(["run", "questions", "searches", "failed", "upstream calls", "from cache", "est. spend", "EM",
                 "seconds"], rows))
    ratio = last_calls / last_searches if last_searches else float("nan")
    print(result_line("upstream_eval_savings", ratio, "0 upstream calls in a repeated run", last_calls == 0
                      and last_searches > 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
