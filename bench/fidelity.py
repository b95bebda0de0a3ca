"""Simulator fidelity side by side: the untuned bundled model, the tuned default, and a real engine.

    .venv/bin/python bench/fidelity.py --data data/factbook --n 24 [--verify off,on] [--no-repeat-ngram 0,12]
        [--torch-threads 1]

Starts one `zerosearch serve` per row on a free port (all at once, measured concurrently, so the rows share
the machine's conditions): `ZS_MODEL=bundled-base` (untuned), the default (the shipped tuned adapter, or
`--tuned-model DIR`) with label verification off and/or on (`ZS_VERIFY_LABELS`, `--verify`) and with the
decoder's repeat ban at one or more spans (`ZS_NO_REPEAT_NGRAM`, `--no-repeat-ngram`; 0 is off), and the
corpus engine (`--backend corpus`) as the reference (or `--reference-url` of a running one, or
`--no-reference`). Each row is `zerosearch fidelity`'s measurement (`zerosearch_trainer.fidelity`) on the same
QA items with the same seeds: items whose entities the tuning data saw are left out (`--exclude-tuned`,
the shipped adapter's TUNING.json by default). Prints the table, markdown rows for docs/benchmarks.md, and the
targets line by line; writes everything to `bench/results/fidelity.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._servers import ROOT, add_model_options, machine_line, model_env, start_simulator  # noqa: E402

TARGETS = [  # (figure, test, goal text) of the tuned default at k = 5
    ("adherence", lambda v: v is not None and v >= 0.98, ">= 98%"),
    ("useful_containment", lambda v: v is not None and v >= 0.90, ">= 90%"),
    ("noisy_leakage", lambda v: v is not None and v <= 0.05, "<= 5%"),
    ("words_per_doc", lambda v: 20 <= v["mean"] <= 45, "20-45 words"),
    ("duplicates", lambda v: v is not None and v <= 0.05, "<= 5%"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/factbook", help="QA file or folder (default: data/factbook)")
    parser.add_argument("--split", default="test", help="split of a QA folder (default: test)")
    parser.add_argument("--n", type=int, default=24, help="QA items, one useful and one noisy search each (24)")
    parser.add_argument("--k", type=int, default=5, help="documents per search (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="item i's searches use seed + i (default: 0)")
    parser.add_argument("--batch", type=int, default=16, help="searches per batch call (default: 16)")
    parser.add_argument("--tuned-model", default=None, help="ZS_MODEL of the tuned row (default: the shipped one)")
    parser.add_argument("--exclude-tuned", default=None,
                        help="TUNING.json whose entities are left out (default: the shipped adapter's)")
    parser.add_argument("--verify", default="default",
                        help="ZS_VERIFY_LABELS of the tuned rows: 'default' (the service's), or a list like off,on")
    parser.add_argument("--no-repeat-ngram", default="default",
                        help="ZS_NO_REPEAT_NGRAM of the tuned rows: 'default' (the service's), or a list like 0,12")
    parser.add_argument("--reference-url", default=None, help="a running real engine to measure beside")
    parser.add_argument("--no-reference", action="store_true", help="no reference engine")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fidelity.json"))
    add_model_options(parser)
    args = parser.parse_args()

    from zerosearch_simulator.tuned import default_adapter_dir
    from zerosearch_trainer.fidelity import ROWS, format_value, measure
    from zerosearch_trainer.sim_data import load_qa_items

    exclude = args.exclude_tuned or str(default_adapter_dir() / "TUNING.json")
    excluded: set[str] = set()
    if Path(exclude).is_file():
        excluded = set((json.loads(Path(exclude).read_text()).get("data") or {}).get("entities") or ())
    items = [i for i in load_qa_items(args.data, split=args.split) if not set(i.entities) & excluded][:args.n]
    print(machine_line())
    print(f"{len(items)} QA items of {args.data} ({args.split}), {len(excluded)} tuned entities left out, "
          f"k = {args.k}, seed {args.seed}")

    env = model_env(args)
    rows: list[tuple[str, dict[str, str], str | None]] = []  # (name, env, backend)
    verify_modes = [None] if args.verify == "default" else [m.strip() for m in args.verify.split(",")]
    bans = [None] if args.no_repeat_ngram == "default" else [int(n) for n in args.no_repeat_ngram.split(",")]
    # The untuned row once, with the service's default; the tuned row once per verification mode and repeat ban.
    rows.append(("untuned (bundled-base)", env | {"ZS_MODEL": "bundled-base"}, None))
    for verify in verify_modes:
        for ban in bans:
            suffix = ("" if verify is None else f", verification {verify}") + (
                "" if ban is None else f", repeat ban {ban or 'off'}")
            extra = {} if verify is None else {"ZS_VERIFY_LABELS": "true" if verify == "on" else "false"}
            extra |= {} if ban is None else {"ZS_NO_REPEAT_NGRAM": str(ban)}
            tuned = {"ZS_MODEL": args.tuned_model} if args.tuned_model else {"ZS_MODEL": ""}
            rows.append((f"tuned (default){suffix}", env | extra | tuned, None))
    servers = []
    urls: dict[str, str] = {}
    started = time.monotonic()
    try:
        for name, row_env, backend in rows:
            server = start_simulator(backend=backend, env=row_env, name=name.split(" ")[0])
            servers.append(server)
            urls[name] = server.url
        if args.reference_url:
            urls["reference (real engine)"] = args.reference_url
        elif not args.no_reference:
            server = start_simulator(backend="corpus", name="corpus")
            servers.append(server)
            urls["reference (corpus engine)"] = server.url
        print(f"servers ready in {time.monotonic() - started:.0f} s; measuring {len(urls)} endpoints concurrently")
        with ThreadPoolExecutor(len(urls)) as pool:
            futures = {name: pool.submit(measure, url, items, k=args.k, seed=args.seed, batch=args.batch,
                                         timeout_s=args.timeout_s, label=name) for name, url in urls.items()}
            results = {name: f.result() for name, f in futures.items()}
    finally:
        for server in servers:
            server.stop()
    wall = time.monotonic() - started

    names = list(results)
    width = max(len(t) for t, _, _ in ROWS)
    print("\n" + "measure".ljust(width) + "  " + "  ".join(n for n in names))
    for title, key, kind in ROWS:
        print(title.ljust(width) + "  " + "  ".join(format_value(results[n].get(key), kind).rjust(len(n))
                                                       for n in names))
    print("\nmarkdown rows:")
    print("| endpoint | adherence | delivered k | useful containment | noisy leakage | gap | words/doc mean (p10-p90) "
          "| duplicates | query words | extra generations/search | verification |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in names:
        r = results[n]
        cells = [format_value(r.get(key), kind) for key, kind in (
            ("adherence", "pct"), ("delivered_k", "pct"), ("useful_containment", "pct"), ("noisy_leakage", "pct"),
            ("gap", "pct"), ("words_per_doc", "words"), ("duplicates", "pct"), ("query_coverage", "pct"),
            ("extra_generations_per_search", "num"), ("verification", "dict"))]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\ntargets (tuned default):")
    for name in [n for n in names if n.startswith("tuned")]:
        for key, test, goal in TARGETS:
            value = results[name].get(key)
            shown = format_value(value, "words" if key == "words_per_doc" else "pct")
            print(f"  {name}: {key} {shown} (goal {goal}): {'met' if test(value) else 'not met'}")
    met = sum(test(results[n].get(key)) for n in names if n.startswith("tuned") for key, test, _ in TARGETS)
    total = sum(1 for n in names if n.startswith("tuned")) * len(TARGETS)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine_line(), "items": len(items), "data": args.data,
                                          "split": args.split, "k": args.k, "seed": args.seed,
                                          "excluded_entities": len(excluded), "wall_s": round(wall, 1),
                                          "endpoints": results}, indent=2) + "\n")
    print(f"wall {wall:.0f} s; figures in {args.out}")
    print(f"RESULT fidelity ratio={met / total if total else 0:.3f} goal=all targets of the tuned default "
          f"({'met' if met == total else 'not met'})")


if __name__ == "__main__":
    main()
