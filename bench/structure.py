"""Format adherence with and without the `Doc i:` structure enforced, on the bundled (untuned) model.

Three arms over the same searches, in one process, one model, alternating chunk by chunk:

- off:       the reply is generated once and, when short of k documents, retried whole once (the former rule);
- enforced:  a reply that stops before k documents is continued from the next marker `Doc {n+1}:`;
- verified:  enforced, plus label verification (ZS_VERIFY_LABELS): violating documents regenerated alone.

Each search: a question of data/sample_test.jsonl as the query, with its question and gold answers (the sft
prompt), k = 5, noise 0 for even items and 1 for odd ones (half useful, half noisy), seed = item index,
cache off. Adherence = exactly k documents (not partial). The table also shows generations per search, words
per document, useful sets containing a gold answer, noisy sets leaking one, and the verification results.
RESULT: adherence enforced / adherence off.

    nice -n 10 .venv/bin/python bench/structure.py --n 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import machine_line, result_line, table  # noqa: E402

from zerosearch_simulator import Settings, create_app  # noqa: E402

ARMS = ("off", "enforced", "verified")
GOAL = 1.0  # enforcement must not do worse; the figures say by how much it does better


def load_items(path: Path, n: int) -> list[dict]:
    items = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            items.append({"question": row["question"], "answers": list(row["golden_answers"])})
    return [items[i % len(items)] for i in range(n)]


def body_for(index: int, item: dict, k: int) -> dict:
    return {"query": item["question"], "question": item["question"], "answers": item["answers"], "k": k,
            "noise": float(index % 2), "seed": index, "cache": False, "mode": "sft"}


async def run(args: argparse.Namespace) -> None:
    items = load_items(ROOT / "data" / "sample_test.jsonl", args.n)
    settings = Settings(backend="transformers", redis_url=None, timeout_s=args.timeout_s,
                        torch_threads=args.torch_threads)
    app = create_app(settings)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    seconds = dict.fromkeys(ARMS, 0.0)
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        modes = {"off": (False, False), "enforced": (True, False), "verified": (True, True)}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     timeout=args.timeout_s) as client:
            chunks = [list(range(i, min(i + args.chunk, args.n))) for i in range(0, args.n, args.chunk)]
            for c, chunk in enumerate(chunks):
                order = ARMS[c % 3:] + ARMS[: c % 3]  # each arm goes first in turn
                for arm in order:
                    enforce, verify = modes[arm]
                    engine.enforce_structure = enforce
                    engine.settings = settings.model_copy(update={"verify_labels": verify})
                    started = time.perf_counter()
                    responses = await asyncio.gather(*(client.post("/v1/search", json=body_for(i, items[i], args.k))
                                                       for i in chunk))
                    seconds[arm] += time.perf_counter() - started
                    for i, response in zip(chunk, responses, strict=True):
                        response.raise_for_status()
                        results[arm].append(response.json() | {"_noisy_asked": bool(i % 2)})
                print(f"chunk {c + 1}/{len(chunks)} done", file=sys.stderr, flush=True)
    rows, summary = [], {}
    for arm in ARMS:
        rs = results[arm]
        exact = sum(len(r["documents"]) == args.k and not r["partial"] for r in rs) / len(rs)
        words = [len(d["snippet"].split()) for r in rs for d in r["documents"]]
        useful = [r for r in rs if not r["noisy"]]
        noisy = [r for r in rs if r["noisy"]]
        contains = sum(any(d["has_answer"] for d in r["documents"]) for r in useful) / max(1, len(useful))
        leaks = sum(any(d["has_answer"] for d in r["documents"]) for r in noisy) / max(1, len(noisy))
        generations = statistics.mean(1 + r["continued"] + r["regenerated"] for r in rs)
        checks = {v: sum(r["verification"] == v for r in rs) for v in ("passed", "repaired", "failed")}
        summary[arm] = {"adherence": exact, "documents": statistics.mean(len(r["documents"]) for r in rs),
                        "generations": generations, "words": statistics.mean(words) if words else 0.0,
                        "useful_contains": contains, "noisy_leaks": leaks, "checks": checks,
                        "seconds": seconds[arm]}
        rows.append([arm, f"{exact:.0%}", summary[arm]["documents"], generations, summary[arm]["words"],
                     f"{contains:.0%}", f"{leaks:.0%}",
                     "-" if arm != "verified" else "/".join(str(checks[v]) for v in checks), seconds[arm]])
    print(machine_line())
    print(f"model: {app.state.engine.model_id if hasattr(app.state, 'engine') else '?'}; {args.n} searches per arm "
          f"({(args.n + 1) // 2} useful, {args.n // 2} noisy) of data/sample_test.jsonl, k={args.k}, sft prompt, "
          f"seeds 0..{args.n - 1}, cache off")
    print(table(["arm", "exactly k", "docs/search", "generations/search", "words/doc", "useful contains",
                 "noisy leaks", "passed/repaired/failed", "seconds"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    off = summary["off"]["adherence"]
    ratio = summary["enforced"]["adherence"] / off if off else float("inf")
    print(result_line("structure_adherence_enforced_over_off", ratio, f">={GOAL:g}", ratio >= GOAL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="searches per arm (default: 32)")
    parser.add_argument("--k", type=int, default=5, help="documents per search (default: 5)")
    parser.add_argument("--chunk", type=int, default=8, help="searches sent together per arm turn (default: 8)")
    parser.add_argument("--torch-threads", type=int, default=0, help="ZS_TORCH_THREADS (default: torch's)")
    parser.add_argument("--timeout-s", type=float, default=900, help="ZS_TIMEOUT_S (default: 900)")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
