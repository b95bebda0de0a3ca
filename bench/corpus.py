"""The real engine (`zerosearch serve --backend corpus`, bm25s over the CIA World Factbook): recall, speed, scale.

- recall: the share of a QA file's questions whose gold answer (normalised as the scorer does, accents folded,
  as whole words) is in the engine's top 1 / 3 / 5 passages, per question kind (`extra_info.kind`, else
  `data_source`). Default file: data/sample_test.jsonl; pass `--qa DIR/test.jsonl` from `zerosearch data
  factbook` for the Factbook questions. The reference point: BM25 (pyserini) over Wikipedia finds NQ's answer
  in its top 20 for 62.9% of the questions.
- speed: 512 distinct Factbook questions as one Search-R1 `POST /retrieve` batch (topk 5) through the service,
  vs the same index in process (`BM25Index.search_batch`, what the service runs) and vs bare bm25s
  (`bm25s.tokenize` + `BM25.retrieve(k=5)`) on the same saved index, in the same run, --reps rounds rotating
  which arm goes first; medians. Every service round sends each query with a round-specific
  word the index does not know (bm25s drops it, so the search is the same), so every search is a cache
  miss. Then --single sequential single-query requests: p50 latency. Goals: >= 1,000 queries/s through the
  service; service time / bare bm25s time <= 1.25 (RESULT corpus_vs_bm25s), and the stricter service time /
  in-process time (the service's own overhead, RESULT corpus_overhead).
- scale: a synthetic corpus of --scale-passages passages (default 1,000,000) written as JSONL: lengths drawn
  uniformly from 40 to 100 words, words drawn from the Factbook's vocabulary (every word of its passages,
  ranked by frequency) with a Zipf law (p(rank r) proportional to 1/r), numpy seed --seed. In child processes:
  the index build time (reading the JSONL included), then a fresh process that loads the saved index
  memory-mapped: load time, resident memory (VmRSS) and the 512-query batch time.

Run: `nice -n 10 .venv/bin/python bench/corpus.py` (parts: `--parts recall,speed,scale`). Ends with
`RESULT corpus_overhead ratio=<service/in-process> goal<=1.25`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import machine_line, median, result_line, start_simulator, table  # noqa: E402

from zerosearch_core.corpus import STOPWORDS, BM25Index, load_corpus  # noqa: E402
from zerosearch_core.scoring import normalize_answer  # noqa: E402

OVERHEAD_GOAL = 1.25
QPS_GOAL = 1000.0
TEMPLATES = ("What is the capital of {}?", "What is the highest point of {}?", "What is the currency of {}?",
             "Who is the chief of state of {}?", "What is the national anthem of {}?",
             "What is the internet country code of {}?", "When did {} gain independence?",
             "What type of government does {} have?")


# -- recall ------------------------------------------------------------------------------------------------

def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def contains_answer(answers: list[str], title: str, text: str) -> bool:
    haystack = f" {normalize_answer(_fold(f'{title} {text}'))} "
    return any(f" {key} " in haystack for key in {normalize_answer(_fold(a)) for a in answers} - {""})


def recall(index: BM25Index, qa_path: Path) -> None:
    records = [json.loads(line) for line in qa_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = index.search_batch([r["question"] for r in records], 5)
    per_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    flagged: collections.Counter[str] = collections.Counter()  # marked unanswerable by the QA builder
    for record, hits in zip(records, results, strict=True):
        extra = record.get("extra_info") or {}
        kind = extra.get("kind") or record.get("data_source", "?")
        flagged[kind] += extra.get("answerable") is False
        found = [contains_answer(record["golden_answers"], p.title, p.text) for p, _ in hits]
        row = per_kind[kind]
        row[0] += 1
        for i, k in enumerate((1, 3, 5), start=1):
            row[i] += any(found[:k])
    # Two-hop questions, as a search agent would ask them: each hop's sub-question searched on its own.
    hopped = [r for r in records if (r.get("extra_info") or {}).get("hops")]
    hop_results = index.search_batch([h["question"] for r in hopped for h in r["extra_info"]["hops"]], 5)
    position = 0
    for record in hopped:
        hops = record["extra_info"]["hops"]
        found = []
        for hop, hits in zip(hops, hop_results[position:position + len(hops)], strict=True):
            found.append([contains_answer(hop["answers"], p.title, p.text) for p, _ in hits])
        position += len(hops)
        row = per_kind["two_hop: every hop searched on its own"]
        row[0] += 1
        for i, k in enumerate((1, 3, 5), start=1):
            row[i] += all(any(f[:k]) for f in found)
    total = [sum(r[i] for kind, r in per_kind.items() if not kind.endswith("on its own")) for i in range(4)]
    rows = [(kind, r[0], flagged[kind], r[1] / r[0], r[2] / r[0], r[3] / r[0]) for kind, r in sorted(per_kind.items())]
    rows.append(("all (each question searched as asked)", total[0], sum(flagged.values()), total[1] / total[0],
                 total[2] / total[0], total[3] / total[0]))
    print(f"recall over {qa_path} ({total[0]} questions), engine {index.corpus.name}@"
          f"{index.corpus.content_hash[:12]}, top 5 by BM25:")
    print(table(["kind", "questions", "flagged", "recall@1", "recall@3", "recall@5"], rows))
    print("flagged: kept by `zerosearch data factbook --keep_unanswerable` but marked unanswerable (its check is"
          " this engine's top 5)")
    print("reference: BM25 (pyserini) over Wikipedia, NQ: 62.9% in the top 20\n")


# -- speed -------------------------------------------------------------------------------------------------

def speed_queries(n: int) -> list[str]:
    from zerosearch_core.factbook import load_entities

    names = [e.name for e in load_entities() if e.code not in ("xx", "ee")]
    queries = [t.format(name) for t in TEMPLATES for name in names]
    return queries[:n]


def bare_bm25s(index_path: Path) -> tuple[object, object]:
    import bm25s

    return bm25s, bm25s.BM25.load(str(index_path), mmap=True)


def speed(index: BM25Index, cache_dir: Path, queries: list[str], reps: int, single: int) -> float:
    bm25s, bare = bare_bm25s(index.path)
    server = start_simulator(backend="corpus", env={"ZS_CACHE_DIR": str(cache_dir), "ZS_LOG_LEVEL": "warning"},
                             name="corpus")
    service_s: list[float] = []
    bare_s: list[float] = []
    engine_s: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/retrieve", json={"queries": queries[:8], "topk": 5})  # warm the connection and the path

            def service_round(r: int) -> float:
                batch = [f"{q} zqround{r}x" for q in queries]  # a word bm25s does not know: a cache miss each time
                started = time.perf_counter()
                response = client.post("/retrieve", json={"queries": batch, "topk": 5})
                elapsed = time.perf_counter() - started
                result = response.json()["result"]
                assert response.status_code == 200 and len(result) == len(queries), response.text[:200]
                return elapsed

            def bare_round() -> float:
                started = time.perf_counter()
                tokens = bm25s.tokenize(queries, stopwords=STOPWORDS, show_progress=False)
                bare.retrieve(tokens, k=5, show_progress=False, n_threads=0)
                return time.perf_counter() - started

            def engine_round() -> float:
                started = time.perf_counter()
                index.search_batch(queries, 5)
                return time.perf_counter() - started

            for r in range(reps):
                arms = [lambda r=r: service_s.append(service_round(r)), lambda: bare_s.append(bare_round()),
                        lambda: engine_s.append(engine_round())]
                for arm in arms[r % 3:] + arms[:r % 3]:  # rotate which arm goes first
                    arm()
            latencies = []
            for i in range(single):
                started = time.perf_counter()
                client.post("/retrieve", json={"queries": [f"{queries[i % len(queries)]} zqsingle{i}x"], "topk": 5})
                latencies.append(time.perf_counter() - started)
            bare_single = []
            for i in range(single):
                started = time.perf_counter()
                bare.retrieve(bm25s.tokenize([queries[i % len(queries)]], stopwords=STOPWORDS, show_progress=False),
                              k=5, show_progress=False)
                bare_single.append(time.perf_counter() - started)
    finally:
        server.stop()
    n = len(queries)
    service, base, engine = median(service_s), median(bare_s), median(engine_s)
    print(f"speed: {n} queries, topk 5, {reps} rounds each (medians), {index.corpus.name} "
          f"({len(index)} passages)")
    print(table(["arm", "batch s", "queries/s"], [
        ("service: POST /retrieve (HTTP, engine, cache miss, dialect)", service, n / service),
        ("in process: BM25Index.search_batch (what the service runs)", engine, n / engine),
        ("bare bm25s: tokenize + BM25.retrieve(k=5)", base, n / base)]))
    print(f"service / bare bm25s {service / base:.3f}; service / in-process index {service / engine:.3f} "
          "(the cost of HTTP, the engine, the cache and the dialect)")
    latencies.sort()
    bare_single.sort()
    print(f"single query: p50 {1000 * latencies[len(latencies) // 2]:.2f} ms through the service, "
          f"{1000 * bare_single[len(bare_single) // 2]:.2f} ms bare ({single} sequential requests)")
    print(result_line("corpus_throughput", n / service / QPS_GOAL, f">={QPS_GOAL:.0f}q/s", n / service >= QPS_GOAL))
    print(result_line("corpus_vs_bm25s", service / base, f"<={OVERHEAD_GOAL}", service / base <= OVERHEAD_GOAL))
    print()
    return service / engine


# -- scale -------------------------------------------------------------------------------------------------

def write_synthetic(path: Path, passages: int, seed: int) -> None:
    import numpy as np

    from zerosearch_core.factbook import factbook_passages

    counts = collections.Counter(w for p in factbook_passages() for w in re.findall(r"\w\w+", p.text.lower()))
    vocab = np.array([w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))])
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(weights / weights.sum())
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, passages, 10_000):
            n = min(10_000, passages - start)
            lengths = rng.integers(40, 101, size=n)
            words = vocab[np.minimum(np.searchsorted(cumulative, rng.random(int(lengths.sum()))), len(vocab) - 1)]
            offset = 0
            for i, length in enumerate(lengths):
                text = " ".join(words[offset:offset + length])
                offset += length
                fh.write(json.dumps({"id": f"s{start + i}", "title": f"Synthetic {start + i}", "text": text}) + "\n")


def _rss_mib() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def child(mode: str, corpus_path: str, cache_dir: str, queries_path: str) -> None:
    """Runs in a fresh process; prints one JSON line."""
    started = time.perf_counter()
    corpus = load_corpus(corpus_path)
    read_s = time.perf_counter() - started
    before = _rss_mib()[0]
    started = time.perf_counter()
    index = BM25Index.open(corpus, Path(cache_dir), progress=False)
    open_s = time.perf_counter() - started
    out = {"mode": mode, "read_s": read_s, "open_s": open_s, "rss_corpus_mib": before}
    if mode == "query":
        queries = json.loads(Path(queries_path).read_text())
        index.search_batch(queries[:8], 5)
        started = time.perf_counter()
        index.search_batch(queries, 5)
        out["batch_s"] = time.perf_counter() - started
    out["rss_mib"], out["peak_rss_mib"] = _rss_mib()
    out["index_mib"] = sum(f.stat().st_size for f in index.path.iterdir()) / 2**20 if index.path else 0
    print(json.dumps(out))


def scale(passages: int, seed: int, queries: list[str], workdir: Path) -> None:
    corpus_path = workdir / f"synthetic-{passages}.jsonl"
    started = time.perf_counter()
    write_synthetic(corpus_path, passages, seed)
    print(f"scale: wrote {passages:,} synthetic passages ({corpus_path.stat().st_size / 2**20:,.0f} MiB) in "
          f"{time.perf_counter() - started:.0f} s")
    queries_path = workdir / "queries.json"
    queries_path.write_text(json.dumps(queries))
    runs = {}
    for mode in ("build", "query"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, str(corpus_path), str(workdir / "cache"),
                               str(queries_path)], capture_output=True, text=True, check=True)
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    build, query = runs["build"], runs["query"]
    print(table(["measure", "value"], [
        ("read the JSONL (s)", build["read_s"]),
        ("build and save the index (s)", build["open_s"]),
        ("peak resident memory while building (MiB)", build["peak_rss_mib"]),
        ("saved index on disk (MiB)", query["index_mib"]),
        ("fresh process: load the saved index, mmap (s)", query["open_s"]),
        ("resident memory: passages only (MiB)", query["rss_corpus_mib"]),
        ("resident memory: passages + mmapped index, after the batch (MiB)", query["rss_mib"]),
        (f"{len(queries)}-query batch, bare index (s)", query["batch_s"]),
        (f"{len(queries)}-query batch, queries/s", len(queries) / query["batch_s"]),
    ]))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--parts", default="recall,speed,scale", help="which parts to run, comma-separated")
    parser.add_argument("--qa", type=Path, default=ROOT / "data" / "sample_test.jsonl",
                        help="QA JSONL for recall (zerosearch data factbook writes DIR/test.jsonl)")
    parser.add_argument("--queries", type=int, default=512, help="queries in the speed and scale batches")
    parser.add_argument("--reps", type=int, default=5, help="rounds of each speed arm")
    parser.add_argument("--single", type=int, default=200, help="sequential single-query requests for the p50")
    parser.add_argument("--scale-passages", type=int, default=1_000_000, help="size of the synthetic corpus")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed of the synthetic corpus")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    parts = set(args.parts.split(","))
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="zerosearch-bench-corpus-") as tmp:
        workdir = Path(tmp)
        cache_dir = workdir / "cache"
        index = BM25Index.open(load_corpus(None), cache_dir)
        print(f"factbook: {len(index)} passages, content hash {index.corpus.content_hash[:12]}\n")
        queries = speed_queries(args.queries)
        if "recall" in parts:
            recall(index, args.qa)
        ratio = speed(index, cache_dir, queries, args.reps, args.single) if "speed" in parts else None
        if "scale" in parts:
            scale(args.scale_passages, args.seed, queries, workdir)
    if ratio is not None:
        print(result_line("corpus_overhead", ratio, f"<={OVERHEAD_GOAL}", ratio <= OVERHEAD_GOAL))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
