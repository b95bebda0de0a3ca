"""`zerosearch eval`: EM / sub-EM / F1 of a policy on QA data, searching through any native-API endpoint.

Batched multi-turn rollouts (the same loop as training, noise 0 by default), then the shared scoring on the
last answer of each completion. The report holds the metrics overall and per data source, searches per
question, and every question's answer; `--output FILE.json` writes it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zerosearch_core.scoring import exact_match, f1_score, sub_exact_match
from zerosearch_trainer.rewards import extract_answer

__all__ = ["EvalOptions", "print_table", "run_eval", "summarise"]

logger = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    model: str = "bundled"
    data: str = "data/sample_test.jsonl"
    split: str = "test"
    search_url: str = "http://127.0.0.1:8000"
    max_samples: int = 0
    output: str | None = None
    noise: float = 0.0
    batch_size: int = 8
    max_turns: int = 5
    max_completion_length: int = 500
    max_tokens_per_turn: int = 200
    top_k: int = 5
    sample: bool = False
    temperature: float = 1.0
    threads: int = 0
    seed: int = 0


def _metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = max(1, len(rows))
    return {
        "n": len(rows),
        "em": sum(r["em"] for r in rows) / n,
        "sub_em": sum(r["sub_em"] for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
        "searches_per_question": sum(r["searches"] for r in rows) / n,
        "answered": sum(r["answer"] is not None for r in rows) / n,
        "failed_searches": sum(r["failed_searches"] for r in rows),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_source[row["data_source"]].append(row)
    return {"overall": _metrics(rows), "per_data_source": {k: _metrics(v) for k, v in sorted(by_source.items())}}


def run_eval(options: EvalOptions) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    from zerosearch_trainer.config import SimulatorArguments
    from zerosearch_trainer.data import build_prompt, load_records
    from zerosearch_trainer.policy import load_policy, use_chat
    from zerosearch_trainer.rollout import HFGenerator, RolloutSettings, SearchRollout
    from zerosearch_trainer.search import open_search

    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    records = load_records(options.data, split=options.split, max_samples=options.max_samples or None)
    search = open_search(SimulatorArguments(search_url=options.search_url), "paper")
    try:
        model_args = type("M", (), {"model_name_or_path": options.model, "dtype": None, "model_revision": "main",
                                    "attn_implementation": None})()
        model, tokenizer, path = load_policy(model_args)
        model.eval()
        chat = use_chat(tokenizer, "auto")
        generation = GenerationConfig(do_sample=options.sample, temperature=options.temperature if options.sample
                                      else None, top_p=None, top_k=None, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
        rollout = SearchRollout(tokenizer, search, RolloutSettings(
            max_turns=options.max_turns, max_completion_length=options.max_completion_length,
            max_tokens_per_turn=options.max_tokens_per_turn, top_k=options.top_k, seed=options.seed,
            append_eos_after_answer=False))
        generator = HFGenerator(model, tokenizer, generation, compute_logprobs=False)
        rows: list[dict[str, Any]] = []
        started = time.perf_counter()
        with tqdm(total=len(records), desc="eval", unit="q") as bar:
            for start in range(0, len(records), options.batch_size):
                chunk = records[start:start + options.batch_size]
                batch = rollout.run(generator, [build_prompt(r.question, chat=chat) for r in chunk],
                                    [{"question": r.question, "golden_answers": list(r.golden_answers),
                                      "uid": r.uid} for r in chunk], step=0, noise=options.noise)
                for record, traj in zip(chunk, batch.trajectories, strict=True):
                    text = tokenizer.decode(traj.completion_ids, skip_special_tokens=True)
                    answer = extract_answer(text)
                    rows.append({
                        "uid": record.uid, "data_source": record.data_source, "question": record.question,
                        "golden_answers": list(record.golden_answers), "answer": answer,
                        "em": exact_match(answer, record.golden_answers),
                        "sub_em": sub_exact_match(answer, record.golden_answers),
                        "f1": f1_score(answer, record.golden_answers), "searches": traj.searches,
                        "failed_searches": traj.failed_searches, "turns": traj.turns, "completion": text,
                    })
                bar.update(len(chunk))
        report = {"model": path, "data": options.data, "search_url": options.search_url, "noise": options.noise,
                  "seconds": round(time.perf_counter() - started, 1), **summarise(rows),
                  "options": asdict(options), "results": rows}
    finally:
        search.close()
    if options.output:
        out = Path(options.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['model']} on {report['data']} (noise {report['noise']})")
    for column in ("data source", "n", "EM", "sub-EM", "F1", "searches/q", "answered"):
        table.add_column(column, justify="right" if column != "data source" else "left")

    def add(name: str, m: dict[str, float]) -> None:
        table.add_row(name, str(m["n"]), f"{m['em']:.3f}", f"{m['sub_em']:.3f}", f"{m['f1']:.3f}",
                      f"{m['searches_per_question']:.2f}", f"{m['answered']:.2f}")

    for name, metrics in report["per_data_source"].items():
        add(name, metrics)
    add("overall", report["overall"])
    Console().print(table)
