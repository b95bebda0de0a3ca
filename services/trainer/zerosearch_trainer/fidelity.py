"""`zerosearch fidelity`: how well a search endpoint plays the simulator's part, measured from outside.

    zerosearch fidelity --search_url URL [--data FILE] [--k 5] [--n N] [--reference_url URL] [--out FILE.json]

For each QA item, one useful and one noisy search (noise 0 and 1), with the question and the gold answers sent
(the sft prompt), `cache: false` and a fixed seed per item. Only the native API is spoken
(`zerosearch_core.client`), so any simulator, real engine or replica set can be measured, and a reference engine
(`--reference_url`, e.g. `zerosearch serve --backend corpus`) is measured the same way beside it.

Figures (per endpoint):
- adherence: exactly k documents, not partial, and no extra generation needed (the model's own format);
  delivered: exactly k documents and not partial (what the engine hands the agent, continuations included);
- useful containment: a gold answer (normalised, whole words) in the useful set, and per document;
- noisy leakage: a gold answer in the noisy set, and per document; the gap between the two;
- words per document (mean, p10, p90; the paper asks for about 30), duplicate documents within a set;
- query coverage: the share of the query's content words the set mentions;
- extra generations per search (continuations and label-check regenerations) and the verification results, when
  the endpoint reports them; failed searches and mean latency.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from zerosearch_core.scoring import contains_answer, content_words
from zerosearch_trainer.sim_data import QAItem, load_qa_items

__all__ = ["FidelityOptions", "command", "measure", "print_table", "run_fidelity", "summarise"]


@dataclass
class FidelityOptions:
    search_url: str
    data: str = "data/sample_test.jsonl"
    split: str = "test"
    k: int = 5
    n: int = 0
    seed: int = 0
    reference_url: str | None = None
    out: str | None = None
    batch: int = 16
    exclude_tuned: str | None = None  # a TUNING.json: skip items about entities the tuning data saw
    timeout_s: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _words(text: str) -> int:
    return len(text.split())


def _requests(items: Sequence[QAItem], k: int, seed: int) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items):
        for noise in (0.0, 1.0):
            out.append({"query": item.question[:500], "k": k, "noise": noise, "question": item.question,
                        "answers": list(item.answers)[:32], "mode": "sft", "seed": seed + i, "cache": False})
    return out


async def _search_all(url: str, requests: list[dict[str, Any]], *, batch: int, timeout_s: float,
                      label: str) -> list[Any]:
    from rich.progress import Progress

    from zerosearch_core.client import SearchClient
    from zerosearch_core.errors import ZeroSearchError

    results: list[Any] = []
    async with SearchClient(url, timeout_s=timeout_s, retries=1) as client:
        if not await client.health():
            raise ZeroSearchError(f"the endpoint at {url} does not answer (GET /readyz).")
        with Progress(transient=True) as progress:
            task = progress.add_task(f"{label}: {len(requests)} searches", total=len(requests))
            for start in range(0, len(requests), batch):
                chunk = requests[start:start + batch]
                results += await client.search_batch(chunk)
                progress.advance(task, len(chunk))
    return results


def summarise(items: Sequence[QAItem], requests: Sequence[dict[str, Any]], responses: Sequence[Any],
              k: int) -> dict[str, Any]:
    """The figures of one endpoint from its responses (an ErrorBody counts as a failed search)."""
    from zerosearch_core.schemas import ErrorBody

    searches = failed = adherent = delivered = 0
    sets = {"useful": [0, 0], "noisy": [0, 0]}  # [sets with the answer, sets]
    docs = {"useful": [0, 0], "noisy": [0, 0]}  # [documents with the answer, documents]
    words: list[int] = []
    duplicates = total_docs = 0
    coverage: list[float] = []
    extra_generations: list[int] = []
    verification: Counter[str] = Counter()
    latencies: list[float] = []
    label_followed = 0
    for request, response in zip(requests, responses, strict=True):
        searches += 1
        if isinstance(response, ErrorBody):
            failed += 1
            continue
        label = "noisy" if request["noise"] >= 1.0 else "useful"
        documents = response.documents
        snippets = [d.snippet for d in documents]
        continued = int(getattr(response, "continued", 0) or 0)
        regenerated = int(getattr(response, "regenerated", 0) or 0)
        extra_generations.append(continued + regenerated)
        if len(documents) == k and not response.partial:
            delivered += 1
            adherent += continued == 0
        if (result := getattr(response, "verification", None)) is not None:
            verification[str(result)] += 1
        label_followed += response.noisy == (label == "noisy")
        answers = request["answers"]
        hits = [contains_answer(s, answers) for s in snippets]
        sets[label][0] += any(hits)
        sets[label][1] += 1
        docs[label][0] += sum(hits)
        docs[label][1] += len(hits)
        words += [_words(s) for s in snippets]
        normalised = [" ".join(s.lower().split()) for s in snippets]
        duplicates += len(normalised) - len(set(normalised))
        total_docs += len(normalised)
        content = content_words(request["query"])
        if content:
            mentioned = content_words(" ".join(snippets))
            coverage.append(len(content & mentioned) / len(content))
        latencies.append(float(response.latency_ms))
    answered = searches - failed

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    useful = ratio(*sets["useful"])
    noisy = ratio(*sets["noisy"])
    return {
        "items": len(items),
        "searches": searches,
        "failed": failed,
        "adherence": ratio(adherent, answered),
        "delivered_k": ratio(delivered, answered),
        "useful_containment": useful,
        "useful_containment_per_doc": ratio(*docs["useful"]),
        "noisy_leakage": noisy,
        "noisy_leakage_per_doc": ratio(*docs["noisy"]),
        "gap": round(useful - noisy, 4) if useful is not None and noisy is not None else None,
        "words_per_doc": {"mean": round(statistics.mean(words), 1) if words else 0.0,
                          "p10": _percentile(words, 0.1), "p90": _percentile(words, 0.9)},
        "duplicates": ratio(duplicates, total_docs),
        "query_coverage": round(statistics.mean(coverage), 4) if coverage else None,
        "label_followed": ratio(label_followed, answered),
        "extra_generations_per_search": round(statistics.mean(extra_generations), 3) if extra_generations else 0.0,
        "verification": dict(verification),
        "latency_ms_mean": round(statistics.mean(latencies), 1) if latencies else None,
    }


def _exclusions(path: str | None) -> set[str]:
    if not path:
        return set()
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return set((record.get("data") or {}).get("entities") or ())


def measure(url: str, items: Sequence[QAItem], *, k: int, seed: int, batch: int, timeout_s: float,
            label: str) -> dict[str, Any]:
    requests = _requests(items, k, seed)
    responses = asyncio.run(_search_all(url, requests, batch=batch, timeout_s=timeout_s, label=label))
    return {"url": url, "model": next((r.model for r in responses if hasattr(r, "model")), None),
            **summarise(items, requests, responses, k)}


def run_fidelity(options: FidelityOptions) -> dict[str, Any]:
    items = load_qa_items(options.data, split=options.split)
    excluded = _exclusions(options.exclude_tuned)
    if excluded:
        items = [i for i in items if not set(i.entities) & excluded]
    if options.n:
        items = items[:options.n]
    if not items:
        from zerosearch_core.errors import ZeroSearchError

        raise ZeroSearchError(f"{options.data}: no QA items to measure (after excluding tuned entities)."
                              if excluded else f"{options.data}: no QA items to measure.")
    report: dict[str, Any] = {"data": options.data, "split": options.split, "k": options.k, "seed": options.seed,
                              "items": len(items), "excluded_entities": len(excluded), **options.extra,
                              "endpoints": {}}
    report["endpoints"]["simulator"] = measure(options.search_url, items, k=options.k, seed=options.seed,
                                               batch=options.batch, timeout_s=options.timeout_s, label="simulator")
    if options.reference_url:
        report["endpoints"]["reference"] = measure(options.reference_url, items, k=options.k, seed=options.seed,
                                                   batch=options.batch, timeout_s=options.timeout_s,
                                                   label="reference")
    if options.out:
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


ROWS = [
    ("adherence (k docs, not partial, no extra generation)", "adherence", "pct"),
    ("delivered k (not partial)", "delivered_k", "pct"),
    ("useful containment (set)", "useful_containment", "pct"),
    ("useful containment (per document)", "useful_containment_per_doc", "pct"),
    ("noisy leakage (set)", "noisy_leakage", "pct"),
    ("noisy leakage (per document)", "noisy_leakage_per_doc", "pct"),
    ("gap (useful - noisy)", "gap", "pct"),
    ("words per document: mean (p10-p90)", "words_per_doc", "words"),
    ("duplicate documents", "duplicates", "pct"),
    ("query words mentioned", "query_coverage", "pct"),
    ("label followed", "label_followed", "pct"),
    ("extra generations per search", "extra_generations_per_search", "num"),
    ("verification", "verification", "dict"),
    ("failed searches", "failed", "num"),
    ("mean latency (ms)", "latency_ms_mean", "num"),
]


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "words":
        return f"{value['mean']} ({value['p10']}-{value['p90']})"
    if kind == "dict":
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Fidelity on {report['items']} QA items of {report['data']} (k = {report['k']}, "
                        f"one useful and one noisy search each)")
    table.add_column("measure")
    names = list(report["endpoints"])
    for name in names:
        table.add_column(f"{name}\n{report['endpoints'][name].get('model') or ''}", justify="right")
    for title, key, kind in ROWS:
        table.add_row(title, *[format_value(report["endpoints"][n].get(key), kind) for n in names])
    Console().print(table)


command = typer.Typer(add_completion=False, help="Measure a search endpoint's fidelity as a simulator.")


@command.command()
def fidelity(
    search_url: Annotated[str, typer.Option("--search_url", "--search-url", envvar="ZS_SEARCH_URL",
                                            help="The endpoint to measure (native API).")] = "http://127.0.0.1:8000",
    data: Annotated[str, typer.Option(help="QA items: a Search-R1-schema file or a folder of {split}.jsonl.")
                    ] = "data/sample_test.jsonl",
    split: Annotated[str, typer.Option(help="Split to read from a folder.")] = "test",
    k: Annotated[int, typer.Option(min=1, max=20, help="Documents per search.")] = 5,
    n: Annotated[int, typer.Option(min=0, help="Measure the first N items (0: all).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of item i's searches is seed + i.")] = 0,
    reference_url: Annotated[str | None, typer.Option("--reference_url", "--reference-url",
                                                      help="A reference engine measured beside it.")] = None,
    out: Annotated[str | None, typer.Option(help="Write the figures as JSON.")] = None,
    batch: Annotated[int, typer.Option(min=1, max=512, help="Searches per batch call.")] = 16,
    exclude_tuned: Annotated[str | None, typer.Option(
        "--exclude_tuned", "--exclude-tuned", help="A TUNING.json: skip items about entities its data saw.")] = None,
) -> None:
    """One useful and one noisy search per QA item; adherence, containment, leakage, lengths, duplicates."""
    from zerosearch_core.errors import ZeroSearchError

    options = FidelityOptions(search_url=search_url, data=data, split=split, k=k, n=n, seed=seed,
                              reference_url=reference_url, out=out, batch=batch, exclude_tuned=exclude_tuned)
    try:
        report = run_fidelity(options)
    except (ZeroSearchError, OSError, ValueError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    print_table(report)
    if out:
        typer.echo(f"Figures written to {out}")
