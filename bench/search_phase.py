"""The search phase of one rollout step: our batch endpoint vs the paper's thread pool of single requests.

One rollout step of the paper's set-up is 64 questions x 5 generations, so about 320 searches per turn. Two
arms against the same `zerosearch serve` (the scripted backend by default, so the figure measures the
transport and the service, not a model; `--backend transformers` uses the bundled SmolLM2):

- batch:  the trainer's path, `SearchService.search_batch` (zerosearch_core.SearchClient), one
          `POST /v1/search/batch` holding all 320 requests;
- pool:   the paper's pattern, a thread pool of 10 workers each sending one `POST /v1/search` per query with
          a fresh connection (as `requests.post` does).

Both arms send the same 320 distinct queries with `cache: false` (every search reaches the backend), the
question, the answers, noise 0 and a seed. --reps rounds, alternating which arm goes first; the medians
are compared. ratio = pool wall time / batch wall time; goal >= 5.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "services" / "trainer"))
from _servers import machine_line, median, model_env, result_line, start_simulator, table  # noqa: E402

from zerosearch_trainer.data import load_records  # noqa: E402
from zerosearch_trainer.rollout import SearchService  # noqa: E402

GOAL = 5.0


def build_requests(questions: int, generations: int, k: int) -> list[dict]:
    records = load_records(str(ROOT / "data" / "sample_train.jsonl"), max_samples=questions)
    requests = []
    for g in range(generations):
        for i, r in enumerate(records):
            query = r.question.rstrip("?") + ("" if g == 0 else f" (variant {g})")
            requests.append({"query": query, "k": k, "noise": 0.0, "question": r.question,
                             "answers": list(r.golden_answers), "seed": i * 10 + g, "cache": False})
    return requests


def run_batch(url: str, requests: list[dict]) -> tuple[float, int]:
    with SearchService(url, timeout_s=600, retries=0) as service:
        started = time.perf_counter()
        outcomes = service.search_batch(requests)
        elapsed = time.perf_counter() - started
    return elapsed, sum(o.text is None for o in outcomes)


def run_pool(url: str, requests: list[dict], workers: int) -> tuple[float, int]:
    def one(body: dict) -> bool:
        try:
            response = httpx.post(f"{url}/v1/search", json=body, timeout=600)
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ok = list(pool.map(one, requests))
    return time.perf_counter() - started, ok.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=10, help="threads of the paper's pattern")
    parser.add_argument("--k", type=int, default=5, help="documents per search")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backend", default="scripted", help="simulator backend (scripted or transformers)")
    parser.add_argument("--url", default=None, help="use a running simulator instead of starting one")
    parser.add_argument("--torch-threads", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=600)
    args = parser.parse_args()

    requests = build_requests(args.questions, args.generations, args.k)
    print(machine_line())
    print(f"{len(requests)} searches per arm ({args.questions} questions x {args.generations}), backend "
          f"{args.backend}, pool of {args.workers}")
    server = None
    if args.url is None:
        env = model_env(args) | {"ZS_MAX_QUEUE": "4096"}
        server = start_simulator(backend=args.backend, env=env, name="search-phase")
        url = server.url
    else:
        url = args.url.rstrip("/")
    rows, batch_times, pool_times = [], [], []
    try:
        run_batch(url, requests[:8])  # warm-up: connections, imports, first-request costs
        run_pool(url, requests[:8], args.workers)
        for rep in range(args.reps):
            order = ["batch", "pool"] if rep % 2 == 0 else ["pool", "batch"]
            for arm in order:
                if arm == "batch":
                    elapsed, failed = run_batch(url, requests)
                    batch_times.append(elapsed)
                else:
                    elapsed, failed = run_pool(url, requests, args.workers)
                    pool_times.append(elapsed)
                rows.append((rep + 1, arm, elapsed, len(requests) / elapsed, failed))
    finally:
        if server is not None:
            server.stop()
    print(table(["round", "arm", "seconds", "searches/s", "failed"], rows))
    ratio = median(pool_times) / median(batch_times)
    print(f"median batch {median(batch_times):.3f} s, median pool {median(pool_times):.3f} s")
    print(result_line("search_phase", ratio, f">={GOAL:g}", ratio >= GOAL))


if __name__ == "__main__":
    main()
